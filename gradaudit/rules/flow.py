"""GA1xx: gradient flow, predicted (static) and measured (probe), across layers and through time.

The flow rules grade the first/last ratio of relative update sizes |g|/|w| (`gate_ratio`; the raw
gradient RMS ratio of the diagnosis where a weight is zero): what one learning rate does to the
first layer against the last, without comparing a small-fan-in stem's weights with a wide head's.
The config's decades grade it, and the scale-only part of the diagnosis (output or gradient RMS
far from unit, which a residual stack can reach with a flat ratio) is re-derived with the same
`diagnose` so no threshold is restated here. Where the probe ran, a prediction it contradicts is a
note (info): the gate follows the measurement (DESIGN.md). "Where" is the set of layers carrying most
of the gain: per-layer contributions (backward gains for a ratio, forward RMS growth for a runaway
scale), kept while at least CONCENTRATION_SHARE of the largest one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from gradaudit.diagnosis import Diagnosis, FlowSummary, diagnose
from gradaudit.graph import flow_ends, forward_order, outputs_zero_by_design
from gradaudit.i18n import _
from gradaudit.results import ProbeResult, Severity, StaticResult
from gradaudit.rules.rule_registry import Evidence, Hit, RuleContext, rule
from gradaudit.rules.topology import data_inputs, node_by_name, weight_stats

HEAD_OFFSET_DECADES = 1.0  # the head's gradient is normally ~10x the first layer's (DESIGN.md)
CONCENTRATION_SHARE = 0.5  # a layer is "where" when it carries half the largest contribution
DISAGREEMENT_DECADES = 1.0  # static vs measured ratios further apart than this disagree (brief)
SIGN = {"exploding": 1.0, "vanishing": -1.0}


@dataclass(frozen=True)
class FlowEvidence(Evidence):
    """GA101-GA104: the graded ratios and each weight layer's share of the gain (log10)."""

    log10_ratio: float | None  # first/last gradient RMS ratio
    log10_update_ratio: float | None  # first/last relative update ratio, the one graded
    diagnosis: str
    reason: str
    scale_reasons: list[str]
    gain_kind: str  # "backward" (the ratio) or "forward" (a runaway absolute scale)
    layer_log10_gains: dict[str, float]


@dataclass(frozen=True)
class NonfiniteFlowEvidence(Evidence):
    """GA105: the first layer whose gradient (probe) or prediction (static) is not finite."""

    first_layer: str
    source: str


@dataclass(frozen=True)
class ThroughTimeEvidence(Evidence):
    """GA107/GA108: one recurrent layer's first/last time-step gradient ratio and its cell."""

    log10_ratio: float
    seq_len: int
    log10_per_step: float
    cell: str | None
    source: str


def beyond(ratio: float | None, decades: float, direction: str) -> bool:
    """Is the ratio past `decades` on this side (shifted by the head offset when vanishing)?"""
    if ratio is None or math.isnan(ratio):
        return False
    return ratio > decades if direction == "exploding" else ratio < -(decades + HEAD_OFFSET_DECADES)


def flow_severity(ratio: float | None, scale: Diagnosis, direction: str, warn: float, fail: float) -> str | None:
    """error past `fail` or when the scale-only diagnosis says so; warning past `warn`."""
    if beyond(ratio, fail, direction) or scale.label == direction:
        return "error"
    return "warning" if beyond(ratio, warn, direction) else None


def concentration(contributions: dict[str, float], direction: str) -> list[str]:
    """Layers whose contribution in this direction is at least CONCENTRATION_SHARE of the top one."""
    signed = {name: SIGN[direction] * value for name, value in contributions.items() if math.isfinite(value)}
    top = max(signed.values(), default=0.0)
    return [name for name, value in signed.items() if top > 0 and value >= CONCENTRATION_SHARE * top]


