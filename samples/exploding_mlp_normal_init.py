"""exploding_mlp_normal_init: an 8-layer ReLU MLP (width 64) whose weights are drawn from N(0, 1).

Diagnosis: exploding. With Var(w) = 1 instead of 2/fan_in every layer multiplies the signal's
second moment by fan_in/2 = 32 (THEORY.md), so activations and gradients grow by orders of
magnitude through depth.
Measured (tests/samples/sample_flow.py: 3 train-mode passes, default loss, model seed 0):
log10 first/last grad ratio -0.56 (the growth is uniform, so the ratio
stays near 0), but output RMS 1.9e6 (seeds 0..4: 9.2e5..1.9e6) and grad RMS 1.1e11..3.8e11, far
above the 1e4 absolute-scale limit.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH, IN_FEATURES, WIDTH, DEPTH, OUT_FEATURES = 16, 32, 64, 8, 10


def build(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A freshly seeded model and a batch of example inputs."""
    torch.manual_seed(seed)
    widths = [IN_FEATURES] + [WIDTH] * (DEPTH - 1)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(WIDTH, OUT_FEATURES))
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, mean=0.0, std=1.0)
            nn.init.zeros_(layer.bias)
    return model, (torch.randn(BATCH, IN_FEATURES),)
