"""The `diagnosis` of DESIGN.md as one pure function, shared by the static and dynamic analyses.

Both analyses reduce their result to the same `FlowSummary` and call `diagnose`, so the thresholds
exist once. The band is asymmetric on purpose: the head's own gradient is normally ~10x the first
layer's, so a first/last ratio of -1 is ordinary while +1 already means growth toward the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypeGuard

from gradaudit.i18n import _

EXPLODING_LOG10_RATIO = 2.0
VANISHING_LOG10_RATIO = -3.0
EXPLODING_ABS_SCALE = 1e4  # any weight's grad RMS or the output RMS above this
VANISHING_OUTPUT_RMS = 1e-3
VANISHING_ALL_GRAD_RMS = 1e-5
RECURRENT_EXPLODING_LOG10 = 2.0  # gradient at the first time step / at the last step
RECURRENT_VANISHING_LOG10 = -3.0


@dataclass
class FlowSummary:
    """The numbers the diagnosis reads, in the same units for prediction and measurement."""

    log10_ratio_first_last: float | None
    grad_rms: list[float]  # every weight layer's gradient RMS, forward order
    output_rms: float | None
    nonfinite: bool = False
    recurrent_log10_time_ratio: dict[str, float] = field(default_factory=dict)  # layer -> log10


@dataclass(frozen=True)
class Diagnosis:
    label: str  # "exploding" | "vanishing" | "healthy"
    reasons: tuple[str, ...]


def _finite(x: float | None) -> TypeGuard[float]:
    return x is not None and math.isfinite(x)


def diagnose(flow: FlowSummary) -> Diagnosis:
    """Apply DESIGN.md's definition; every reason that fires is kept for the report."""
    exploding: list[str] = []
    vanishing: list[str] = []
    if flow.nonfinite or any(not math.isfinite(g) for g in flow.grad_rms):
        exploding.append(_("non-finite gradients or activations"))
    ratio = flow.log10_ratio_first_last
    if _finite(ratio) and ratio > EXPLODING_LOG10_RATIO:
        exploding.append(_("first/last gradient ratio 10^{ratio:.1f} > 10^{limit:g}").format(
            ratio=ratio, limit=EXPLODING_LOG10_RATIO))
    if _finite(ratio) and ratio < VANISHING_LOG10_RATIO:
        vanishing.append(_("first/last gradient ratio 10^{ratio:.1f} < 10^{limit:g}").format(
            ratio=ratio, limit=VANISHING_LOG10_RATIO))
    elif len(flow.grad_rms) > 1 and flow.grad_rms[0] == 0 and flow.grad_rms[-1] > 0:
        vanishing.append(_("the first weight layer's gradient underflows to 0 while the last layer's does not"))
    finite_grads = [g for g in flow.grad_rms if math.isfinite(g)]
    if finite_grads and max(finite_grads) > EXPLODING_ABS_SCALE:
        exploding.append(_("a weight gradient RMS of {value:.3g} > {limit:g}").format(
            value=max(finite_grads), limit=EXPLODING_ABS_SCALE))
    out = flow.output_rms
    if _finite(out) and out > EXPLODING_ABS_SCALE:
        exploding.append(_("output RMS {value:.3g} > {limit:g}").format(value=out, limit=EXPLODING_ABS_SCALE))
    if _finite(out) and out < VANISHING_OUTPUT_RMS:
        vanishing.append(_("output RMS {value:.3g} < {limit:g} (signal collapse)").format(
            value=out, limit=VANISHING_OUTPUT_RMS))
    if finite_grads and max(finite_grads) < VANISHING_ALL_GRAD_RMS:
        vanishing.append(_("every weight gradient RMS < {limit:g} (signal collapse)").format(
            limit=VANISHING_ALL_GRAD_RMS))
    for layer, r in flow.recurrent_log10_time_ratio.items():
        if not _finite(r):
            continue
        through_time = _("{layer}: gradient at the first time step 10^{ratio:.1f} times the last step's")
        if r > RECURRENT_EXPLODING_LOG10:
            exploding.append(through_time.format(layer=layer, ratio=r))
        elif r < RECURRENT_VANISHING_LOG10:
            vanishing.append(through_time.format(layer=layer, ratio=r))
    if exploding:
        return Diagnosis("exploding", tuple(exploding))
    if vanishing:
        return Diagnosis("vanishing", tuple(vanishing))
    return Diagnosis("healthy", ())


def log10_update_ratio(
    ratio: float | None,
    weight_rms: tuple[float, float],
    positions: tuple[int, int],
    normalised: tuple[tuple[float, float] | None, tuple[float, float] | None] = (None, None),
) -> float | None:
    """The first/last ratio of relative updates per position: the gate's scale-free measure.

    `ratio` is log10 of the first weight layer's gradient RMS over the last's; `weight_rms` and
    `positions` are (first, last): each weight's RMS and how many positions per example it is
    applied at (graph.weight_positions). One learning rate moves a layer by lr |g|/|w| of its own
    size, so dividing by |w| stops a 27-input stem's weights being compared with a 1280-input
    head's; a convolution's gradient sums its positions' contributions, ~sqrt(positions) of one,
    so dividing by that stops a 16x16 stem being compared with a 1x1 head. None when undefined
    (a zero weight, a non-finite ratio).

    `normalised` holds, for an end whose output goes only into a normalisation
    (graph.normalisation_eps), that output's RMS sigma and the norm's eps. Such a weight's scale
    is free: the loss does not depend on it, its gradient is proportional to 1/|w| and its
    relative update to 1/|w|^2, and a step too large for it grows |w| and so lowers its own rate.
    It is read at the scale where the norm's input has unit RMS and the norm divides by one: its
    relative update times sigma sqrt(sigma^2 + eps) (sigma^2 where eps is negligible; the norm
    divides by sqrt(sigma^2 + eps)). What remains is the gradient reaching the norm's output,
    which is what depth compounds."""
    weights = log10_ratio(*weight_rms)
    if ratio is None or not math.isfinite(ratio) or weights is None:
        return None
    first, last = (_log10_rescaling(end) for end in normalised)
    return ratio - weights - 0.5 * math.log10(positions[0] / positions[1]) + first - last


def _log10_rescaling(end: tuple[float, float] | None) -> float:
    """log10 of sigma sqrt(sigma^2 + eps) for a normalised end (0 when not, or undefined)."""
    if end is None or not math.isfinite(end[0]) or end[0] <= 0:
        return 0.0
    sigma, eps = end
    return math.log10(sigma) + 0.5 * math.log10(sigma * sigma + max(eps, 0.0))


def log10_ratio(first: float, last: float) -> float | None:
    """log10(first / last) of two gradient RMS values; None when undefined (zero or non-finite)."""
    if not (math.isfinite(first) and math.isfinite(last)) or first <= 0 or last <= 0:
        return None
    return math.log10(first) - math.log10(last)
