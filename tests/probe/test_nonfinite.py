"""Non-finite detection and the layer it names."""

import math

import pytest
import torch
from torch import nn

from gradaudit.probe import run_probe
from tests.probe.sequential import sequential_handle


def test_inf_weight_names_its_layer():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[2].weight[0, 0] = math.inf
    result = run_probe(sequential_handle(model, (8, 4)))
    assert result.nonfinite
    assert result.first_nonfinite == "layer2"
    assert result.diagnosis.label == "exploding"
    assert [layer.nonfinite for layer in result.layers][1]


def test_finite_model_reports_nothing():
    result = run_probe(sequential_handle(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), (8, 4)))
    assert not result.nonfinite and result.first_nonfinite is None
    assert not any(layer.nonfinite for layer in result.layers)


def test_huge_but_finite_activations_are_not_called_non_finite():
    model = nn.Sequential(nn.Linear(64, 64, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1e35)  # outputs ~1e36: finite in float32, their squares are not
    handle = sequential_handle(model, (4, 64))
    handle.loss_fn = lambda outputs, inputs: outputs.mean()
    x = torch.randn(4, 64)
    result = run_probe(handle, passes=1, data=(x,))
    expected_std = float((x.double() @ model[0].weight.detach().double().T).std(unbiased=False))
    assert not result.nonfinite
    assert result.layers[0].act_std == pytest.approx(expected_std, rel=1e-4)


def test_gradient_overflow_names_where_backward_overflowed():
    model = nn.Sequential(*[nn.Linear(4, 4, bias=False) for _ in range(3)], nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        model[1].weight.mul_(1e-20)  # activations ~1e-20 after layer 1 ...
        model[2].weight.fill_(1e12)  # ... so the forward and the loss stay finite
    handle = sequential_handle(model, (8, 4))
    handle.loss_fn = lambda outputs, inputs: outputs.sum() * 1e30
    result = run_probe(handle, passes=1)
    # dL/d(layer-1 output) = W2^T (1e30 W3^T) overflows: layers 0 and 1 get inf gradients
    assert [math.isfinite(layer.grad_rms) for layer in result.layers] == [False, False, True, True]
    assert result.nonfinite
    assert result.first_nonfinite == "layer1"