def _forward_growth(ctx: RuleContext, node: str) -> float:
    """0.5 log10 of a node's output second moment over its largest input's (RMS decades)."""
    q_in = [ctx.static.nodes[p].q for p in data_inputs(ctx.graph, node) if p in ctx.static.nodes]
    q_out, q_ref = ctx.static.nodes[node].q, max(q_in, default=0.0)
    return 0.5 * (math.log10(q_out) - math.log10(q_ref)) if q_out > 0 and q_ref > 0 else 0.0


def static_contributions(ctx: RuleContext, forward: bool) -> dict[str, float]:
    """log10 gain per weight layer: its node's plus the ops after it, up to the next weight layer.

    Backward gains locate a growing first/last ratio; forward growth of the RMS locates an
    absolute scale running away (or collapsing) with a flat ratio.
    """
    graph, gains, current = ctx.graph, {}, None
    for node in forward_order(graph):
        if weight_stats(graph.nodes[node]) is not None:
            current = graph.nodes[node]["name"]
            gains.setdefault(current, 0.0)
        estimate = ctx.static.nodes.get(node)
        if current is None or estimate is None or not estimate.known:
            continue
        gain = _forward_growth(ctx, node) if forward else estimate.log10_gain
        gains[current] += gain if math.isfinite(gain) else 0.0
    return gains


def measured_contributions(ctx: RuleContext, forward: bool) -> dict[str, float]:
    """log10 step of grad RMS (backward) or output std (forward) between consecutive weight layers.

    Credited to the later layer; a forward step of the first layer is taken from the input's std.
    """
    value = (lambda measured: measured.act_std) if forward else (lambda measured: measured.grad_rms)
    layers = [(measured.layer, value(measured)) for measured in ctx.probe.layers if _positive(value(measured))]
    if forward and _positive(ctx.probe.input_std) and layers:
        layers.insert(0, ("", ctx.probe.input_std))
    sign = 1.0 if forward else -1.0
    return {later: sign * (math.log10(v_later) - math.log10(v_earlier))
            for (_, v_earlier), (later, v_later) in zip(layers, layers[1:])}


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def gate_ratio(result: StaticResult | ProbeResult) -> float | None:
    """The ratio the gate grades: relative updates where defined, else the raw gradient ratio."""
    update = result.log10_update_ratio_first_last
    return update if update is not None else result.log10_ratio_first_last


def _flow_hit(direction: str, ratio: float | None, scale: Diagnosis, warn: float, fail: float,
              contributions: Callable[[RuleContext, bool], dict[str, float]], ctx: RuleContext, label: str,
              raw_ratio: float | None) -> list[Hit]:
    severity = flow_severity(ratio, scale, direction, warn, fail)
    if severity is None:
        return []
    if label in SIGN and label != direction:
        # the diagnosis already names the other direction (DESIGN.md ranks exploding first):
        # this side is reported, but as a warning, so the report never asserts both as errors
        severity = "warning"
    by_ratio = beyond(ratio, warn, direction)
    reasons = [_ratio_text(ratio)] if by_ratio else []
    reasons += [r for r in scale.reasons if scale.label == direction]
    gains = contributions(ctx, not by_ratio)
    evidence = FlowEvidence(raw_ratio, ratio, label, "; ".join(reasons), list(scale.reasons),
                            "backward" if by_ratio else "forward", gains)
    return [Hit(concentration(gains, direction) or list(gains), evidence, severity)]


def _ratio_text(ratio: float) -> str:
    if math.isinf(ratio):
        return _("the first layer's gradient underflows to 0 while the last layer's does not")
    return _("first/last relative update ratio (|g|/|w|) 10^{ratio:+.1f}").format(ratio=ratio)


def _static_scale(ctx: RuleContext) -> Diagnosis:
    grads = [
        10.0**w.log10_grad_rms for w in flow_ends(ctx.graph, ctx.static.weights) if math.isfinite(w.log10_grad_rms)
    ]
    return diagnose(FlowSummary(None, grads, _judged_output(ctx, ctx.static.output_rms)))


