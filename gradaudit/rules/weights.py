"""GA2xx: the weights themselves: initialisation scale, non-finite values, symmetry.

These rules read the ParamStats every loader records and, for the init rule, the static
estimate's second moments; they never look at layer names or init function names, so a weight
set by hand is judged like one set by torch.nn.init.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gradaudit.rules.critical_variance import activation_moments, critical_weight_variance
from gradaudit.rules.rule_registry import Evidence, Hit, RuleContext, rule
from gradaudit.rules.topology import (
    DENSE_OPS,
    consumer,
    data_inputs,
    feeds_sum_or_output,
    gates_sum_or_output,
    longest_chain,
    scale_resets,
    weight_nodes,
    weight_stats,
)

# A layer is mismatched when its gain is off by more than 10^0.1 in RMS (~1.6x in variance):
# LeCun init in front of ReLU (0.15 decades) is flagged, He vs a measured E[phi'^2] is not.
INIT_LAYER_TOLERANCE_DECADES = 0.1


@dataclass(frozen=True)
class InitMismatchEvidence(Evidence):
    """GA201: the compounded mismatch and each layer's numbers (`rescale` is its 1/sqrt(chi))."""

    count: int
    compound_decades: float
    layers: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class NonfiniteWeightsEvidence(Evidence):
    """GA202: one layer's count of non-finite values, per parameter tensor."""

    layer: str
    count: int
    params: dict[str, int]


@dataclass(frozen=True)
class SymmetricWeightsEvidence(Evidence):
    """GA203: the first broken layer, how many, which kinds, and each layer's tensor and numbers."""

    layer: str
    count: int
    kind: str
    layers: dict[str, dict[str, Any]]


def second_moment(ctx: RuleContext, node: str) -> float:
    """Predicted E[x^2] at a node's output; 1 (a unit input) when no estimate exists."""
    estimate = ctx.static.nodes.get(node) if ctx.static else None
    return estimate.q if estimate is not None and math.isfinite(estimate.q) and estimate.q > 0 else 1.0


def derivative_sq(ctx: RuleContext, act: str) -> float:
    """E[phi'^2] of an activation node: the static estimator's backward gain, else quadrature."""
    estimate = ctx.static.nodes.get(act) if ctx.static else None
    if estimate is not None and estimate.known and math.isfinite(estimate.log10_gain):
        return 10.0 ** (2.0 * estimate.log10_gain)
    data = ctx.graph.nodes[act]
    return activation_moments(data["fn"], data["attrs"], second_moment(ctx, data_inputs(ctx.graph, act)[0]))[1]


def init_scale(ctx: RuleContext, node: str) -> dict | None:
    """Gain and matching init of a dense layer feeding an activation; None when not applicable."""
    from gradaudit.activations import ACTIVATIONS  # torch: kept out of the registry's import

    data, graph = ctx.graph.nodes[node], ctx.graph
    act, stats, fan_in = consumer(graph, node), weight_stats(data), data["attrs"].get("fan_in")
    if act is None or graph.nodes[act]["op"] != "activation" or graph.nodes[act]["fn"] not in ACTIVATIONS:
        return None
    if not fan_in or stats is None or stats.nonfinite or stats.rows_identical or not stats.std > 0:
        return None  # broken tensors are GA202 / GA203 findings: rescaling cannot fix them
    inputs = data_inputs(graph, node)
    input_sq = second_moment(ctx, inputs[0]) if inputs else 1.0
    fn, attrs = graph.nodes[act]["fn"], graph.nodes[act]["attrs"]
    chi = fan_in * stats.rms**2 * derivative_sq(ctx, act)
    if not (chi > 0 and math.isfinite(chi)):
        return None  # a layer passing no gradient at all is a dead-unit or non-finite finding
    target_var = critical_weight_variance(fn, attrs, fan_in, input_sq)
    return {"param": stats.name, "activation": fn, "fan_in": fan_in, "weight_var": stats.rms**2,
            "chi": chi, "log10_gain": 0.5 * math.log10(chi), "rescale": 1.0 / math.sqrt(chi),
            "target_var": target_var, "target_std": math.sqrt(target_var)}


@rule("GA201", "init-scale-mismatch", "warning",
      "Weight scale does not match the activation that follows (per-layer gain far from 1).",
      "Initialisation mismatched to the activation in {count} layer(s): {compound_decades:+.1f} decades compounded",
      evidence=InitMismatchEvidence)
