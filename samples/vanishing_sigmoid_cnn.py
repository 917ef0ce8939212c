"""vanishing_sigmoid_cnn: 10 Conv3x3 -> sigmoid layers (16 channels, PyTorch default init), a linear head.

Diagnosis: vanishing. sigmoid' <= 1/4 and the default init's Var(w) = 1/(3 fan_in) shrink the
backward squared gradient by far more than a decade per layer; rescaling the weights only moves
the units into the flat tails (LSUV-style refinement stalls). The structural fixes are a norm
after each conv (it keeps the pre-activation at unit scale, where sigmoid' / sigmoid's spread is
about 1) or a non-saturating activation. Measured: see samples/README.md.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH, CHANNELS_IN, SIZE, CHANNELS, DEPTH, OUT_FEATURES = 8, 3, 8, 16, 10, 10


def build(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A freshly seeded model and a batch of example images."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for channels_in in [CHANNELS_IN] + [CHANNELS] * (DEPTH - 1):
        layers += [nn.Conv2d(channels_in, CHANNELS, 3, padding=1), nn.Sigmoid()]
    layers += [nn.Flatten(), nn.Linear(CHANNELS * SIZE * SIZE, OUT_FEATURES)]
    return nn.Sequential(*layers), (torch.randn(BATCH, CHANNELS_IN, SIZE, SIZE),)
