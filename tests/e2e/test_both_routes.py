"""Architectures as their authors write them give one audit whether gradaudit reads the factory
or the exported ONNX file: the same verdict, static estimates that agree, and both within a
decade of the real backward passes (tests/e2e/architectures.py says what each exercises)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from gradaudit.cli import main
from tests.e2e import architectures

FACTORIES = Path(architectures.__file__)


def _audit(capsys, source: str) -> tuple[int, dict]:
    code = main(["check", source, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def _ratios(report: dict) -> tuple[float, float]:
    flow = report["gradient_flow"]
    return flow["static"]["log10_ratio_first_last"], flow["dynamic"]["log10_ratio_first_last"]


@pytest.mark.parametrize("name", ["llama", "unet"])
def test_factory_and_export_agree_and_pass(capsys, tmp_path: Path, name: str):
    module, example = getattr(architectures, name)()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, str(path), dynamo=False, opset_version=17)
    factory_code, factory = _audit(capsys, f"{FACTORIES}:{name}")
    onnx_code, exported = _audit(capsys, str(path))
    assert factory_code == onnx_code == 0, (factory["findings"], exported["findings"])
    assert factory["diagnosis"] == exported["diagnosis"] == "healthy"
    assert not [f for f in factory["findings"] + exported["findings"] if f["severity"] == "error"]
    (static_a, measured_a), (static_b, measured_b) = _ratios(factory), _ratios(exported)
    assert static_a == pytest.approx(static_b, abs=0.3) and measured_a == pytest.approx(measured_b, abs=0.3)
    assert abs(static_a - measured_a) < 1.0 and abs(static_b - measured_b) < 1.0
