"""Partial estimates end to end: an op no gain rule covers is marked unknown, never a silent gain of 1,
and every report says the static estimate is partial."""

import json

import torch
from torch import nn

from gradaudit.pipeline import audit
from gradaudit.report import render


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