def _measured_grads(ctx: RuleContext) -> list[float]:
    """The gradients of the layers a gradient reaches at initialisation (graph.flow_ends): one
    behind a zero-initialised layer measures exactly 0 by design, not by underflow."""
    return [layer.grad_rms for layer in flow_ends(ctx.graph, ctx.probe.layers)]


def _measured_scale(ctx: RuleContext) -> Diagnosis:
    return diagnose(FlowSummary(None, _measured_grads(ctx), _judged_output(ctx, ctx.probe.output_rms)))


def _judged_output(ctx: RuleContext, output_rms: float | None) -> float | None:
    """The output RMS the scale checks read: none where a zero-initialised layer makes every output
    (graph.outputs_zero_by_design)."""
    return None if outputs_zero_by_design(ctx.graph) else output_rms


def _predicted(ctx: RuleContext, direction: str) -> list[Hit]:
    if ctx.static is None or static_nonfinite_node(ctx) is not None:
        return []
    cfg = ctx.config
    hits = _flow_hit(direction, gate_ratio(ctx.static), _static_scale(ctx),
                     cfg.predicted_warn_decades, cfg.predicted_fail_decades,
                     static_contributions, ctx, ctx.static.diagnosis.label, ctx.static.log10_ratio_first_last)
    if ctx.probe is not None and not ctx.probe.nonfinite:
        # the gate follows the measurement: a prediction is at most as severe as what the probe
        # measured in its direction, and a note where the probe contradicts it
        measured = max((Severity.rank(h.severity) for h in measured_flow(ctx, direction)), default=Severity.INFO)
        for hit in hits:
            hit.severity = min(hit.severity, Severity(measured).name.lower(), key=Severity.rank)
    return hits


def _measured_ratio(ctx: RuleContext) -> float | None:
    """The probe's ratio; -inf when the first layer's gradient underflowed to 0 and the last's did not."""
    grads = _measured_grads(ctx)
    if ctx.probe.log10_ratio_first_last is None and len(grads) > 1 and grads[0] == 0 and grads[-1] > 0:
        return -math.inf
    return ctx.probe.log10_ratio_first_last


def measured_flow(ctx: RuleContext, direction: str) -> list[Hit]:
    if ctx.probe is None or ctx.probe.nonfinite:
        return []
    cfg = ctx.config
    update = ctx.probe.log10_update_ratio_first_last
    return _flow_hit(direction, _measured_ratio(ctx) if update is None else update, _measured_scale(ctx),
                     cfg.measured_warn_decades, cfg.measured_fail_decades,
                     measured_contributions, ctx, ctx.probe.diagnosis.label, ctx.probe.log10_ratio_first_last)


@rule("GA101", "predicted-exploding-gradients", "error",
      "The static estimate predicts gradients growing toward the input.",
      "Predicted gradient flow explodes: {reason}",
      evidence=FlowEvidence)
def predicted_exploding(ctx: RuleContext) -> list[Hit]:
    """What it detects
    The signal-propagation estimate puts the first weight layer's relative update per position
    (gradient RMS / weight RMS / sqrt(positions)) above the last's by more than the configured
    decades, or predicts an absolute scale far above unit (output or a weight gradient RMS above
    10^4). The finding names the layers where the gain concentrates. Where the probe ran, it is
    at most as severe as the measurement (GA103), and a note where the probe contradicts it.

    Why it matters
    A gradient that grows geometrically toward the input makes the early layers take steps far
    larger than the late ones: training diverges or needs a learning rate so small that the late
    layers never move.

    Example
    Fifty Linear+tanh layers initialised with std 2/sqrt(fan_in) (sigma_w^2 = 4): mean field
    predicts +6.4 decades between the first and the last layer.

    Fix
    Rescale (re-initialise) the listed layers so each layer's gain is 1, insert normalisation, or
    prune the largest-gain layers; clip gradients as a safety net.

    References
    Poole et al. 2016, Exponential expressivity in deep neural networks through transient chaos;
    Schoenholz et al. 2017, Deep information propagation.
    """
    return _predicted(ctx, "exploding")


