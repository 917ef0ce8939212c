"""vanishing_dead_relu_mlp: a 10-layer ReLU MLP (width 64, He init) whose biases are all -4.

Diagnosis: vanishing. Every pre-activation sits about 3 standard deviations below zero, so every
ReLU outputs 0 on (almost) every input: the units are dead and no gradient reaches the weights
in front of them. A batch shift by the mean of the ReLU's *output* (all zeros) does nothing; the
bias shift by the measured *pre-activation* mean (a bias reset) revives the units.
Measured: see samples/README.md.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH, IN_FEATURES, WIDTH, DEPTH, OUT_FEATURES = 16, 32, 64, 10, 10
DEAD_BIAS = -4.0


def build(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A freshly seeded model and a batch of example inputs."""
    torch.manual_seed(seed)
    widths = [IN_FEATURES] + [WIDTH] * (DEPTH - 1)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(WIDTH, OUT_FEATURES))
    model = nn.Sequential(*layers)
    for layer in model[:-1]:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.constant_(layer.bias, DEAD_BIAS)
    return model, (torch.randn(BATCH, IN_FEATURES),)
