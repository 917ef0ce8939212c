"""exploding_bn_plain_stack: 50 plain (no skip) Linear -> BatchNorm -> ReLU blocks, width 32.

Diagnosis: exploding. Batch normalisation in a deep plain stack makes the gradient grow toward the
input at initialisation whatever the weight scale (Yang et al. 2019, "A Mean Field Theory of Batch
Normalization"): each BN divides by a batch statistic, so every layer multiplies the backward
gradient by about sqrt(pi / (pi - 1)) ~ 1.2 and no weight rescale can undo it (BN removes the
scale). The structural fixes are residual connections (the branch scaled) or dropping the norms.
Measured: see samples/README.md.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH, IN_FEATURES, WIDTH, DEPTH, OUT_FEATURES = 16, 32, 32, 50, 10


def build(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A freshly seeded model and a batch of example inputs."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for fan_in in [IN_FEATURES] + [WIDTH] * (DEPTH - 1):
        layers += [nn.Linear(fan_in, WIDTH), nn.BatchNorm1d(WIDTH), nn.ReLU()]
    layers.append(nn.Linear(WIDTH, OUT_FEATURES))
    return nn.Sequential(*layers), (torch.randn(BATCH, IN_FEATURES),)
