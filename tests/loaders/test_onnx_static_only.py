"""A static-only ONNX load skips the data path, yet builds the same LayerGraph and estimate."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest

from gradaudit.loaders.onnx_loader import (
    inferred_shapes,
    input_dependent,
    input_specs,
    load_onnx,
    meta_trace,
    read_model,
)  # fmt: skip
from gradaudit.onnx_exec import OnnxModule
from gradaudit.static import estimate

ROOT = Path(__file__).resolve().parents[2]
LIGHT = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"


def _gpt_file(tmp_path: Path) -> Path:
    from benchmarks.static_scale import gpt

    path = tmp_path / "gpt.onnx"
    onnx.save(gpt(3, 32), str(path))
    return path


def _cases(tmp_path: Path) -> list[Path]:
    return sorted((ROOT / "samples").glob("*.onnx")) + [LIGHT / "light_resnet50.onnx",
                                                        LIGHT / "light_inception_v1.onnx",
                                                        _gpt_file(tmp_path)]


def _graph_facts(graph) -> dict:
    return {node: (data["op"], data.get("fn"), data.get("out_shape"), sorted(data["params"].items()),
                   data["attrs"].__repr__())
            for node, data in graph.nodes(data=True)}


def test_static_only_load_gives_the_full_loads_graph_and_estimate(tmp_path: Path):
    for path in _cases(tmp_path):
        full, light = load_onnx(str(path), batch=2), load_onnx(str(path), batch=2, static_only=True)
        assert set(full.graph.edges) == set(light.graph.edges), path.name
        assert _graph_facts(full.graph) == _graph_facts(light.graph), path.name
        a, b = estimate(full.graph, full.inputs), estimate(light.graph, light.inputs)
        # Both read the same bytes, but a mapped weight may start at another alignment, which moves
        # where vectorised reductions split: the moments then differ by ~log2(n)·eps32 (2e-6
        # relative, 1e-6 decades); ten times that is still "the same estimate".
        assert a.log10_ratio_first_last == pytest.approx(b.log10_ratio_first_last, abs=1e-5), path.name
        assert [w.log10_gain for w in a.weights] == pytest.approx([w.log10_gain for w in b.weights], abs=1e-5)


def test_the_meta_trace_replaces_the_trace_on_these_graphs(tmp_path: Path):
    """Guards the speed of a static-only load: it must not fall back to running the data path
    on the graphs above (attention reshapes, BatchNorm, concat-heavy inception blocks)."""
    for path in _cases(tmp_path):
        model, weights = read_model(str(path))
        specs = input_specs(model, None, 2)
        dependent = input_dependent([s.name for s in specs], model.graph.node)
        module = OnnxModule(model, weights=weights)
        assert meta_trace(module, specs, dependent, inferred_shapes(model, specs)) is not None, path.name


def test_an_additive_causal_mask_is_a_mask_not_an_infinite_signal(tmp_path: Path):
    """The legacy export of scaled_dot_product_attention(is_causal=True) adds a constant of 0 and
    -inf to the scores before the softmax: hidden positions, not a signal of infinite RMS."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    t, d = 6, 8
    mask = np.triu(np.full((t, t), -np.inf, np.float32), 1)
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(0, d**-0.5, (d, d)).astype(np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["v"]),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "xt"], ["scores"]),
        helper.make_node("Add", ["scores", "mask"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, t, d])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, t, d])],
                              [weight, numpy_helper.from_array(mask, "mask")])
    path = tmp_path / "causal.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    handle = load_onnx(str(path), static_only=True)
    attrs = handle.graph.nodes["mask"]["attrs"]
    assert (attrs["masked"] == pytest.approx(15 / 36)
            and attrs["rms"] == 0.0)  # exact: every entry is a mask; none enters the moment
    result = estimate(handle.graph, handle.inputs)
    assert result.diagnosis.label == "healthy" and np.isfinite(result.output_rms)
