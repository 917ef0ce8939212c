"""Zero-initialised layers (a zero head, Fixup/zero-conv branch ends, LoRA's B, adaLN-Zero gates):
the zero layer stops the gradient through its own input only, and the layers behind it are left
out of the first/last ratio instead of entering it at a 10^-154 floor."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from gradaudit.graph import flow_ends, gradient_reaching, weight_layers
from gradaudit.loaders.torch_loader import from_module
from gradaudit.pipeline import run_audit
from gradaudit.static import estimate

# models gradaudit fully supports: a gain or ONNX mapping that fails is a bug, not an unknown node
pytestmark = pytest.mark.usefixtures("strict_static")


class LoRALinear(nn.Module):
    def __init__(self, width: int, rank: int = 4) -> None:
        super().__init__()
        self.base, self.down, self.up = (nn.Linear(width, width), nn.Linear(width, rank, bias=False),
                                         nn.Linear(rank, width, bias=False))
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.up(self.down(x))


def _zero_head() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    nn.init.zeros_(model[4].weight)
    return model


def test_layers_behind_a_zero_head_are_left_out_of_the_ratio_on_both_sides():
    handle = from_module(_zero_head(), (torch.randn(16, 8),))
    ends = [w.param for w in flow_ends(handle.graph, weight_layers(handle.graph))]
    assert ends == ["4.weight"]
    static = estimate(handle.graph, handle.inputs)
    (head,) = [w for w in static.weights if w.param == "4.weight"]
    assert -3 < head.log10_grad_rms < 1  # the zero layer's own gradient sqrt(q_in G_out) is not zero
    assert abs(static.log10_ratio_first_last) < 1e-9
    audit = run_audit(handle)
    assert audit.verdict != "fail" and not [f for f in audit.findings if f.code in ("GA102", "GA104")]
    assert any("zero-initialised" in note and "0, 2" in note for note in audit.notes)


def test_a_zero_lora_branch_blocks_only_its_own_down_projection():
    torch.manual_seed(0)
    model = nn.Sequential(LoRALinear(8), nn.Tanh(), nn.Linear(8, 3))
    handle = from_module(model, (torch.randn(16, 8),))
    reaching = gradient_reaching(handle.graph)
    blocked = [w.param for w in weight_layers(handle.graph) if w.node not in reaching]
    assert blocked == ["0.down.weight"]
    static = estimate(handle.graph, handle.inputs)
    assert math.isfinite(static.log10_ratio_first_last) and abs(static.log10_ratio_first_last) < 1.5


def test_an_output_zero_by_design_is_not_a_collapsed_signal():
    """torchvision's ViT zero-initialises its head, bias included: the output RMS is exactly 0 and
    the first step moves it; the all-zero model, whose head also reads zeros, still collapses."""
    model = _zero_head()
    nn.init.zeros_(model[4].bias)
    handle = from_module(model, (torch.randn(16, 8),))
    audit = run_audit(handle)
    assert audit.probe.output_rms == 0 and audit.static.output_rms == 0  # exact: a zero layer's output
    assert audit.probe.diagnosis.label == audit.static.diagnosis.label == "healthy"
    assert audit.verdict != "fail" and not [f for f in audit.findings if f.code in ("GA102", "GA104")]
    for layer in model:
        for param in layer.parameters():
            nn.init.zeros_(param)
    collapsed = run_audit(from_module(model, (torch.randn(16, 8),)))
    assert collapsed.verdict == "fail" and collapsed.probe.diagnosis.label == "vanishing"