@rule("GA102", "predicted-vanishing-gradients", "error",
      "The static estimate predicts gradients shrinking toward the input.",
      "Predicted gradient flow vanishes: {reason}",
      evidence=FlowEvidence)
def predicted_vanishing(ctx: RuleContext) -> list[Hit]:
    """What it detects
    The signal-propagation estimate puts the first weight layer's relative update per position
    below the last's by more than the configured decades (shifted by one for the head), or
    predicts signal collapse (output RMS below 10^-3, every weight gradient below 10^-5). Where
    the probe ran, it is at most as severe as the measurement (GA104).

    Why it matters
    The early layers receive almost no gradient and stay at their random initialisation; a
    uniformly mis-scaled stack also shrinks its activations until float precision is lost.

    Example
    Fifty Linear+ReLU layers with PyTorch's default init (Var(w) = 1/(3 fan_in), gain 1/6 per
    layer): about -38 decades.

    Fix
    Re-initialise the listed layers to the critical scale (He for ReLU, ...), insert
    normalisation, or give the early layers a larger learning rate.

    References
    He et al. 2015, Delving deep into rectifiers; Glorot & Bengio 2010; THEORY.md.
    """
    return _predicted(ctx, "vanishing")


@rule("GA103", "measured-exploding-gradients", "error",
      "Real backward passes show gradients growing toward the input.",
      "Measured gradient flow explodes: {reason}",
      evidence=FlowEvidence)
def measured_exploding(ctx: RuleContext) -> list[Hit]:
    """What it detects
    The probe's first/last ratio of relative updates per position (gradient RMS / weight RMS /
    sqrt(positions), README "What the gate measures") exceeds the configured decades, or a
    weight's gradient RMS or the output RMS exceeds 10^4 (non-finite values are GA105).

    Why it matters
    Measured on real forward and backward passes, this is the exploding gradient itself: the
    first optimizer steps will throw the early layers far from their initialisation.

    Example
    A 30-block residual MLP without normalisation: the output RMS grows as 2^(L/2).

    Fix
    Rescale or normalise the listed layers; clip the global gradient norm at the measured norm;
    lower the learning rate and warm it up.

    References
    Pascanu et al. 2013, On the difficulty of training recurrent neural networks; DESIGN.md.
    """
    return measured_flow(ctx, "exploding")


@rule("GA104", "measured-vanishing-gradients", "error",
      "Real backward passes show gradients shrinking toward the input.",
      "Measured gradient flow vanishes: {reason}",
      evidence=FlowEvidence)
def measured_vanishing(ctx: RuleContext) -> list[Hit]:
    """What it detects
    The probe's first/last ratio of relative updates per position is below the configured
    decades (shifted by one for the head), or the signal collapses (output RMS below 10^-3,
    every gradient below 10^-5).

    Why it matters
    The early layers will not learn: their updates are orders of magnitude smaller than the
    late layers' under any single learning rate.

    Example
    A 20-layer sigmoid MLP with Xavier init: the first layer's gradient is 10^-6 of the last's.

    Fix
    Re-initialise the listed layers at the critical scale, insert normalisation, or scale the
    learning rate per layer (LARS-style trust ratio).

    References
    Hochreiter 1991; Glorot & Bengio 2010; You et al. 2017 (LARS).
    """
    return measured_flow(ctx, "vanishing")


def static_nonfinite_node(ctx: RuleContext) -> str | None:
    """The first node in forward order whose predicted moments are not finite."""
    for node in forward_order(ctx.graph):
        estimate = ctx.static.nodes.get(node) if ctx.static else None
        if estimate is not None and not all(math.isfinite(v) for v in (estimate.q, estimate.grad_sq)):
            return node
    return None


