"""Unit statistics of a weight layer's output and of the activation it feeds.

A ReLU unit that is inactive on every example of a batch passes no gradient to its weights (dead);
a tanh or sigmoid input deep in the flat tails passes almost none (saturated). Both are read from
phi'(z), computed by autograd on the captured activation input through gradaudit.activations, so
any listed function works without a hand-written derivative.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch

from gradaudit.activations import ACTIVATIONS, RECTIFYING, SATURATING, activation, saturates_only_above_zero
from gradaudit.graph import ordered_inputs

# A derivative below this fraction of the function's peak derivative counts as saturated.
SATURATION_FRACTION = 0.05
# Ops between a weight layer and its activation that keep units aligned element for element.
UNIT_PRESERVING = frozenset({"norm", "dropout", "identity", "scale"})
# Below this variance / mean^2, E[y^2] - mean^2 from float32 reductions has lost its digits.
CANCELLATION_GUARD = 1e-3
# Domain on which the peak of phi' is looked for: wide enough for every bounded function's ramp.
PEAK_SEARCH_HALF_WIDTH = 16.0
PEAK_SEARCH_POINTS = 8193


@dataclass(frozen=True)
class ActivationSite:
    """Where the activation fed by a weight layer reads its input."""

    input_node: str  # node whose output is the activation's input
    fn: str
    attrs: tuple[tuple[str, Any], ...]
    unit_axis: int  # channels for conv, features (last axis) otherwise


def _keeps_units(graph: nx.DiGraph, node: str) -> bool:
    """An op that changes values but not which unit they belong to: a norm, dropout, a constant
    scale, or the separate bias Add an ONNX MatMul is often followed by."""
    data = graph.nodes[node]
    if data["op"] == "add":
        return sum(graph.nodes[p]["op"] != "constant" for p in ordered_inputs(graph, node)) == 1
    return data["op"] in UNIT_PRESERVING


def find_activation(graph: nx.DiGraph, weight_node: str) -> ActivationSite | None:
    """The activation that consumes `weight_node`, directly or through ops that keep its units."""
    node = weight_node
    unit_axis = 1 if graph.nodes[weight_node]["op"] == "conv" else -1
    while True:
        consumers = sorted(graph.successors(node), key=lambda n: graph.nodes[n]["order"])
        for consumer in consumers:
            data = graph.nodes[consumer]
            if data["op"] == "activation" and data["fn"] in ACTIVATIONS:
                attrs = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in data["attrs"].items()))
                return ActivationSite(node, data["fn"], attrs, unit_axis)
        if len(consumers) != 1 or not _keeps_units(graph, consumers[0]):
            return None
        node = consumers[0]


def derivative(fn: str, attrs: tuple[tuple[str, Any], ...], z: torch.Tensor) -> torch.Tensor:
    """phi'(z) elementwise, by autograd on a detached copy of z."""
    leaf = z.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(activation(fn, dict(attrs))(leaf).sum(), leaf)
    return grad


@functools.lru_cache(maxsize=None)
def derivative_peak(fn: str, attrs: tuple[tuple[str, Any], ...]) -> float:
    """max |phi'| over a wide grid: the reference for "saturated"."""
    grid = torch.linspace(-PEAK_SEARCH_HALF_WIDTH, PEAK_SEARCH_HALF_WIDTH, PEAK_SEARCH_POINTS, dtype=torch.float64)
    return float(derivative(fn, attrs, grid).abs().max())


def dead_fraction(slope: torch.Tensor, unit_axis: int) -> float:
    """Fraction of units whose derivative is zero on every element of the batch (one amax over
    the other axes: several times faster than gathering each unit's elements with movedim)."""
    if slope.dim() < 2:
        return float((slope == 0).float().mean())
    unit_axis %= slope.dim()
    others = [d for d in range(slope.dim()) if d != unit_axis]
    largest = slope.abs().amax(dim=others)
    return float((largest == 0).float().mean())


def saturated_fraction(slope: torch.Tensor, peak: float, where: torch.Tensor | None = None) -> float:
    """Fraction of activation inputs whose |phi'| is below SATURATION_FRACTION of its peak
    (only those inputs `where` is true, when given, count as saturated)."""
    flat = slope.abs() < SATURATION_FRACTION * peak
    return float((flat if where is None else flat & where).float().mean())


def activation_stats(site: ActivationSite, z: torch.Tensor) -> tuple[float | None, float | None]:
    """(dead_frac, saturated_frac) of the activation at `site` fed with `z`; None where not applicable."""
    if site.fn not in RECTIFYING and site.fn not in SATURATING:
        return None, None
    slope = derivative(site.fn, site.attrs, z)
    dead = dead_fraction(slope, site.unit_axis) if site.fn in RECTIFYING else None
    saturated = None
    if site.fn in SATURATING:
        peak = max(derivative_peak(site.fn, site.attrs), float(slope.abs().max()))
        saturated = saturated_fraction(slope, peak, z > 0 if saturates_only_above_zero(site.fn, dict(site.attrs))
                                       else None)
    return dead, saturated


def moments(y: torch.Tensor) -> tuple[float, float, bool]:
    """(mean, std, finite) of a captured output.

    Fast path: one sum and one norm, two reads without a temporary (torch.std_mean is an order
    of magnitude slower on CPU). E[y^2] - mean^2 cancels when |mean| >> std, so that case is
    recomputed centred in float64. Finiteness is checked element by element only when the
    moments are not finite, since a reduction may also overflow on finite but huge values.
    """
    y = y.detach()
    count = y.numel()
    if count == 0:
        return 0.0, 0.0, True
    mean = float(y.sum()) / count
    mean_square = l2_norm(y) ** 2 / count
    if not (math.isfinite(mean) and math.isfinite(mean_square)) and not bool(torch.isfinite(y).all()):
        return mean, math.nan, False
    variance = mean_square - mean * mean
    if not math.isfinite(variance) or variance < CANCELLATION_GUARD * mean * mean:
        exact = y.double()
        centre = exact.mean()
        return float(centre), float(torch.linalg.vector_norm(exact - centre)) / math.sqrt(count), True
    return mean, math.sqrt(variance), True


def l2_norm(t: torch.Tensor) -> float:
    """||t||_2, in the tensor's own precision unless that overflows (then again in float64)."""
    t = t.detach()
    norm = float(torch.linalg.vector_norm(t))
    if math.isfinite(norm):
        return norm
    return float(torch.linalg.vector_norm(t, dtype=torch.float64))
