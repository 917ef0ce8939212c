"""vanishing_relu_default_init: a 20-layer ReLU MLP (width 64) left at PyTorch's default Linear init.

Diagnosis: vanishing. The default U(+-1/sqrt(fan_in)) has Var = 1/(3 fan_in), so with ReLU each
layer scales the squared gradient by 1/6 (THEORY.md): about 0.39 decades lost per layer toward the
input, while the default biases keep the forward signal from collapsing entirely.
Measured (tests/samples/sample_flow.py: 3 train-mode passes, default loss, model seed 0):
log10 first/last grad ratio -6.48 (seeds 0..4: -6.81..-6.31), output
RMS 0.066, grad RMS 2.7e-9..0.011.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH, IN_FEATURES, WIDTH, DEPTH, OUT_FEATURES = 16, 32, 64, 20, 10


def build(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A freshly seeded model and a batch of example inputs."""
    torch.manual_seed(seed)
    widths = [IN_FEATURES] + [WIDTH] * (DEPTH - 1)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(WIDTH, OUT_FEATURES))
    return nn.Sequential(*layers), (torch.randn(BATCH, IN_FEATURES),)
