"""Partial estimates end to end: an op no gain rule covers is marked unknown, never a silent gain of 1,
and every report says the static estimate is partial; a gain or an ONNX mapping that fails keeps
its reason, which GA501 shows, and raises in strict mode."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from gradaudit.errors import STRICT_STATIC_ENV
from gradaudit.loaders import load
from gradaudit.loaders.onnx_layer_kinds import LAYER_MAPPINGS
from gradaudit.loaders.torch_loader import from_module
from gradaudit.pipeline import audit
from gradaudit.report import render
from gradaudit.rules import run_rules
from gradaudit.static import estimate
from gradaudit.static.gain_registry import GAINS

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


class CumulativeSum(nn.Module):
    """Linear -> cumsum (no gain rule) -> Linear."""

    def __init__(self):
        super().__init__()
        self.first, self.last = nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(torch.cumsum(self.first(x), dim=-1))


def test_unknown_op_marks_node_and_every_report_says_partial():
    torch.manual_seed(0)
    result = audit(CumulativeSum(), torch.randn(4, 8), static_only=True)
    static = result.static
    unknown = [node for node, estimate in static.nodes.items() if not estimate.known]
    assert len(unknown) == 1 and "cumsum" in unknown[0]
    assert static.partial and result.partial and static.unknown_ops == ["cumsum"]
    assert any(f.code == "GA501" and "cumsum" in f.message for f in result.findings)
    assert "static estimate partial: no gain rule for cumsum" in render(result, "text")
    assert json.loads(render(result, "json"))["gradient_flow"]["static"]["partial"] is True


def test_fully_covered_model_is_not_partial():
    torch.manual_seed(0)
    result = audit(nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4)), torch.randn(4, 8), static_only=True)
    assert not result.static.partial and all(e.known for e in result.static.nodes.values())
    assert not any(f.code == "GA501" for f in result.findings)


def _odd_fan_in(ctx):
    raise ValueError("odd fan_in")


def _tanh_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4))


def test_a_failing_gain_keeps_its_reason_and_ga501_names_it(monkeypatch):
    monkeypatch.setitem(GAINS, "linear", _odd_fan_in)
    torch.manual_seed(0)
    result = audit(_tanh_mlp(), torch.randn(4, 8), static_only=True)
    failed = {node: estimate.reason for node, estimate in result.static.nodes.items() if not estimate.known}
    assert len(failed) == 2 and set(failed.values()) == {"the linear gain failed: ValueError: odd fan_in"}
    (finding,) = [f for f in result.findings if f.code == "GA501"]
    assert finding.message.startswith("Static estimate is partial: could not model ")
    assert "(the linear gain failed: ValueError: odd fan_in)" in finding.message
    assert "no gain rule" not in finding.message  # linear has a gain: it failed, which is another story
    assert sorted(finding.evidence["reasons"]) == sorted(finding.evidence["nodes"])


def test_strict_mode_raises_where_a_gain_fails(monkeypatch, strict_static):
    monkeypatch.setitem(GAINS, "linear", _odd_fan_in)
    handle = from_module(_tanh_mlp(), (torch.randn(4, 8),))
    with pytest.raises(ValueError, match="odd fan_in"):
        estimate(handle.graph, handle.inputs)


def _unreadable(view):
    raise KeyError("alpha")


def test_a_failing_onnx_mapping_keeps_its_reason_and_raises_in_strict_mode(monkeypatch):
    monkeypatch.setitem(LAYER_MAPPINGS, "gemm", _unreadable)
    handle = load(str(SAMPLES / "exploding_mlp_normal_init.onnx"))
    static = estimate(handle.graph, handle.inputs)
    reasons = {e.reason for e in static.nodes.values() if not e.known}
    assert reasons == {"the Gemm mapping failed: KeyError: 'alpha'"}
    (finding,) = [f for f in run_rules(handle, static, None) if f.code == "GA501"]
    assert "could not model" in finding.message and "the Gemm mapping failed: KeyError: 'alpha'" in finding.message
    monkeypatch.setenv(STRICT_STATIC_ENV, "1")
    with pytest.raises(KeyError, match="alpha"):
        load(str(SAMPLES / "exploding_mlp_normal_init.onnx"))