def init_mismatch(ctx: RuleContext) -> list[Hit]:
    """What it detects
    Dense and conv layers feeding an activation whose per-layer gain
    chi = fan_in * E[w^2] * E[phi'^2] is off 1 by more than 0.1 decades (RMS), when the
    mismatched layers in series (no normalisation or residual sum between them, where an error
    stops compounding) together compound past the configured decades (error past the fail
    level). E[phi'^2] is taken at the layer's predicted pre-activation scale, so any
    activation is covered. Unlike the flow ratio there is no head in this product, so the
    thresholds apply symmetrically. The evidence gives Var(w), the variance that makes chi = 1
    here (He's 2/fan_in for ReLU, 0.92/fan_in for SELU, 3.8/fan_in for tanh on a unit input,
    near torch's (5/3)^2) and the rescale factor 1/sqrt(chi).

    Why it matters
    chi is the factor each layer applies to the squared gradient; a stack of L layers applies
    chi^L. PyTorch's default Linear init gives chi = 1/6 in front of ReLU: -0.39 decades per layer.

    Example
    Ten Linear(256, 256) + ReLU layers at PyTorch's default init: -3.9 decades compounded.

    Fix
    Re-initialise the listed layers with the target std in the evidence (or multiply their
    weights by `rescale`); normalisation also removes the dependence.

    References
    He et al. 2015; Klambauer et al. 2017 (SELU, LeCun init); Glorot & Bengio 2010;
    Poole et al. 2016 (chi_1); Bingham & Miikkulainen 2023 (AutoInit).
    """
    scales = {}
    for node in weight_nodes(ctx.graph):
        data = ctx.graph.nodes[node]
        if data["op"] in DENSE_OPS and not ctx.layer_ignored("GA201", data["name"]):
            scale = init_scale(ctx, node)
            if scale is not None and abs(scale["log10_gain"]) > INIT_LAYER_TOLERANCE_DECADES:
                scales[node] = scale
    chain = longest_chain(ctx.graph, scale_resets(ctx.graph), set(scales))
    compound = sum(scales[node]["log10_gain"] for node in chain)
    if abs(compound) > ctx.config.init_fail_decades:
        severity = "error"
    elif abs(compound) > ctx.config.init_warn_decades:
        severity = "warning"
    else:
        return []
    if _measurement_contradicts(ctx, compound):
        severity = "info"  # DESIGN.md: where the probe ran, a prediction it contradicts is not an error
    names = [ctx.graph.nodes[node]["name"] for node in chain]
    evidence = InitMismatchEvidence(len(chain), compound, {name: scales[node] for name, node in zip(names, chain)})
    return [Hit(names, evidence, severity)]


def _measurement_contradicts(ctx: RuleContext, compound: float) -> bool:
    """Does the probe measure less than init_warn_decades of gradient flow in the compound's direction?

    A mismatched init compounds in the gradient itself, so the raw first/last gradient ratio is
    what answers it, not the relative update the flow gate grades (that one also moves with a stem
    feeding a norm, which the init has nothing to do with). A saturated sigmoid or tanh stack
    (benchmarks/train_labels.json: stalls) measures 2.2-2.4 decades its way and keeps the finding;
    a timm ConvNeXt whose residuals absorb a small init measures 0.1 and trains."""
    if ctx.probe is None or ctx.probe.nonfinite:
        return False
    measured = ctx.probe.log10_ratio_first_last
    return measured is None or math.copysign(1.0, compound) * measured < ctx.config.init_warn_decades


@rule("GA202", "non-finite-weights", "error",
      "A parameter tensor holds NaN or infinite values.",
      "{count} non-finite value(s) in the parameters of {layer}",
      evidence=NonfiniteWeightsEvidence)
def nonfinite_weights(ctx: RuleContext) -> list[Hit]:
    """What it detects
    NaN or infinite entries in any parameter of a layer (weights, biases, norm scales), as
    counted by the loader.

    Why it matters
    The forward pass is non-finite from that layer on, and so is every gradient: no training
    step can recover it.

    Example
    A checkpoint saved after a diverged step, or a weight initialised by dividing by a zero fan.

    Fix
    Re-initialise the affected tensors (the remedy gives the std), or reload a good checkpoint.

    References
    IEEE 754 propagation of NaN; DESIGN.md.
    """
    hits = []
    for node in ctx.graph.nodes:
        data = ctx.graph.nodes[node]
        bad = {stats.name: stats.nonfinite for stats in data["params"].values() if stats.nonfinite}
        if bad:
            hits.append(Hit([data["name"]], NonfiniteWeightsEvidence(data["name"], sum(bad.values()), bad)))
    return hits


@rule("GA203", "symmetric-weights", "error",
      "A weight tensor is constant or has identical rows: gradients cannot break the symmetry.",
      "{count} layer(s) with {kind} weights, first {layer}: their units compute and learn the same thing",
      evidence=SymmetricWeightsEvidence)
def symmetric_weights(ctx: RuleContext) -> list[Hit]:
    """What it detects
    A weight tensor whose output units all have identical incoming weights (ParamStats
    rows_identical) or whose values are all equal (std 0). An all-zero layer whose output goes
    straight into a residual sum or a model output, or gates a branch that does (adaLN-Zero), is
    not reported: that is deliberate zero-init (SkipInit, ReZero, Fixup, a zero head, DiT's
    modulation), where the layer's own gradient differs per unit.

    Why it matters
    Units with identical weights receive identical gradients, so they stay identical forever:
    the layer has the capacity of a single unit. An all-zero interior layer also passes exactly
    zero gradient to everything before it.

    Example
    nn.init.constant_(layer.weight, 0.01) on a hidden Linear layer.

    Fix
    Re-initialise with a random init at the matching scale (the remedy gives the std).

    References
    Goodfellow, Bengio & Courville 2016, Deep Learning, section 8.4 (breaking symmetry);
    De & Smith 2020 (SkipInit); Zhang et al. 2019 (Fixup).
    """
    broken = {}
    for node in weight_nodes(ctx.graph):
        data = ctx.graph.nodes[node]
        stats = weight_stats(data)
        if data["op"] == "embedding" or stats.nonfinite or not (stats.rows_identical or stats.std == 0):
            continue
        zero = stats.absmax == 0
        if zero and (feeds_sum_or_output(ctx.graph, node) or gates_sum_or_output(ctx.graph, node)):
            continue
        kind = "all-zero" if zero else ("constant" if stats.std == 0 else "identical-row")
        broken[data["name"]] = {"param": stats.name, "kind": kind, "std": stats.std, "mean": stats.mean}
    if not broken:
        return []
    # one finding for the whole model: a zoo graph with 50 constant layers is one problem, not 50
    kinds = sorted({entry["kind"] for entry in broken.values()})
    names = list(broken)
    return [Hit(names, SymmetricWeightsEvidence(names[0], len(names), " or ".join(kinds), broken))]
