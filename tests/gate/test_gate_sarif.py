"""SARIF 2.1.0: valid against the official schema; a PyTorch finding points at its source line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.gate.conftest import SAMPLES
from tests.gate.sarif_schema import sarif_errors


@pytest.mark.parametrize("sample", ["exploding_residual_stack.onnx", "vanishing_relu_default_init.onnx"])
def test_sarif_of_an_unhealthy_onnx_sample_validates(cli, sample):
    code, out, _ = cli("check", SAMPLES / sample, "--format", "sarif")
    log = json.loads(out)
    assert code == 1 and log["runs"][0]["results"]
    assert sarif_errors(log) == []
    artifact = log["runs"][0]["artifacts"][0]["location"]["uri"]
    assert artifact.endswith(sample)
    for result in log["runs"][0]["results"]:
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == artifact


NETWORK = '''import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(32, 32)
        nn.init.normal_(self.linear.weight, std=1.0)

    def forward(self, x):
        return torch.tanh(self.linear(x)) * 4


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(*(Block() for _ in range(8)))
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(self.blocks(x))


def build():
    torch.manual_seed(0)
    return Stack(), torch.randn(16, 32)


def build_flat():
    torch.manual_seed(0)
    layers = [nn.Linear(32, 32) for _ in range(12)]
    for layer in layers:
        nn.init.normal_(layer.weight, std=1.0)
    return nn.Sequential(*layers), torch.randn(16, 32)
'''


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _located_results(cli, spec: str) -> list[dict]:
    code, out, _ = cli("check", spec, "--format", "sarif")  # the full loader: it holds the module
    log = json.loads(out)
    assert code == 1 and sarif_errors(log) == []
    return [r for r in log["runs"][0]["results"] if "region" in r["locations"][0]["physicalLocation"]]


def test_pytorch_finding_points_at_the_line_defining_its_layer(cli, clean_environment):
    net = clean_environment / "net.py"
    net.write_text(NETWORK)
    located = _located_results(cli, "net.py:build")
    assert located, "no finding carried a source location"
    for result in located:
        place = result["locations"][0]["physicalLocation"]
        assert place["artifactLocation"]["uri"] == "net.py"  # relative to the working directory
        layer = result["locations"][0]["logicalLocations"][0]["name"]
        expected = "self.linear =" if layer.startswith("blocks.") else f"self.{layer.split('.')[0]} ="
        assert place["region"]["startLine"] == _line_of(net, expected), layer


def test_layers_built_in_the_factory_point_at_the_factory(cli, clean_environment):
    (clean_environment / "net.py").write_text(NETWORK)
    located = _located_results(cli, "net.py:build_flat")
    assert located
    assert {r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in located} == {
        _line_of(clean_environment / "net.py", "def build_flat")}
