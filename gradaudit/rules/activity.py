"""GA4xx: what the probe saw the units do: dead, saturated, shifted off centre.

Per weight layer, from LayerProbe, with the flagged layers of one rule reported as one finding
(the per-layer numbers in its evidence): these symptoms usually share one cause across a stack.
The fractions are the probe's (a unit inactive on the whole batch is dead; an activation input
where the derivative is below 5% of its peak is saturated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gradaudit.results import LayerProbe
from gradaudit.rules.rule_registry import Evidence, Hit, RuleContext, rule
from gradaudit.rules.topology import consumer

# A healthy centred ReLU unit looks dead on a batch of B with probability 2^-B: 6% at B = 4, so
# 25% dead is a real shift, not batch noise. At 90% the layer passes almost no gradient.
DEAD_FRAC_WARN = 0.25
DEAD_FRAC_ERROR = 0.9
# tanh on a unit-variance input saturates 2% of its inputs, sigmoid ~0%; a quarter saturated means
# the pre-activation scale is several times too large; three quarters cut most of the gradient.
SATURATED_FRAC_WARN = 0.25
SATURATED_FRAC_ERROR = 0.75
# A pre-activation whose mean exceeds its standard deviation puts 84% of inputs on one side of
# a rectifier's kink: the layer is mostly linear or mostly dead (batch-shift remedy).
MEAN_SHIFT_RATIO = 1.0


@dataclass(frozen=True)
class LayerGroupEvidence(Evidence):
    """GA401-GA403: the flagged layers' count, the worst of them and each one's probe numbers."""

    count: int
    worst_layer: str
    worst: float
    layers: dict[str, dict[str, Any]]


def _graded(value: float | None, warn: float, error: float) -> str | None:
    if value is None or not value >= warn:
        return None
    return "error" if value >= error else "warning"


def _layers(ctx: RuleContext, code: str) -> list[LayerProbe]:
    """The probe's layers this rule looks at (none without a probe; per-layer ignores applied)."""
    return [layer for layer in ctx.probe.layers if not ctx.layer_ignored(code, layer.layer)] if ctx.probe else []


def _renormalised(ctx: RuleContext, layer: LayerProbe) -> bool:
    """The layer feeds a normalisation, which re-centres its output whatever its mean."""
    after = consumer(ctx.graph, layer.node) if layer.node in ctx.graph else None
    return after is not None and ctx.graph.nodes[after]["op"] == "norm"


def _grouped(flagged: dict[str, tuple[str, dict]], key: str) -> list[Hit]:
    """One hit for all flagged layers (forward order kept): the worst severity, the worst layer."""
    if not flagged:
        return []
    severity = "error" if any(sev == "error" for sev, _ in flagged.values()) else "warning"
    worst = max(flagged, key=lambda name: abs(flagged[name][1][key]))
    evidence = LayerGroupEvidence(len(flagged), worst, flagged[worst][1][key],
                                  {name: numbers for name, (_, numbers) in flagged.items()})
    return [Hit(list(flagged), evidence, severity)]


@rule("GA401", "dead-units", "warning",
      "Many units after a layer are inactive on the whole probe batch.",
      "{count} layer(s) with dead units; worst {worst_layer}: {worst:.0%} dead on the whole batch",
      evidence=LayerGroupEvidence)
def dead_units(ctx: RuleContext) -> list[Hit]:
    """What it detects
    Layers whose following activation is inactive (zero derivative) on every example of the
    probe batch for at least 25% of its units (error from 90%), reported together.

    Why it matters
    A dead unit gets no gradient, so nothing revives it; its incoming and outgoing weights stop
    learning and the layer's effective width shrinks. At 90% the gradient to everything before
    the layer nearly vanishes.

    Example
    A ReLU layer whose bias was initialised to -1 on a unit-variance pre-activation, or a
    collapsed signal where each unit's bias alone decides its sign.

    Fix
    Normalise before the activation (re-centres each unit), re-initialise, shift the bias by
    minus a measured mean (GA403), or use a leaky activation.

    References
    Lu et al. 2019, Dying ReLU and initialization; Maas et al. 2013 (leaky ReLU).
    """
    flagged = {}
    for layer in _layers(ctx, "GA401"):
        severity = _graded(layer.dead_frac, DEAD_FRAC_WARN, DEAD_FRAC_ERROR)
        if severity:
            flagged[layer.layer] = (severity, {"dead_frac": layer.dead_frac, "act_mean": layer.act_mean,
                                               "act_std": layer.act_std})
    return _grouped(flagged, "dead_frac")


@rule("GA402", "saturated-units", "warning",
      "Many activation inputs sit where the derivative is nearly zero.",
      "{count} layer(s) with saturated units; worst {worst_layer}: {worst:.0%} of its activation inputs",
      evidence=LayerGroupEvidence)
def saturated_units(ctx: RuleContext) -> list[Hit]:
    """What it detects
    Layers whose following bounded activation (tanh, sigmoid, hardtanh, ...) receives at least
    25% of its inputs where the derivative is below 5% of its peak (error from 75%).

    Why it matters
    Saturated units pass almost no gradient backward and barely move forward: the layer is
    stuck, and the gradient to the layers before it shrinks by the saturated fraction.

    Example
    Linear(512, 512) with weights N(0, 1) feeding tanh: the pre-activation std is ~22.

    Fix
    Scale the layer's weights down by 1/act_std (the remedy gives the factor) or normalise
    before the activation.

    References
    Glorot & Bengio 2010; LeCun et al. 1998, Efficient BackProp.
    """
    flagged = {}
    for layer in _layers(ctx, "GA402"):
        severity = _graded(layer.saturated_frac, SATURATED_FRAC_WARN, SATURATED_FRAC_ERROR)
        if severity:
            flagged[layer.layer] = (severity, {"saturated_frac": layer.saturated_frac, "act_std": layer.act_std})
    return _grouped(flagged, "saturated_frac")


@rule("GA403", "activation-mean-shift", "warning",
      "A layer's output mean is large relative to its spread.",
      "{count} layer(s) with shifted outputs; worst {worst_layer}: mean {worst:+.3g} standard deviations off centre",
      evidence=LayerGroupEvidence)
def mean_shift(ctx: RuleContext) -> list[Hit]:
    """What it detects
    Layers whose output (pre-activation) mean over the probe batch exceeds its standard
    deviation in magnitude, unless a normalisation follows (it re-centres the output anyway).
    The evidence gives each layer's bias shift, minus its mean.

    Why it matters
    A shifted pre-activation puts most inputs on one side of the nonlinearity: a rectifier is
    mostly dead or mostly linear, a sigmoid mostly saturated. A shared shift also adds a
    coherent component that grows through the following layers (row sums times the mean).

    Example
    Inputs in [0, 255] fed to Linear + ReLU without centring, or a bias initialised to 3.

    Fix
    Batch shift: subtract the measured mean from the layer's bias (bias -= act_mean), centre the
    inputs, or normalise.

    References
    LeCun et al. 1998, Efficient BackProp (centring); Ioffe & Szegedy 2015.
    """
    flagged = {}
    for layer in _layers(ctx, "GA403"):
        mean, std = layer.act_mean, layer.act_std
        if mean is None or std is None or not abs(mean) > MEAN_SHIFT_RATIO * std or _renormalised(ctx, layer):
            continue
        ratio = mean / std if std > 0 else math.copysign(math.inf, mean)
        flagged[layer.layer] = ("warning", {"act_mean": mean, "act_std": std, "shift_ratio": ratio,
                                            "bias_shift": -mean})
    return _grouped(flagged, "shift_ratio")
