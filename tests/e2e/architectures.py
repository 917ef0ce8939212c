"""Two architectures as their authors write them, with what an exporter makes of them: the
factories of tests/e2e/test_both_routes.py.

- `llama`: hand-written RMSNorm (x * rsqrt(mean(x^2) + eps) * w), rotary embeddings, causal
  scaled_dot_product_attention (exported as a -inf mask added to the scores), SwiGLU MLP,
  N(0, 0.02) init, integer tokens.
- `unet`: GroupNorm + SiLU double convolutions (exported as InstanceNormalization between
  Reshapes, and Mul(x, Sigmoid(x))), nearest upsampling, skip concatenations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(width)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate_half(x):
    first, second = x.chunk(2, -1)
    return torch.cat([-second, first], -1)


class Block(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.attn_norm, self.mlp_norm = RMSNorm(width), RMSNorm(width)
        self.q, self.k, self.v, self.o = (nn.Linear(width, width, bias=False) for _ in range(4))
        self.gate, self.up, self.down = (nn.Linear(width, hidden, bias=False), nn.Linear(width, hidden, bias=False),
                                         nn.Linear(hidden, width, bias=False))

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        h = self.attn_norm(x)
        q, k, v = (m(h).view(b, t, self.heads, d // self.heads).transpose(1, 2) for m in (self.q, self.k, self.v))
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        x = x + self.o(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, vocab: int = 64, width: int = 32, heads: int = 4, layers: int = 2, hidden: int = 86,
                 positions: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(width, heads, hidden) for _ in range(layers))
        self.norm, self.head = RMSNorm(width), nn.Linear(width, vocab, bias=False)
        half = width // heads // 2
        angles = torch.outer(torch.arange(positions).float(), 1.0 / 10000 ** (torch.arange(half).float() / half))
        angles = torch.cat([angles, angles], -1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        for param in self.parameters():
            if param.dim() >= 2:
                nn.init.normal_(param, 0.0, 0.02)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.head(self.norm(x))


def llama():
    torch.manual_seed(0)
    return Llama(), (torch.randint(0, 64, (4, 16)),)


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU())


class UNet(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.down1, self.down2, self.bottom = (_double_conv(3, width), _double_conv(width, 2 * width),
                                               _double_conv(2 * width, 4 * width))
        self.up2, self.up1 = _double_conv(6 * width, 2 * width), _double_conv(3 * width, width)
        self.out = nn.Conv2d(width, 2, 1)

    def forward(self, x):
        first = self.down1(x)
        second = self.down2(F.max_pool2d(first, 2))
        y = self.bottom(F.max_pool2d(second, 2))
        y = self.up2(torch.cat([F.interpolate(y, scale_factor=2.0), second], 1))
        y = self.up1(torch.cat([F.interpolate(y, scale_factor=2.0), first], 1))
        return self.out(y)


def unet():
    torch.manual_seed(0)
    return UNet(), (torch.randn(4, 3, 16, 16),)
