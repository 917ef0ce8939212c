"""Expectations over Gaussian inputs by numerical quadrature, cached.

No closed forms: E[phi], E[phi^2], E[phi'] and E[phi'^2] of any activation in
gradaudit.activations are integrated numerically (phi' by torch autograd), which is what lets
the estimator cover every function the loaders name. Results are cached per
(function, attrs, rounded moments) so a deep graph costs a handful of torch calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from gradaudit.activations import activation
from gradaudit.static.moments import Moments

# Within-unit axis: a fine midpoint grid, because activations have kinks (ReLU, ELU's phi') where
# Gauss-Hermite converges only like 1/n; an even point count keeps z = mu off the nodes (torch's
# one-sided derivative there would bias E[phi'^2]). The per-unit-mean axis integrates a function
# already smoothed by the batch average, so a small Gauss-Hermite rule suffices there.
INNER_HALF_WIDTH = 10.0  # standard deviations covered by the grid
INNER_POINTS = 1000
OUTER_NODES = 16
SIGNIFICANT_DIGITS = 5  # cache key resolution; far below the estimator's own error


@dataclass(frozen=True)
class ActivationStats:
    """Statistics of phi(z) for z = mu + m + e, m ~ N(0, s) per unit, e ~ N(0, v) over the batch."""

    out: Moments  # moments of phi(z), split into within-unit and per-unit parts
    dphi_sq: float  # E[phi'(z)^2]: the backward mean-square gain
    dphi_mean: float  # E[phi'(z)]: the gain of a gradient common to all units
    dphi_unit_sq: float  # mean over units of (the unit's batch-mean phi')^2: the gain of per-unit gradient means
    slope_spread: float  # E[phi'^4] / E[phi'^2]^2 - 1: the normalised variance of the diagonal Jacobian
    homogeneity: float  # squared correlation of phi(z) with z phi'(z): 1 when phi(z) = z phi'(z) (ReLU)


@lru_cache(maxsize=None)
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and normalised weights for E[f(x)], x ~ N(0, 1)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    return nodes, weights / weights.sum()


@lru_cache(maxsize=None)
def _midpoint_gaussian() -> tuple[np.ndarray, np.ndarray]:
    """Midpoint-rule nodes and normalised weights for E[f(x)], x ~ N(0, 1), robust to kinks."""
    step = 2.0 * INNER_HALF_WIDTH / INNER_POINTS
    x = -INNER_HALF_WIDTH + step * (np.arange(INNER_POINTS) + 0.5)
    weights = np.exp(-0.5 * x * x)
    return x, weights / weights.sum()


def _round(x: float) -> float:
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


def _freeze(attrs: dict[str, Any] | None) -> tuple:
    return tuple(sorted((k, _hashable(v)) for k, v in (attrs or {}).items()))


def activation_stats(fn: str, attrs: dict[str, Any] | None, m: Moments) -> ActivationStats:
    """Moments of an activation's output and its derivative statistics for input moments `m`."""
    return _activation_stats(fn, _freeze(attrs), _round(m.mu), _round(max(m.v, 0.0)), _round(max(m.s, 0.0)))


@lru_cache(maxsize=65536)
def _activation_stats(fn: str, frozen: tuple, mu: float, v: float, s: float) -> ActivationStats:
    phi = activation(fn, dict(frozen))
    inner_x, inner_w = _midpoint_gaussian() if v > 0 else (np.zeros(1), np.ones(1))
    outer_x, outer_w = _hermite(OUTER_NODES) if s > 0 else (np.zeros(1), np.ones(1))
    z = mu + math.sqrt(s) * outer_x[:, None] + math.sqrt(v) * inner_x[None, :]
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    yt = phi(zt)
    (dt,) = torch.autograd.grad(yt.sum(), zt, allow_unused=True)
    y = yt.detach().numpy()
    d = np.zeros_like(y) if dt is None else dt.numpy()
    weights = outer_w[:, None] * inner_w[None, :]
    unit_means = y @ inner_w  # E_e[phi] for each per-unit offset
    unit_slopes = d @ inner_w  # E_e[phi'] for each per-unit offset
    mean = float(outer_w @ unit_means)
    wy, wd2 = weights * y, weights * d * d
    q = float((wy * y).sum())
    unit_sq = float(outer_w @ (unit_means * unit_means))
    out = Moments(mean, max(q - unit_sq, 0.0), max(unit_sq - mean * mean, 0.0))
    d_sq = float(wd2.sum())
    # J z = z phi'(z) equals phi(z) where phi is positively homogeneous
    overlap, linearised_sq = float((wy * z * d).sum()), float((wd2 * z * z).sum())
    return ActivationStats(
        out, d_sq, float(outer_w @ unit_slopes), float(outer_w @ (unit_slopes * unit_slopes)),
        float((wd2 * d * d).sum()) / d_sq**2 - 1.0 if d_sq > 0 else 0.0,
        overlap * overlap / (q * linearised_sq) if q * linearised_sq > 0 else 0.0,
    )


