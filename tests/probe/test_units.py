"""Dead and saturated units of the activation a weight layer feeds."""

import math

import pytest
import torch
from torch import nn

from gradaudit.graph import add_node, new_graph
from gradaudit.loaders.torch_loader import from_module
from gradaudit.probe import run_probe
from gradaudit.probe.units import dead_fraction, find_activation, moments
from tests.probe.sequential import sequential_handle


def test_big_negative_bias_kills_relu_units():
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    layer = run_probe(sequential_handle(model, (64, 8)), passes=1).layers[0]
    assert layer.dead_frac == pytest.approx(1.0)
    assert layer.saturated_frac is None  # ReLU does not saturate


def test_healthy_relu_has_no_dead_units():
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    layer = run_probe(sequential_handle(model, (64, 8)), passes=1).layers[0]
    assert layer.dead_frac < 0.1


def test_huge_weights_saturate_tanh():
    model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    with torch.no_grad():
        model[0].weight.mul_(1000.0)
    result = run_probe(sequential_handle(model, (64, 16)), passes=1)
    assert result.layers[0].saturated_frac > 0.95
    assert result.layers[0].dead_frac is None  # tanh is not rectifying
    assert result.layers[1].saturated_frac is None  # no activation after the head


def test_unit_scale_tanh_is_mostly_unsaturated():
    model = nn.Sequential(nn.Linear(16, 16), nn.Tanh())
    with torch.no_grad():
        model[0].weight.normal_(0.0, 16 ** -0.5)
    layer = run_probe(sequential_handle(model, (256, 16)), passes=1).layers[0]
    assert layer.saturated_frac < 0.05  # |z| > ~2.2 is rare for z ~ N(0, 1)


@pytest.mark.parametrize("clip", [nn.ReLU6, lambda: nn.Hardtanh(0.0, 6.0)])
def test_relu6_saturates_only_at_its_upper_clip(clip):
    """Below zero ReLU6 (or a clip with a zero floor, how ReLU6 exports) is a ReLU's off half
    (dead units count it), not saturation: a unit-scale input, half of it negative, hardly
    reaches 6; a large one mostly does."""
    model = nn.Sequential(nn.Linear(16, 16), clip())
    with torch.no_grad():
        model[0].weight.normal_(0.0, 16 ** -0.5)
    x = (torch.randn(256, 16),)
    assert run_probe(from_module(model, x), passes=1).layers[0].saturated_frac < 0.01
    with torch.no_grad():
        model[0].weight.mul_(100.0)
    saturated = run_probe(from_module(model, x), passes=1).layers[0].saturated_frac
    assert 0.4 < saturated < 0.5  # the positive half, beyond 6 almost all; the negative half not counted


def test_batch_norm_between_conv_and_relu_is_followed():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU())
    with torch.no_grad():
        model[1].bias.fill_(-50.0)  # beta pushes every unit below zero after normalisation
    layer = run_probe(sequential_handle(model, (32, 4)), passes=1).layers[0]
    assert layer.dead_frac == pytest.approx(1.0)


def test_dead_units_are_per_channel_for_conv_outputs():
    slope = torch.ones(4, 3, 5, 5)
    slope[:, 1] = 0.0  # channel 1 inactive everywhere
    slope[0, 2, 0, 0] = 0.0  # channel 2 inactive at one place only: alive
    assert dead_fraction(slope, unit_axis=1) == pytest.approx(1 / 3)


def test_activation_found_through_a_constant_bias_add():
    graph = new_graph("onnx")
    add_node(graph, "x", name="x", op="input", source="input")
    add_node(graph, "w", name="matmul", op="linear", source="MatMul", inputs=["x"])
    add_node(graph, "b", name="bias", op="constant", source="Constant")
    add_node(graph, "add", name="add", op="add", source="Add", inputs=["w", "b"])
    add_node(graph, "act", name="relu", op="activation", fn="relu", source="Relu", inputs=["add"])
    site = find_activation(graph, "w")
    assert site is not None and site.input_node == "add" and site.fn == "relu"
    add_node(graph, "y", name="residual", op="add", source="Add", inputs=["act", "x"])
    add_node(graph, "act2", name="relu2", op="activation", fn="relu", source="Relu", inputs=["y"])
    assert find_activation(graph, "act") is None  # a residual sum mixes units: not followed


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e6])
def test_moments_keep_their_digits_far_from_zero(offset):
    y = offset + 0.01 * torch.randn(4096)
    mean, std, finite = moments(y)
    assert finite
    assert mean == pytest.approx(float(y.double().mean()), rel=1e-6, abs=1e-6)
    assert std == pytest.approx(float(y.double().std(unbiased=False)), rel=1e-3)


def test_moments_flag_non_finite_values():
    assert moments(torch.tensor([1.0, math.nan]))[2] is False
    assert moments(torch.tensor([1.0, math.inf]))[2] is False
