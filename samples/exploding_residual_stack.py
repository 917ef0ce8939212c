"""exploding_residual_stack: 40 unnormalised residual blocks x + Linear(ReLU(x)) (width 64, He init).

Diagnosis: exploding. Each variance-preserving branch adds as much variance as the skip carries,
so the second moment doubles per block, 2^40 overall (THEORY.md); the first/last gradient ratio
stays moderate while the output and gradient scales blow past 10^4.
Measured (tests/samples/sample_flow.py: 3 train-mode passes, default loss, model seed 0):
log10 first/last grad ratio -0.52 (seeds 0..4: -0.52..+0.04), output RMS
1.4e5 (seeds 0..4: 7.4e4..4.6e5), grad RMS 4.2e9..3.9e10: exploding by absolute scale.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH, IN_FEATURES, WIDTH, BLOCKS, OUT_FEATURES = 16, 32, 64, 40, 10


class ResidualBlock(nn.Module):
    """x + Linear(ReLU(x)) with no normalisation and no branch scaling."""

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, width)
        nn.init.kaiming_normal_(self.linear.weight, nonlinearity="relu")
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(torch.relu(x))


class ResidualStack(nn.Module):
    """Input projection, a stack of residual blocks, a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(IN_FEATURES, WIDTH)
        self.blocks = nn.Sequential(*(ResidualBlock(WIDTH) for _ in range(BLOCKS)))
        self.head = nn.Linear(WIDTH, OUT_FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A freshly seeded model and a batch of example inputs."""
    torch.manual_seed(seed)
    return ResidualStack(), (torch.randn(BATCH, IN_FEATURES),)
