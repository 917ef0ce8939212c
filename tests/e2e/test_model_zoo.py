"""The onnx wheel's nine bundled model-zoo graphs are audited (static + dynamic) without error.

Their weights are all ConstantOfShape(0.02): gradaudit must run them, flag the constant weights
and give a diagnosis, never crash. Wall times are printed by benchmarks/model_zoo.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest

from gradaudit.cli import main

LIGHT = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"
MODELS = sorted(LIGHT.glob("light_*.onnx"))
FAST = {"light_bvlc_alexnet", "light_squeezenet", "light_resnet50"}


def test_the_wheel_ships_nine_graphs():
    assert len(MODELS) == 9


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.stem, marks=() if p.stem in FAST else pytest.mark.slow) for p in MODELS],
)
def test_model_zoo_graph_is_audited(path, tmp_path, capsys):
    out = tmp_path / "audit.json"
    code = main(["check", str(path), "--json", str(out), "--quiet"])
    capsys.readouterr()
    assert code in (0, 1)
    report = json.loads(out.read_text())
    dynamic = report["gradient_flow"]["dynamic"]
    assert dynamic is not None and dynamic["passes"] >= 3
    assert report["model"]["weight_layers"] == sum(
        n.op_type in ("Conv", "Gemm") for n in onnx.load(str(path)).graph.node
    )
    codes = {f["code"] for f in report["findings"]}
    assert codes, "constant weights must be reported"
