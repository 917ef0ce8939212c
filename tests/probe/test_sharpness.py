"""Largest Hessian eigenvalue by power iteration on Hessian-vector products."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gradaudit.probe import run_probe
from gradaudit.probe.sharpness import exact_hvp, largest_eigenvalue, random_direction
from tests.probe.sequential import sequential_handle


def test_quadratic_model_sharpness_matches_its_eigenvalue():
    # L = (1/B) sum 1/2 (w.x_b - t_b)^2 has Hessian X^T X / B
    x = torch.randn(32, 6) * torch.tensor([3.0, 1.0, 1.0, 0.5, 0.5, 0.2])
    model = nn.Sequential(nn.Linear(6, 1, bias=False))
    result = run_probe(sequential_handle(model, (32, 6)), passes=1, data=(x,), sharpness=True)
    expected = float(torch.linalg.eigvalsh(x.T @ x / 32).max())
    assert result.sharpness == pytest.approx(expected, rel=1e-3)


def test_sharpness_only_when_asked():
    handle = sequential_handle(nn.Sequential(nn.Linear(6, 1)), (8, 6))
    assert run_probe(handle).sharpness is None


def test_largest_algebraic_eigenvalue_when_dominant_is_negative():
    # f(a, b) = -5 a^2 / 2 + b^2 / 2: eigenvalues -5 and 1; the largest is 1
    params = [torch.tensor([1.0, 1.0], requires_grad=True)]
    loss = -2.5 * params[0][0] ** 2 + 0.5 * params[0][1] ** 2
    grads = torch.autograd.grad(loss, params, create_graph=True)
    start = random_direction(params, torch.Generator().manual_seed(0))
    assert largest_eigenvalue(exact_hvp(grads, params), start) == pytest.approx(1.0, rel=1e-3)


class Attention(nn.Module):
    """Single-head self-attention, fused (no double backward on CPU) or written out."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.fused = fused
        self.qkv = nn.Linear(8, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, dim=-1)  # (batch, 1 head, length, 8)
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v)
        return torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1) @ v


def test_finite_differences_stand_in_when_an_op_has_no_double_backward():
    written_out = nn.Sequential(Attention(fused=False), nn.Linear(8, 4))
    fused = nn.Sequential(Attention(fused=True), nn.Linear(8, 4))  # 4-D fused SDPA: flash kernel
    fused.load_state_dict(written_out.state_dict())
    x = torch.randn(2, 5, 8)
    exact = run_probe(sequential_handle(written_out, (2, 5, 8)), passes=1, data=(x,), sharpness=True).sharpness
    approx = run_probe(sequential_handle(fused, (2, 5, 8)), passes=1, data=(x,), sharpness=True).sharpness
    assert exact > 0
    assert approx == pytest.approx(exact, rel=0.02)
