"""The amounts of the remedies, computed from a finding's evidence and the analyses' numbers.

The numbers a recommendation states come from here (init stds at the critical variance, the
fraction to prune by magnitude, the per-layer learning-rate multipliers, the clip threshold, the
parameters a factor applies to) or, where one rule's evidence gives them directly (a rescale
factor per layer), from that rule's answer in gradaudit.remedies.answers. The remedy kinds
(gradaudit.remedies.kinds) only phrase them.
"""

from __future__ import annotations

import math
import statistics
from typing import NamedTuple

from gradaudit.diagnosis import EXPLODING_ABS_SCALE
from gradaudit.graph import ParamStats, WeightLayer, weight_layers
from gradaudit.rules.critical_variance import critical_weight_variance
from gradaudit.rules.planned_run import TARGET_UPDATE_RATIO, planned_lr, stability_limit, update_ratio
from gradaudit.rules.rule_registry import RuleContext
from gradaudit.rules.topology import DENSE_OPS, consumer, data_inputs, node_by_name, weight_stats
from gradaudit.rules.weights import second_moment

PRUNE_SEARCH_MAX = 10.0  # magnitude threshold search range, in weight standard deviations
PRUNE_BISECTION_STEPS = 60  # 10 / 2^60: exact to float precision
# Layer update ratios spread over more than two decades: one global SGD rate is wrong for most
# layers (GA601's warning band is a decade either side of 1e-3, so two decades cannot all fit).
PER_LAYER_SPREAD_DECADES = 2.0
# The recommended peak stays at half the stability limit: the limit is a local estimate and
# training first sharpens toward it (Cohen et al. 2021).
STABILITY_MARGIN = 0.5


class Target(NamedTuple):
    """One parameter of one layer and the number to apply to it."""

    layer: str  # display name
    param: str  # qualified parameter name in the torch module
    value: float


def layer_param(ctx: RuleContext, layer: str, role: str | None = None) -> ParamStats | None:
    """The layer's parameter of this role, or its first weight tensor when role is None."""
    node = node_by_name(ctx.graph).get(layer)
    if node is None:
        return None
    data = ctx.graph.nodes[node]
    return data["params"].get(role) if role else weight_stats(data)


def targets(ctx: RuleContext, factors: dict[str, float | None], role: str | None = None) -> list[Target]:
    """The layers' parameters (of this role; the first weight tensor when None) with their factor,
    where the layer has one and the factor is a positive finite number."""
    found = []
    for layer, value in factors.items():
        stats = layer_param(ctx, layer, role)
        if stats is not None and value is not None and math.isfinite(value) and value > 0:
            found.append(Target(layer, stats.name, value))
    return found


def dense_layer(ctx: RuleContext, layer: str) -> bool:
    """A linear or conv layer: the kind whose weights can be rescaled, pruned or wrapped with a norm."""
    node = node_by_name(ctx.graph).get(layer)
    return node is not None and ctx.graph.nodes[node]["op"] in DENSE_OPS


def preactivation_shifts(layers: dict[str, dict], ctx: RuleContext) -> dict[str, float]:
    """Minus each layer's measured pre-activation mean (its own output, before the activation);
    `layers` maps a layer to its probe numbers (act_mean).

    For dead units (GA401) this is what revives them: the activation's output is all zeros, its
    mean says nothing, while the pre-activation mean says how far below the kink the units sit.
    A layer that feeds a norm gets none: the norm re-centres whatever the bias.
    """
    shifts = {}
    for layer, numbers in layers.items():
        mean = numbers.get("act_mean")
        node = node_by_name(ctx.graph).get(layer)
        after = consumer(ctx.graph, node) if node is not None else None
        if mean is not None and math.isfinite(mean) and (after is None or ctx.graph.nodes[after]["op"] != "norm"):
            shifts[layer] = -mean
    return shifts


def critical_std(ctx: RuleContext, layer: str, activation: str | None = None, fn: str | None = None) -> float | None:
    """Init std at which the layer's gain in front of its activation is 1 (1/sqrt(fan_in) if none);
    `activation` (a LayerGraph node) names the activation when it is not the layer's consumer
    (one behind a norm that is removed), and `fn` the function it will have (one that is swapped)."""
    node = node_by_name(ctx.graph).get(layer)
    stats = weight_stats(ctx.graph.nodes[node]) if node is not None else None
    if stats is None:
        return None
    data = ctx.graph.nodes[node]
    fan_in = data["attrs"].get("fan_in") or math.prod(stats.shape[1:])
    act = activation or consumer(ctx.graph, node)
    act_data = ctx.graph.nodes[act] if act is not None and ctx.graph.nodes[act]["op"] == "activation" else None
    inputs = data_inputs(ctx.graph, node)
    input_sq = second_moment(ctx, inputs[0]) if inputs else 1.0
    current, attrs = (act_data["fn"], act_data["attrs"]) if act_data else (None, None)
    fn, attrs = (fn, {}) if fn is not None else (current, attrs)
    return math.sqrt(critical_weight_variance(fn, attrs, float(fan_in), input_sq))


def init_targets(layers: list[str], ctx: RuleContext) -> list[Target]:
    """Fresh init stds for the weight tensors of the layers."""
    found = []
    for layer in layers:
        stats, std = layer_param(ctx, layer), critical_std(ctx, layer)
        if stats is not None and std is not None:
            found.append(Target(layer, stats.name, std))
    return found


