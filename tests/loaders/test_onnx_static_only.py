"""A static-only ONNX load skips the data path, yet builds the same LayerGraph and estimate."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import onnx
import pytest

from gradaudit.loaders.onnx_loader import (
    inferred_shapes, input_dependent, input_specs, load_onnx, meta_trace, read_model,
)  # fmt: skip
from gradaudit.onnx_exec import OnnxModule
from gradaudit.static import estimate

ROOT = Path(__file__).resolve().parents[2]
LIGHT = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"
sys.path.insert(0, str(ROOT / "benchmarks"))


def _gpt_file(tmp_path: Path) -> Path:
    from static_scale import gpt

    path = tmp_path / "gpt.onnx"
    onnx.save(gpt(3, 32), str(path))
    return path


def _cases(tmp_path: Path) -> list[Path]:
    return sorted((ROOT / "samples").glob("*.onnx")) + [LIGHT / "light_resnet50.onnx", LIGHT / "light_inception_v1.onnx",
                                                        _gpt_file(tmp_path)]


def _graph_facts(graph) -> dict:
    return {node: (data["op"], data.get("fn"), data.get("out_shape"), sorted(data["params"].items()), data["attrs"].__repr__())
            for node, data in graph.nodes(data=True)}


def test_static_only_load_gives_the_full_loads_graph_and_estimate(tmp_path: Path):
    for path in _cases(tmp_path):
        full, light = load_onnx(str(path), batch=2), load_onnx(str(path), batch=2, static_only=True)
        assert set(full.graph.edges) == set(light.graph.edges), path.name
        assert _graph_facts(full.graph) == _graph_facts(light.graph), path.name
        a, b = estimate(full.graph, full.inputs), estimate(light.graph, light.inputs)
        assert a.log10_ratio_first_last == pytest.approx(b.log10_ratio_first_last, abs=1e-12), path.name
        assert [w.log10_gain for w in a.weights] == pytest.approx([w.log10_gain for w in b.weights], abs=1e-12)


def test_the_meta_trace_replaces_the_trace_on_these_graphs(tmp_path: Path):
    """Guards the speed of a static-only load: it must not fall back to running the data path
    on the graphs above (attention reshapes, BatchNorm, concat-heavy inception blocks)."""
    for path in _cases(tmp_path):
        model, weights = read_model(str(path))
        specs = input_specs(model, None, 2)
        dependent = input_dependent([s.name for s in specs], model.graph.node)
        module = OnnxModule(model, weights=weights)
        assert meta_trace(module, specs, dependent, inferred_shapes(model, specs)) is not None, path.name
