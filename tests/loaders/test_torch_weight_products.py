"""addmm / baddbmm with a parameter operand are weight layers (transformers' Conv1D in GPT-2)."""

from __future__ import annotations

import torch
import torch.nn as nn

from gradaudit.graph import weight_layers
from gradaudit.loaders.torch_loader import from_module
from gradaudit.static import estimate


class Conv1D(nn.Module):
    """transformers' Conv1D: a linear layer stored transposed, (in, out), applied by addmm."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return flat.view(x.size()[:-1] + (self.weight.size(-1),))


class GPT2Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c_fc, self.c_proj = Conv1D(16, 64), Conv1D(64, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c_proj(torch.nn.functional.gelu(self.c_fc(x)))


class ScaledScores(nn.Module):
    """Bloom-style scores: baddbmm(bias, q, k^T, alpha=1/sqrt(d)) of two activations."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(x[:, :, :1].expand(-1, -1, x.shape[1]), self.q(x), self.k(x).transpose(1, 2), alpha=0.25)


def test_conv1d_addmm_is_a_linear_layer_named_after_its_module():
    handle = from_module(GPT2Mlp(), (torch.randn(4, 5, 16),))
    layers = weight_layers(handle.graph)
    assert [w.param for w in layers] == ["c_fc.weight", "c_proj.weight"]
    first = handle.graph.nodes[layers[0].node]
    assert first["op"] == "linear" and first["name"] == "c_fc"
    assert (first["attrs"]["fan_in"], first["attrs"]["fan_out"]) == (16.0, 64.0)  # W is (in, out)
    assert first["params"]["bias"].name == "c_fc.bias"
    static = estimate(handle.graph, handle.inputs)
    assert not static.partial, static.unknown_ops


def test_baddbmm_of_activations_is_product_scale_and_sum():
    handle = from_module(ScaledScores(), (torch.randn(2, 6, 16),))
    ops = {d["op"]: d for _, d in handle.graph.nodes(data=True)}
    assert {"matmul", "scale", "add"} <= set(ops)
    assert abs(ops["scale"]["attrs"]["value"] - 0.25) < 1e-12
    assert not estimate(handle.graph, handle.inputs).partial