@lru_cache(maxsize=None)
def max_order_stats(k: int) -> tuple[float, float]:
    """E[M] and Var[M] of the maximum M of k independent N(0, 1) variables (max pooling)."""
    if k <= 1:
        return 0.0, 1.0
    x = np.linspace(-12.0, 12.0, 8001)
    cdf = 0.5 * (1.0 + torch.special.erf(torch.tensor(x / math.sqrt(2.0))).numpy())
    density = k * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) * cdf ** (k - 1)
    density /= density.sum()
    mean = float((density * x).sum())
    return mean, float((density * x * x).sum()) - mean * mean


@dataclass(frozen=True)
class SoftmaxStats:
    """Row statistics of p = softmax(z) for C logits z ~ N(0, var)."""

    participation: float  # E[sum_i p_i^2]: 1/C for equal logits, 1 when one class takes all
    backward: float  # E[dx^2] / E[dy^2] per element for uncorrelated dy: E[sum p^2 - 2 sum p^3 + (sum p^2)^2] / C


SOFTMAX_SAMPLE_VALUES = 1 << 16  # logits per sample (rows x classes)
SOFTMAX_SEED = 0


def softmax_stats(logit_var: float, classes: int) -> SoftmaxStats:
    """Softmax saturation statistics, by a seeded sample of logit rows (cached).

    Neither the participation nor the backward factor has a closed form in the saturating
    regime: the winner's margin decays only like 1/sigma, which lognormal approximations miss.
    """
    return _softmax_stats(_round(max(logit_var, 0.0)), max(int(classes), 1))


@lru_cache(maxsize=64)
def _standard_logits(classes: int) -> np.ndarray:
    """One seeded N(0, 1) sample of logit rows per class count, rescaled for every variance:
    common random numbers make the statistics smooth in the variance and spare a draw per call."""
    rows = max(SOFTMAX_SAMPLE_VALUES // classes, 16)
    return np.random.default_rng(SOFTMAX_SEED).standard_normal((rows, classes))


@lru_cache(maxsize=4096)
def _softmax_stats(logit_var: float, classes: int) -> SoftmaxStats:
    z = _standard_logits(classes) * math.sqrt(logit_var)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p2, p3 = (p * p).sum(axis=1), (p * p * p).sum(axis=1)
    return SoftmaxStats(float(p2.mean()), float((p2 - 2.0 * p3 + p2 * p2).mean()) / classes)


def batch_freedom(fn: str, attrs: dict[str, Any] | None, m: Moments) -> tuple[float, float]:
    """(free_mean, free_var) of phi(z) when z's values over a batch are standardised exactly
    (BatchNorm's output, moments.Moments): phi's batch mean and variance fluctuate only through
    what they owe to the sample's shape beyond its pinned mean and variance.

    With x the standardised value, the pinned sums are the first two Hermite components (x and
    x^2 - 1): of the mean of y = phi(mu + sqrt(v) x) free is Var y less its projections on them,
    and of the variance, Var of h = (y - E y)^2 less its projections (each over what independent
    Gaussian values give, Var y and 2 Var(y)^2). The identity keeps nothing free, a ReLU half
    its variance's fluctuation.
    """
    return _batch_freedom(fn, _freeze(attrs), _round(m.mu), _round(max(m.v, 0.0)))


@lru_cache(maxsize=4096)
def _batch_freedom(fn: str, frozen: tuple[Any, ...], mu: float, v: float) -> tuple[float, float]:
    x, w = _midpoint_gaussian()
    y = activation(fn, dict(frozen))(torch.tensor(mu + math.sqrt(v) * x, dtype=torch.float64)).numpy()
    centred = y - float(w @ y)
    var = float(w @ (centred * centred))
    if var <= 0.0:
        return 0.0, 0.0
    second = x * x - 1.0

    def unpinned(f: np.ndarray) -> float:
        """E[f^2] less its projections on x and x^2 - 1 (f centred)."""
        return float(w @ (f * f)) - float(w @ (f * x)) ** 2 - float(w @ (f * second)) ** 2 / 2.0

    deviation = centred * centred - var
    return max(unpinned(centred) / var, 0.0), max(unpinned(deviation) / (2.0 * var * var), 0.0)
