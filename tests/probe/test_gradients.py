"""Per-layer gradient scales, their combination over passes, and the diagnosis they lead to."""

import math

import pytest
import torch
from torch import nn

from gradaudit.loss import default_loss
from gradaudit.probe import run_probe
from tests.probe.sequential import mlp, sequential_handle


def _hand_grad_rms(model: nn.Sequential, x: torch.Tensor, seed: int) -> list[float]:
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    loss = default_loss([model(x)], ["linear"], [-1], seed)
    grads = torch.autograd.grad(loss, weights)
    return [float(g.norm() / math.sqrt(g.numel())) for g in grads]


def test_grad_rms_matches_autograd_by_hand():
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    x = torch.randn(4, 6)
    result = run_probe(sequential_handle(model, (4, 6)), passes=2, seed=3, data=(x,))
    # the same real batch on both passes, fresh default-loss targets per pass (seed + pass index)
    per_pass = [_hand_grad_rms(model, x, 3), _hand_grad_rms(model, x, 4)]
    expected = [math.sqrt((a * a + b * b) / 2) for a, b in zip(*per_pass)]
    assert [layer.grad_rms for layer in result.layers] == pytest.approx(expected, rel=1e-5)
    assert [layer.param for layer in result.layers] == ["0.weight", "2.weight"]
    assert result.log10_ratio_first_last == pytest.approx(math.log10(expected[0] / expected[1]), abs=1e-6)
    assert result.layers[0].weight_rms == pytest.approx(float(model[0].weight.detach().pow(2).mean().sqrt()), rel=1e-6)
    assert result.passes == 2
    assert result.loss.startswith("default: squared error")


def test_activation_moments_are_those_of_the_pre_activation():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.randn(32, 8)
    result = run_probe(sequential_handle(model, (32, 8)), passes=1, data=(x,))
    z = model[0](x).detach()
    assert result.layers[0].act_mean == pytest.approx(float(z.mean()), abs=1e-5)
    assert result.layers[0].act_std == pytest.approx(float(z.std(unbiased=False)), rel=1e-4)
    assert result.input_mean == pytest.approx(float(x.mean()), abs=1e-6)
    assert result.input_std == pytest.approx(float(x.std(unbiased=False)), rel=1e-5)


def test_same_seed_same_numbers_other_seed_other_numbers():
    handle = sequential_handle(mlp(3, 16, nn.ReLU, "kaiming"), (8, 16))
    first, again, other = run_probe(handle, seed=5), run_probe(handle, seed=5), run_probe(handle, seed=6)
    assert [layer.grad_rms for layer in first.layers] == [layer.grad_rms for layer in again.layers]
    assert first.output_rms == again.output_rms
    assert [layer.grad_rms for layer in first.layers] != [layer.grad_rms for layer in other.layers]


@pytest.mark.parametrize(
    "depth, activation, init, expected",
    [
        (8, nn.ReLU, "normal", "exploding"),
        (20, nn.Sigmoid, "default", "vanishing"),
        (8, nn.ReLU, "kaiming", "healthy"),
    ],
)
def test_diagnosis_of_classic_mlps(depth, activation, init, expected):
    result = run_probe(sequential_handle(mlp(depth, 64, activation, init), (32, 64)))
    assert result.diagnosis.label == expected
    assert not result.nonfinite


def test_frozen_weight_counts_as_zero_gradient():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    result = run_probe(sequential_handle(model, (8, 4)), passes=1)
    assert result.layers[0].grad_rms == 0.0  # exact: no gradient reaches the layer
    assert result.layers[1].grad_rms > 0
    assert result.log10_ratio_first_last is None


def test_global_grad_norm_covers_every_parameter():
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    x = torch.randn(6, 5)
    result = run_probe(sequential_handle(model, (6, 5)), passes=1, data=(x,))
    grads = torch.autograd.grad(default_loss([model(x)], ["linear"], [-1], 0), list(model.parameters()))
    assert result.grad_norm == pytest.approx(math.sqrt(sum(float(g.pow(2).sum()) for g in grads)), rel=1e-5)
