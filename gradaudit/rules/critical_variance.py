"""The critical weight variance of a layer in front of any activation.

The init rule (GA201) and the re-initialisation remedy need "the weight variance that makes this
layer's gain 1 in front of this activation" for any activation in gradaudit.activations. Closed
forms exist only for a few (He's 2/fan_in for ReLU), so we take E[phi'(z)^2] for z ~ N(0, q) from
the static estimator's quadrature and solve the mean-field criticality condition
chi = fan_in * Var(w) * E[phi'^2] = 1 with q = fan_in * Var(w) * E[x^2] depending on Var(w) too
(it matters away from ReLU's scale invariance: tanh and sigmoid saturate as q grows).
"""

from __future__ import annotations

import math
from typing import Any

Q_RANGE = (1e-12, 1e12)  # second moments are clamped to this range
# Search range of fan_in * Var(w) for the critical variance: 10^-4..10^4 brackets every
# activation in the table whose E[phi'^2] is neither 0 nor infinite on a reasonable q.
CRITICAL_SEARCH_LOG10 = (-4.0, 4.0)
BISECTION_STEPS = 25  # 8 decades / 2^25: far finer than any tolerance used


def activation_moments(fn: str, attrs: dict[str, Any] | None, q: float, mean: float = 0.0) -> tuple[float, float]:
    """(E[phi(z)^2], E[phi'(z)^2]) for z ~ N(mean, q).

    The static package needs torch; it is imported here so the rule registry (and with it
    `gradaudit rules` / `gradaudit explain`) stays importable without torch.
    """
    from gradaudit.static.moments import Moments
    from gradaudit.static.quadrature import activation_stats

    stats = activation_stats(fn, attrs, Moments(mean, min(max(q, Q_RANGE[0]), Q_RANGE[1]), 0.0))
    return stats.out.q, stats.dphi_sq


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