@rule("GA105", "non-finite-gradients", "error",
      "Gradients or activations become NaN or infinite.",
      "Non-finite gradients or activations, first at {first_layer}",
      evidence=NonfiniteFlowEvidence)
def nonfinite_flow(ctx: RuleContext) -> list[Hit]:
    """What it detects
    A NaN or infinity in the activations or gradients of the probe's passes (or, without a
    probe, in the static estimate's moments), naming the first layer in forward order where it
    appears.

    Why it matters
    One non-finite value poisons every parameter on the first optimizer step; the first
    offending layer is where the overflow (or a 0/0, log 0, sqrt of a negative) starts.

    Example
    A deep stack with weights of std 1: activations grow by sqrt(fan_in) per layer and overflow
    float32 after a few dozen layers.

    Fix
    Re-initialise the offending layer and those before it at the critical scale; normalise;
    clip gradients.

    References
    Micikevicius et al. 2018 (overflow in mixed precision); DESIGN.md.
    """
    if ctx.probe is not None and ctx.probe.nonfinite:
        first = ctx.probe.first_nonfinite
        return [Hit([first] if first else [], NonfiniteFlowEvidence(first or "an unknown layer", "probe"))]
    if ctx.probe is None and ctx.static is not None:
        node = static_nonfinite_node(ctx)
        if node is not None:
            name = ctx.graph.nodes[node]["name"]
            return [Hit([name], NonfiniteFlowEvidence(name, "static"))]
    return []


@rule("GA106", "static-dynamic-disagreement", "info",
      "The static prediction and the measurement disagree.",
      "Static and measured gradient flow disagree: predicted {static_diagnosis} "
      "({static_why}), measured {measured_diagnosis} ({measured_why})")
def disagreement(ctx: RuleContext) -> list[Hit]:
    """What it detects
    The static estimate and the probe reach different diagnoses, or their first/last ratios
    differ by more than one decade.

    Why it matters
    One of the two is wrong about this model: an op the estimator models poorly (finite width,
    data-dependent routing, unusual inputs) or a probe batch unlike real data. The report's
    diagnosis and the gate follow the measurement, so this is a note on the estimator (info); the
    gap says how far to trust the prediction elsewhere (a `--static-only` run of a similar model).

    Example
    GELU + He at width 256: predicted -11.1 decades over 50 layers, measured -6.5 +- 3.6.

    Fix
    Prefer the measurement; check the probe's input distribution and batch size, and look for
    unknown or approximated ops (GA501).

    References
    Hanin 2018 (finite-width fluctuations); DESIGN.md.
    """
    if ctx.static is None or ctx.probe is None:
        return []
    predicted, measured = ctx.static.log10_ratio_first_last, ctx.probe.log10_ratio_first_last
    labels_differ = ctx.static.diagnosis.label != ctx.probe.diagnosis.label
    gap = abs(predicted - measured) if predicted is not None and measured is not None else None
    if not labels_differ and (gap is None or not gap > DISAGREEMENT_DECADES):
        return []
    return [Hit([], {
        "static_diagnosis": ctx.static.diagnosis.label, "measured_diagnosis": ctx.probe.diagnosis.label,
        "static_log10_ratio": _decades(predicted), "measured_log10_ratio": _decades(measured),
        "static_why": _why(ctx.static.diagnosis, predicted, labels_differ),
        "measured_why": _why(ctx.probe.diagnosis, measured, labels_differ),
        "gap_decades": gap,
    })]


def _why(diagnosis: Diagnosis, ratio: float | None, labels_differ: bool) -> str:
    """What a side's label rests on: its reasons when the labels differ (a recurrent layer's
    reach through time can decide it while the first/last ratios agree), else its ratio."""
    if labels_differ and diagnosis.reasons:
        return "; ".join(diagnosis.reasons)
    return _("first/last {ratio}").format(ratio=_decades(ratio))


