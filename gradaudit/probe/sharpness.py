"""Sharpness: the largest eigenvalue of the loss Hessian, for the learning-rate remedy.

Gradient descent on a quadratic is stable iff lr < 2 / lambda_max (THEORY.md, Cohen et al. 2021),
so lambda_max at initialisation bounds the usable learning rate. The Hessian is never formed:
power iteration on Hessian-vector products, by double backward through the pass's own graph, or,
for models with an op that has no double backward (fused attention kernels), by central
differences of gradients. Power iteration finds the eigenvalue of largest magnitude; when that one
is negative, a second run on H - lambda*I finds the largest algebraic eigenvalue, the one that
bounds the learning rate.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

MAX_ITERATIONS = 20
RESIDUAL_TOLERANCE = 1e-2

Vector = list[torch.Tensor]
HessianVectorProduct = Callable[[Vector], Vector]


def _dot(a: Vector, b: Vector) -> float:
    return float(sum(torch.sum(x.double() * y.double()) for x, y in zip(a, b)))


def _normalised(v: Vector) -> Vector:
    norm = math.sqrt(_dot(v, v))
    return [x / norm for x in v] if norm > 0 else v


def random_direction(params: Sequence[torch.Tensor], generator: torch.Generator) -> Vector:
    """A seeded N(0, I) start vector shaped like the parameters."""
    return [torch.randn(p.shape, generator=generator).to(p.dtype).to(p.device) for p in params]


def exact_hvp(grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor]) -> HessianVectorProduct:
    """v -> H v by differentiating grad . v; `grads` must come from autograd.grad(create_graph=True).
    Gradients that do not depend on the parameters contribute 0."""
    pairs = [(g, i) for i, g in enumerate(grads) if g.requires_grad]

    def hvp(v: Vector) -> Vector:
        if not pairs:
            return [torch.zeros_like(p) for p in params]
        out = torch.autograd.grad(
            [g for g, _ in pairs], params, grad_outputs=[v[i] for _, i in pairs], retain_graph=True, allow_unused=True
        )
        return [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(out, params)]

    return hvp


def finite_difference_hvp(gradient_at: Callable[[], Vector], params: Sequence[torch.Tensor]) -> HessianVectorProduct:
    """v -> (g(theta + e v) - g(theta - e v)) / 2e, with `gradient_at()` the loss gradient at the
    parameters' current values. e = cbrt(machine eps) * (1 + ||theta||) balances the O(e^2)
    truncation error against rounding; the parameters are restored exactly after each product."""
    saved = [p.detach().clone() for p in params]
    theta_norm = math.sqrt(_dot(saved, saved))
    step = torch.finfo(saved[0].dtype).eps ** (1 / 3) * (1.0 + theta_norm) if saved else 0.0

    def gradient_shifted(v: Vector, sign: float) -> Vector:
        with torch.no_grad():
            for p, base, d in zip(params, saved, v):
                p.copy_(base + sign * step * d)
        return gradient_at()

    def hvp(v: Vector) -> Vector:
        try:
            ahead, behind = gradient_shifted(v, 1.0), gradient_shifted(v, -1.0)
        finally:
            with torch.no_grad():
                for p, base in zip(params, saved):
                    p.copy_(base)
        return [(a - b) / (2 * step) for a, b in zip(ahead, behind)]

    return hvp


def _power_iteration(hvp: HessianVectorProduct, start: Vector, shift: float) -> float:
    """Dominant eigenvalue of H - shift*I, returned as an eigenvalue of H.

    Converged when the residual ||Hv - lambda v|| is small against |lambda|: unlike the change
    between two Rayleigh quotients, that cannot be fooled by a start nearly orthogonal to the
    top eigenvector, whose first estimates can agree by accident.
    """
    v = _normalised(start)
    estimate = math.nan
    for _ in range(MAX_ITERATIONS):
        hv = [h - shift * x for h, x in zip(hvp(v), v)]
        estimate = _dot(v, hv)
        residual = [h - estimate * x for h, x in zip(hv, v)]
        if math.sqrt(_dot(residual, residual)) <= RESIDUAL_TOLERANCE * abs(estimate):
            break
        v = _normalised(hv)
    return estimate + shift


def largest_eigenvalue(hvp: HessianVectorProduct, start: Vector) -> float:
    """Largest (algebraic) Hessian eigenvalue by power iteration from `start`."""
    dominant = _power_iteration(hvp, start, 0.0)
    if not math.isfinite(dominant) or dominant >= 0:
        return dominant
    return _power_iteration(hvp, start, dominant)
