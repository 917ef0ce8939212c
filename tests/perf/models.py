"""Small factories for the performance and scale tests (factory specs point here)."""

from __future__ import annotations

import torch
from torch import nn


def mlp() -> tuple[nn.Module, tuple]:
    """A 4-layer tanh MLP and its example batch."""
    torch.manual_seed(0)
    layers = [nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
              nn.Linear(32, 4)]
    return nn.Sequential(*layers), (torch.randn(8, 16),)


class RMSNorm(nn.Module):
    """A norm whose scale is set in the constructor (no reset_parameters to replay)."""

    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.full((width,), 0.5))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class TinyLM(nn.Module):
    """Embedding -> [norm -> Linear -> SiLU -> Linear residual] x 2 -> head."""

    def __init__(self, vocab: int = 50, width: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.norms = nn.ModuleList(RMSNorm(width) for _ in range(2))
        self.ups = nn.ModuleList(nn.Linear(width, 2 * width) for _ in range(2))
        self.downs = nn.ModuleList(nn.Linear(2 * width, width) for _ in range(2))
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, ids):
        x = self.embed(ids)
        for norm, up, down in zip(self.norms, self.ups, self.downs):
            x = x + down(nn.functional.silu(up(norm(x))))
        return self.head(x)


def tiny_lm() -> nn.Module:
    """TinyLM with torch's default init."""
    return TinyLM()


def tiny_lm_custom_init() -> nn.Module:
    """TinyLM re-initialised after construction by a loop over its modules (GPT-2 style)."""
    model = TinyLM()
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.3)
            if module.bias is not None:
                module.bias.data.zero_()
    return model


class DataDependent(nn.Module):
    """Reads a tensor value in forward: no meta tensor can answer that."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(8, 8)

    def forward(self, x):
        y = self.layer(x)
        return y * 2 if float(y.sum()) > 0 else y


def data_dependent() -> nn.Module:
    return DataDependent()