def _decades(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"10^{value:+.1f}"


def _through_time(ctx: RuleContext, direction: str) -> list[Hit]:
    """Hits for recurrent layers whose first/last time-step gradient ratio is past the thresholds."""
    cfg = ctx.config
    if ctx.probe is not None and ctx.probe.recurrent_log10_time_ratio:
        source, ratios = "probe", ctx.probe.recurrent_log10_time_ratio
    elif ctx.static is not None:
        source, ratios = "static", ctx.static.recurrent_log10_time_ratio
    else:
        return []
    warn, fail = cfg.recurrent_warn_decades, cfg.recurrent_fail_decades
    if direction == "vanishing":  # stated without the head offset `beyond` adds (RuleConfig)
        fail = cfg.recurrent_vanishing_fail_decades - HEAD_OFFSET_DECADES
    names, hits = node_by_name(ctx.graph), []
    for key, ratio in ratios.items():
        name = ctx.graph.nodes[key]["name"] if key in ctx.graph else key
        if beyond(ratio, fail, direction):
            severity = "error"
        elif beyond(ratio, warn, direction):
            severity = "warning"
        else:
            continue
        data = ctx.graph.nodes[names[name]] if name in names else {"attrs": {}, "fn": None}
        steps = max(int(data["attrs"].get("seq_len") or 2) - 1, 1)
        hits.append(Hit([name], ThroughTimeEvidence(ratio, steps + 1, ratio / steps, data["fn"], source), severity))
    return hits


@rule("GA107", "recurrent-exploding-through-time", "error",
      "A recurrent layer's gradient grows from the last time step to the first.",
      "Gradient through time explodes: the first step gets 10^{log10_ratio:.1f} times the last step's",
      evidence=ThroughTimeEvidence)
def recurrent_exploding(ctx: RuleContext) -> list[Hit]:
    """What it detects
    The gradient reaching a recurrent layer's first time step is more than 10^decades times
    the gradient at its last step (measured, else predicted).

    Why it matters
    The backward Jacobian W_hh^T diag(phi') is applied once per step; a spectral radius above
    1/gamma lets it grow geometrically with sequence length, so long sequences blow up.

    Example
    An Elman RNN (tanh) with W_hh ~ N(0, 4/hidden) over 50 steps.

    Fix
    Clip the gradient norm (the standard cure), and rescale W_hh so the per-step factor is 1
    (orthogonal init at gain 1).

    References
    Pascanu et al. 2013; Bengio et al. 1994.
    """
    return _through_time(ctx, "exploding")


@rule("GA108", "recurrent-vanishing-through-time", "error",
      "A recurrent layer's gradient shrinks from the last time step to the first.",
      "Gradient through time vanishes: the first step gets 10^{log10_ratio:.1f} times the last step's",
      evidence=ThroughTimeEvidence)
def recurrent_vanishing(ctx: RuleContext) -> list[Hit]:
    """What it detects
    The gradient reaching a recurrent layer's first time step is below 10^-(decades+1) of the
    gradient at its last step (measured, else predicted): a warning; an error below
    10^-recurrent-vanishing-fail-decades (default 6: nn.LSTM and nn.GRU at their default init
    reach 10^-3.9 and 10^-4.9 over 24 steps and still train).

    Why it matters
    The layer cannot learn dependencies longer than a few steps: the early inputs' gradient is
    lost in float noise.

    Example
    An LSTM with forget-gate bias 0 (gate ~0.5) over 100 steps loses up to 0.3 decades per step.

    Fix
    Set the LSTM forget-gate bias to 1-3 (GRU: the update gate), or rescale W_hh toward a
    per-step factor of 1.

    References
    Jozefowicz et al. 2015, An empirical exploration of recurrent network architectures;
    Pascanu et al. 2013; Hochreiter & Schmidhuber 1997.
    """
    return _through_time(ctx, "vanishing")
