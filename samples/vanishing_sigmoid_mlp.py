"""vanishing_sigmoid_mlp: a 12-layer sigmoid MLP (width 64) with LeCun-normal weights (Var = 1/fan_in).

Diagnosis: vanishing. sigmoid' <= 1/4, so each layer scales the backward squared gradient by
about sigma_w^2 * E[sigmoid'^2] ~ 0.05 (THEORY.md), i.e. gradients lose ~0.65 decades per layer
on their way to the input.
Measured (tests/samples/sample_flow.py: 3 train-mode passes, default loss, model seed 0):
log10 first/last grad ratio -7.21 (seeds 0..4: -7.36..-7.21), output RMS
0.34, grad RMS 1.1e-8..0.19.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BATCH, IN_FEATURES, WIDTH, DEPTH, OUT_FEATURES = 16, 32, 64, 12, 10


def build(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A freshly seeded model and a batch of example inputs."""
    torch.manual_seed(seed)
    widths = [IN_FEATURES] + [WIDTH] * (DEPTH - 1)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.Sigmoid()]
    layers.append(nn.Linear(WIDTH, OUT_FEATURES))
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=1.0 / math.sqrt(layer.in_features))
            nn.init.zeros_(layer.bias)
    return model, (torch.randn(BATCH, IN_FEATURES),)
