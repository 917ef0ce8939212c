"""Quadrature against THEORY.md's activation table and known order/softmax statistics."""

import math

import pytest

from gradaudit.static.moments import Moments
from gradaudit.static.quadrature import activation_stats, max_order_stats, softmax_stats

# (fn, q, E[phi^2]/q, E[phi'^2]) from THEORY.md, "Activations, z ~ N(0, q)"
TABLE = [
    ("relu", 1.0, 0.5, 0.5),
    ("tanh", 0.25, 0.694, 0.717),
    ("tanh", 1.0, 0.394, 0.464),
    ("tanh", 4.0, 0.159, 0.256),
    ("sigmoid", 1.0, 0.293, 0.0448),
    ("gelu", 0.25, 0.334, 0.356),
    ("gelu", 1.0, 0.425, 0.456),
    ("gelu", 4.0, 0.483, 0.506),
    ("silu", 0.25, 0.289, 0.300),
    ("silu", 1.0, 0.356, 0.380),
    ("silu", 4.0, 0.440, 0.466),
    ("elu", 1.0, 0.645, 0.668),
    ("selu", 1.0, 1.000, 1.072),
]


@pytest.mark.parametrize("fn, q, forward, backward", TABLE)
def test_activation_table(fn, q, forward, backward):
    stats = activation_stats(fn, None, Moments(0.0, q, 0.0))
    assert stats.out.q / q == pytest.approx(forward, abs=1.5e-3)
    assert stats.dphi_sq == pytest.approx(backward, abs=1.5e-3)


def test_relu_mean_and_leaky_slope():
    assert activation_stats("relu", None, Moments(0.0, 4.0, 0.0)).out.mu == pytest.approx(0.3989 * 2, abs=1e-3)
    leaky = activation_stats("leaky_relu", {"alpha": 0.2}, Moments(0.0, 1.0, 0.0))
    assert leaky.out.q == pytest.approx((1 + 0.04) / 2, abs=1e-3)
    assert leaky.dphi_sq == pytest.approx((1 + 0.04) / 2, abs=1e-3)


def test_selu_is_centred_and_sigmoid_small_input_limit():
    assert abs(activation_stats("selu", None, Moments(0.0, 1.0, 0.0)).out.mu) < 1e-3
    assert activation_stats("sigmoid", None, Moments(0.0, 1e-6, 0.0)).dphi_sq == pytest.approx(1 / 16, rel=1e-3)


def test_per_unit_spread_is_split_from_batch_variance():
    """A per-unit offset keeps the totals of an unsplit input but lands in the output's spread s."""
    split = activation_stats("tanh", None, Moments(0.0, 0.5, 0.5))
    whole = activation_stats("tanh", None, Moments(0.0, 1.0, 0.0))
    assert split.out.q == pytest.approx(whole.out.q, rel=1e-3)
    assert split.dphi_sq == pytest.approx(whole.dphi_sq, rel=1e-3)
    assert split.out.s > 0.1 and whole.out.s == pytest.approx(0.0, abs=1e-9)


def test_max_of_gaussians():
    mean, var = max_order_stats(2)
    assert mean == pytest.approx(1 / math.sqrt(math.pi), abs=1e-4)
    assert var == pytest.approx(1 - 1 / math.pi, abs=1e-4)


def test_softmax_limits():
    uniform = softmax_stats(0.0, 10)
    assert uniform.participation == pytest.approx(0.1)
    assert uniform.backward == pytest.approx(0.1 * 0.9 / 10)
    saturated = softmax_stats(400.0, 10)
    assert saturated.participation > 0.9 and saturated.backward < uniform.backward


def test_slope_spread_and_homogeneity():
    """ReLU: phi(z) = z phi'(z) and phi'^2 in {0, 1} with mean 1/2, so E[phi'^4]/E[phi'^2]^2 - 1 = 1;
    tanh near 0 is linear (spread ~0, homogeneous); saturated tanh and sigmoid are not homogeneous."""
    relu = activation_stats("relu", None, Moments(0.0, 1.0, 0.0))
    assert relu.homogeneity == pytest.approx(1.0, abs=1e-6) and relu.slope_spread == pytest.approx(1.0, rel=0.02)
    small_tanh = activation_stats("tanh", None, Moments(0.0, 1e-4, 0.0))
    assert small_tanh.homogeneity == pytest.approx(1.0, abs=1e-3) and small_tanh.slope_spread < 1e-3
    assert activation_stats("tanh", None, Moments(0.0, 4.0, 0.0)).homogeneity < 0.7
    assert activation_stats("sigmoid", None, Moments(0.0, 1.0, 0.0)).homogeneity < 0.2


def test_per_unit_slope_mean_square_follows_the_unit_offsets():
    """dphi_unit_sq = E_units[(E_batch phi')^2]: dphi_mean^2 without per-unit offsets, E[phi'^2]
    when offsets dominate (each ReLU unit on or off for the whole batch)."""
    centred = activation_stats("relu", None, Moments(0.0, 1.0, 0.0))
    assert centred.dphi_unit_sq == pytest.approx(centred.dphi_mean**2, rel=1e-3)
    offsets = activation_stats("relu", None, Moments(0.0, 1e-6, 1.0))
    assert offsets.dphi_unit_sq == pytest.approx(0.5, rel=0.05)
