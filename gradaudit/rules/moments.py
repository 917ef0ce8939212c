"""Activation moments and the critical weight variance, by quadrature on a fine grid.

The init rule (GA201) and the re-initialisation remedy need "the weight variance that makes this
layer's gain 1 in front of this activation" for any activation in gradaudit.activations. Closed
forms exist only for a few (He's 2/fan_in for ReLU), so, like the static estimator, we integrate
E[phi(z)^2] and E[phi'(z)^2] for z ~ N(0, q) numerically with autograd (THEORY.md, activations
table) and solve the mean-field criticality condition chi = fan_in * Var(w) * E[phi'^2] = 1 with
q = fan_in * Var(w) * E[x^2] depending on Var(w) too (it matters away from ReLU's scale
invariance: tanh and sigmoid saturate as q grows).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from gradaudit.activations import activation

# A uniform grid over +-GRID_SIGMAS standard deviations, fine enough to resolve a derivative that
# is non-zero only within |z| < 1 (tanh' at q = 10^4): Gauss-Hermite nodes spread too far apart
# there and miss it.
GRID_SIGMAS = 8.0
GRID_STEP_MAX = 0.02  # in units of z
# fewest, most (+1): 20001 points resolve |z| < 1 (step <= 0.1) up to q ~ 1.5e4 and stay under torch's
# parallel grain size (32768), so the quadrature never competes for threads
GRID_POINTS = (2000, 20000)
GRID_POINTS_QUANTUM = 2000  # grid sizes are rounded up to a multiple: few distinct grids to cache
Q_RANGE = (1e-12, 1e12)  # second moments are clamped to this range
# Search range of fan_in * Var(w) for the critical variance: 10^-4..10^4 brackets every
# activation in the table whose E[phi'^2] is neither 0 nor infinite on a reasonable q.
CRITICAL_SEARCH_LOG10 = (-4.0, 4.0)
BISECTION_STEPS = 25  # 8 decades / 2^25: far finer than any tolerance used


@functools.lru_cache(maxsize=64)
def _grid(points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard-normal grid and its normalised weights (cached: exp is the costly part)."""
    u = torch.linspace(-GRID_SIGMAS, GRID_SIGMAS, points, dtype=torch.float64)
    density = torch.exp(-0.5 * u * u)
    return u, density / density.sum()


def activation_moments(fn: str, attrs: dict[str, Any] | None, q: float, mean: float = 0.0) -> tuple[float, float]:
    """(E[phi(z)^2], E[phi'(z)^2]) for z ~ N(mean, q)."""
    sd = math.sqrt(min(max(q, Q_RANGE[0]), Q_RANGE[1]))
    wanted = 2 * GRID_SIGMAS * sd / GRID_STEP_MAX
    points = min(max(math.ceil(wanted / GRID_POINTS_QUANTUM) * GRID_POINTS_QUANTUM, GRID_POINTS[0]), GRID_POINTS[1]) + 1
    u, density = _grid(points)
    z = (mean + sd * u).requires_grad_(True)
    y = activation(fn, attrs)(z)
    (dy,) = torch.autograd.grad(y.sum(), z)
    return float((density * y.detach() ** 2).sum()), float((density * dy**2).sum())


def layer_chi(fn: str | None, attrs: dict[str, Any] | None, fan_in: float, weight_sq: float, input_sq: float) -> float:
    """Per-layer variance gain fan_in * E[w^2] * E[phi'^2] with q = fan_in * E[w^2] * E[x^2]."""
    sigma2 = fan_in * weight_sq
    if fn is None:
        return sigma2
    _, dphi_sq = activation_moments(fn, attrs, sigma2 * input_sq)
    return sigma2 * dphi_sq


def critical_weight_variance(fn: str | None, attrs: dict[str, Any] | None, fan_in: float, input_sq: float) -> float:
    """Var(w) that makes this layer's gain chi (see `layer_chi`) 1, given its actual input.

    He's 2/fan_in for ReLU, 0.92/fan_in (~LeCun) for SELU, 3.8/fan_in for tanh on a unit input
    (near torch's gain^2 = 2.8). chi grows with Var(w) for the activations in the table
    (saturating ones lose E[phi'^2] only like 1/sqrt(q)), so bisection on log Var(w) finds it;
    when chi = 1 is out of reach the nearer end of the search range is returned.
    """
    if fn is None:
        return 1.0 / fan_in
    lo, hi = CRITICAL_SEARCH_LOG10
    input_sq = input_sq if input_sq > 0 and math.isfinite(input_sq) else 1.0
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if layer_chi(fn, attrs, fan_in, 10.0**mid / fan_in, input_sq) < 1.0:
            lo = mid
        else:
            hi = mid
    return 10.0 ** (0.5 * (lo + hi)) / fan_in