def gate_bias_target(layer: str, cell: str | None, ctx: RuleContext, bias: float) -> Target | None:
    """The recurrent layer's bias tensor holding its memory gate (LSTM forget, GRU update)."""
    if cell not in GATE_ORDER:
        return None
    stats = layer_param(ctx, layer, "bias_hh") or layer_param(ctx, layer, "bias_ih")
    return Target(layer, stats.name, bias) if stats is not None else None


# Gate stacking of the bias: torch's bias_hh is i,f,g,o (LSTM) / r,z,n (GRU); ONNX's B is
# [Wb, Rb], each i,o,f,c (LSTM) / z,r,h (GRU), and the loader files all of B as bias_hh.
GATE_ORDER = {"lstm": {"torch": "ifgo", "onnx": "iofc"}, "gru": {"torch": "rzn", "onnx": "zrh"}}
MEMORY_GATE = {"lstm": "f", "gru": "z"}


def memory_gate_slice(fmt: str, cell: str, hidden: int) -> tuple[int, int]:
    """[start, stop) of the memory gate's bias along the bias tensor's last axis."""
    order = GATE_ORDER[cell]["onnx" if fmt == "onnx" else "torch"]
    start = (len(order) if fmt == "onnx" else 0) + order.index(MEMORY_GATE[cell])  # Rb half for ONNX
    return start * hidden, (start + 1) * hidden


def _energy_kept(threshold: float) -> float:
    """Share of E[w^2] in |w| > threshold (in stds) for Gaussian weights: 2[t phi(t) + 1 - Phi(t)]."""
    density = math.exp(-0.5 * threshold**2) / math.sqrt(2.0 * math.pi)
    return 2.0 * (threshold * density + 0.5 * math.erfc(threshold / math.sqrt(2.0)))


def prune_fraction(energy_keep: float) -> float:
    """Fraction of Gaussian weights to zero, smallest magnitudes first, keeping `energy_keep` of E[w^2]."""
    lo, hi = 0.0, PRUNE_SEARCH_MAX
    for _ in range(PRUNE_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _energy_kept(mid) > energy_keep else (lo, mid)
    return math.erf(0.5 * (lo + hi) / math.sqrt(2.0))


def lr_multipliers(ctx: RuleContext) -> dict[str, float]:
    """Per-weight LR multipliers equalising |grad|/|w| across layers (LARS trust ratio, median = 1).

    Measured gradient RMS when the probe ran, else the static prediction (same default loss).
    """
    if ctx.probe is not None:
        pairs = {layer.param: (layer.weight_rms, layer.grad_rms) for layer in ctx.probe.layers}
    elif ctx.static is not None:
        weights = {wl.param: stats.rms for wl, stats in _weight_stats(ctx)}
        pairs = {w.param: (weights.get(w.param, 0.0), 10.0**w.log10_grad_rms) for w in ctx.static.weights}
    else:
        return {}
    ratios = {param: w / g for param, (w, g) in pairs.items() if g > 0 and w > 0 and math.isfinite(w / g)}
    if not ratios:
        return {}
    middle = statistics.median(ratios.values())
    return {param: ratio / middle for param, ratio in ratios.items()}


def _weight_stats(ctx: RuleContext) -> list[tuple[WeightLayer, ParamStats]]:
    """Every weight layer with the statistics of its tensor."""
    return [(wl, ctx.graph.nodes[wl.node]["params"][wl.role]) for wl in weight_layers(ctx.graph)]


def clip_threshold(ctx: RuleContext) -> float | None:
    """The measured global gradient norm at init: Pascanu et al. clip at ~1x (0.5-10x all work).

    None when that norm is itself exploded (above the diagnosis' absolute scale): clipping at an
    exploded norm clips nothing, and the honest fix is the rescale.
    """
    norm = ctx.probe.grad_norm if ctx.probe else None
    if norm is None or not math.isfinite(norm) or not 0 < norm <= EXPLODING_ABS_SCALE:
        return None
    return norm


class PlannedLr(NamedTuple):
    """The learning-rate change for a planned run, with the numbers behind it."""

    lr: float  # the planned learning rate
    optimizer: str
    low: float  # smallest and largest update/weight ratio over the weight layers at `lr`
    high: float
    limit: float | None  # largest stable step (2/sharpness, SGD family), when measured
    new_lr: float  # recommended peak learning rate
    capped: bool  # new_lr was lowered to STABILITY_MARGIN * limit
    multipliers: dict[str, float]  # per-layer LR multipliers (trust ratio) when the layers spread


def planned_lr_change(ctx: RuleContext) -> PlannedLr | None:
    """The peak LR that puts the median layer's update at 1e-3 of its weight, kept below half the
    stability limit; per-layer multipliers when SGD updates spread over decades."""
    plan = planned_lr(ctx)
    if plan is None or ctx.probe is None:
        return None
    lr, optimizer = plan
    ratios = [r for layer in ctx.probe.layers if (r := update_ratio(layer, lr, optimizer)) and r > 0]
    if not ratios:
        return None
    new_lr = lr * TARGET_UPDATE_RATIO / statistics.median(ratios)
    sharpness = ctx.probe.sharpness
    limit = stability_limit(sharpness, optimizer) if sharpness is not None else None
    capped = limit is not None and new_lr > STABILITY_MARGIN * limit
    new_lr = STABILITY_MARGIN * limit if capped else new_lr
    spread = math.log10(max(ratios) / min(ratios))
    per_layer = optimizer in ("sgd", "momentum") and spread > PER_LAYER_SPREAD_DECADES
    multipliers = lr_multipliers(ctx) if per_layer else {}
    return PlannedLr(lr, optimizer, min(ratios), max(ratios), limit, new_lr, capped, multipliers)
