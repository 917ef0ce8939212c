"""Remedies for the gradient-flow findings of gradaudit.rules.flow (GA101-GA108).

A predicted flow finding (GA101/GA102) names each weight layer's share of the gain: its weights
are rescaled by the inverse. Measured flow findings (GA103/GA104) get no rescale: a step between
two layers' measured gradients mixes both layers and the activation norms, too loose to set a
weight scale from. Recurrent layers (GA107/GA108) are rescaled per step, or their memory gate is
opened (gated cells).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradaudit.i18n import N_, _
from gradaudit.remedies import amounts, kinds, snippets, structural_kinds
from gradaudit.remedies.amounts import Target, layer_param
from gradaudit.remedies.edits import Edit, WeightRecommendation, edit
from gradaudit.remedies.remedy_registry import remedy
from gradaudit.results import Finding, Recommendation
from gradaudit.rules.flow import (
    FlowEvidence,
    NonfiniteFlowEvidence,
    ThroughTimeEvidence,
    measured_exploding,
    measured_vanishing,
    nonfinite_flow,
    predicted_exploding,
    predicted_vanishing,
    recurrent_exploding,
    recurrent_vanishing,
)
from gradaudit.rules.rule_registry import RuleContext
from gradaudit.rules.topology import node_by_name

if TYPE_CHECKING:
    import torch

# Jozefowicz et al. 2015: a forget-gate bias of 1 closes most of the LSTM's gap to the GRU.
MEMORY_GATE_BIAS = 1.0
# Zeroing more than 90% of a layer removes most of its capacity; beyond that the excess gain is
# a rescaling problem, not a pruning one (keeping half the weight energy already prunes 88%).
PRUNE_MAX_FRACTION = 0.9
PER_STEP_RESCALE = N_("Multiply the weights by the factor that brings the recurrent weights' per-step gain to 1: "
                      "{listing}")
UNGATED_CELLS = ("rnn_tanh", "rnn_relu")  # gated cells are cured through their memory-gate bias


@remedy("reinitialization", answers=(predicted_exploding, predicted_vanishing),
        summary=N_("multiply the weights of the layers carrying the gain by the factor that brings each "
                   "layer's gain to 1"))
def unit_gain(finding: Finding, evidence: FlowEvidence, ctx: RuleContext) -> Recommendation | None:
    """Undo each listed dense layer's predicted gain (a recurrent layer's is GA107/GA108's)."""
    gains = evidence.layer_log10_gains
    listed = [layer for layer in finding.layers if gains.get(layer) is not None and amounts.dense_layer(ctx, layer)]
    factors: dict[str, float | None] = {layer: 10.0 ** -gains[layer] for layer in listed}
    return kinds.rescaled(amounts.targets(ctx, factors), kinds.UNIT_GAIN_RESCALE)


@remedy("normalization", answers=(predicted_exploding, measured_exploding),
        summary=N_("insert a norm after the layers carrying the gain; or, as alternatives, add identity skips "
                   "around the runs of a plain stack, or remove the norms of a plain exploding stack"))
def normalised_exploding(finding: Finding, evidence: FlowEvidence, ctx: RuleContext) -> list[Recommendation | None]:
    """Norms after the listed layers, skips around a plain stack's runs, or its norms removed."""
    return [kinds.inserted_norms(kinds.layers_or_first(finding.layers, ctx), ctx), structural_kinds.skips(ctx),
            structural_kinds.removed_norms(ctx)]


@remedy("normalization", answers=(predicted_vanishing, measured_vanishing),
        summary=N_("insert a norm after the layers carrying the gain; or, as alternatives, add identity skips "
                   "around the runs of a plain stack, or swap saturating activations for ReLU"))
def normalised_vanishing(finding: Finding, evidence: FlowEvidence, ctx: RuleContext) -> list[Recommendation | None]:
    """Norms after the listed layers, skips around a plain stack's runs, or ReLU for saturating activations."""
    return [kinds.inserted_norms(kinds.layers_or_first(finding.layers, ctx), ctx), structural_kinds.skips(ctx),
            structural_kinds.swapped_activations(ctx)]


@remedy("pruning", answers=(predicted_exploding,),
        summary=N_("zero the smallest weights of the layers whose gain exceeds 1"))
def pruned(finding: Finding, evidence: FlowEvidence, ctx: RuleContext) -> Recommendation | None:
    """Zero the smallest weights of layers whose gain exceeds 1, keeping 10^(-2 g) of their energy."""
    gains = evidence.layer_log10_gains
    targets, fractions = [], []
    for layer in finding.layers:
        gain, stats = gains.get(layer), layer_param(ctx, layer)
        if gain is None or gain <= 0 or stats is None or not amounts.dense_layer(ctx, layer):
            continue
        keep = 10.0 ** (-2.0 * gain)
        fraction = amounts.prune_fraction(keep)
        if fraction <= PRUNE_MAX_FRACTION:
            targets.append(Target(layer, stats.name, keep))
            fractions.append(_("{layer} {fraction:.0%} (keeps {keep:.2f} of the weight energy)").format(
                layer=layer, fraction=fraction, keep=keep))
    if not targets:
        return None
    action = _("Prune the smallest-magnitude weights to bring each layer's gain to ~1: {listing}").format(
        listing=", ".join(fractions))
    return WeightRecommendation("pruning", [t.layer for t in targets], action, snippets.prune(targets),
                                change="prune", edits=tuple(Edit("prune", t.param, t.value) for t in targets))


@edit("prune")
def _prune(weight: torch.Tensor, change: Edit, generator: torch.Generator) -> None:
    """Zero the smallest magnitudes until `value` of the weight energy is left (the snippet's rule)."""
    import torch

    magnitudes = weight.abs().flatten().sort().values
    energy = (magnitudes * magnitudes).cumsum(0)
    cut = int(torch.searchsorted(energy, (1.0 - change.value) * energy[-1]))
    weight.mul_((weight.abs() >= magnitudes[min(cut, magnitudes.numel() - 1)]).to(weight.dtype))


@remedy("lr_adaptation", answers=(predicted_exploding, predicted_vanishing, measured_exploding, measured_vanishing),
        summary=N_("scale the learning rate per layer to equal update/weight ratios (LARS), below 2/sharpness "
                   "where measured"))
def layerwise_rates(finding: Finding, evidence: FlowEvidence, ctx: RuleContext) -> Recommendation | None:
    """Per-layer learning rates equalising |update|/|w|."""
    return kinds.layerwise_lr(ctx)


@remedy("gradient_clipping", answers=(predicted_exploding, measured_exploding, nonfinite_flow, recurrent_exploding),
        summary=N_("clip the global gradient norm at the norm measured at initialisation"))
def clipped(
    finding: Finding, evidence: FlowEvidence | NonfiniteFlowEvidence | ThroughTimeEvidence, ctx: RuleContext
) -> Recommendation | None:
    """Clip at the measured norm (none without a probe, or when that norm is itself exploded or not
    finite): it bounds the steps an exploding flow or recurrence takes (Pascanu et al. 2013)."""
    return kinds.clipped(ctx)


@remedy("reinitialization", answers=(nonfinite_flow,),
        summary=N_("re-draw the weights of the first non-finite layer at the critical scale, biases 0"))
def redrawn_nonfinite(finding: Finding, evidence: NonfiniteFlowEvidence, ctx: RuleContext) -> Recommendation | None:
    """A fresh draw for the layer where values first stop being finite."""
    return kinds.redrawn(kinds.layers_or_first(finding.layers, ctx), ctx)


@remedy("normalization", answers=(nonfinite_flow,),
        summary=N_("insert a norm after the first non-finite layer"))
def normalised_nonfinite(finding: Finding, evidence: NonfiniteFlowEvidence, ctx: RuleContext) -> Recommendation | None:
    """A norm keeps the layer's output at unit scale, short of overflow."""
    return kinds.inserted_norms(kinds.layers_or_first(finding.layers, ctx), ctx)


@remedy("reinitialization", answers=(recurrent_exploding,),
        summary=N_("multiply the recurrent weights by the factor that brings their per-step gain to 1"))
def per_step_rescaled(finding: Finding, evidence: ThroughTimeEvidence, ctx: RuleContext) -> Recommendation | None:
    """W_hh times 10^(-per-step decades): the per-step Jacobian scales with it."""
    factors: dict[str, float | None] = {finding.layers[0]: 10.0 ** -evidence.log10_per_step}
    return kinds.rescaled(amounts.targets(ctx, factors, "weight_hh"), PER_STEP_RESCALE)


@remedy("reinitialization", answers=(recurrent_vanishing,),
        summary=N_("multiply the recurrent weights of a plain RNN up to a unit per-step gain; open the memory "
                   "gate of an LSTM or GRU (its bias set to 1)"))
def memory_kept(finding: Finding, evidence: ThroughTimeEvidence, ctx: RuleContext) -> Recommendation | None:
    """A plain RNN's W_hh rescaled; a gated cell's memory-gate bias set to MEMORY_GATE_BIAS."""
    if evidence.cell in UNGATED_CELLS:
        return per_step_rescaled(finding, evidence, ctx)
    gate = amounts.gate_bias_target(finding.layers[0], evidence.cell, ctx, MEMORY_GATE_BIAS) if finding.layers else None
    node = node_by_name(ctx.graph).get(gate.layer) if gate is not None else None
    hidden = int(ctx.graph.nodes[node]["attrs"].get("hidden") or 0) if node is not None else 0
    if gate is None or not hidden:
        return None
    action = _("Set the memory-gate bias of {layer} to {bias:g} (the gate keeps memory at init)").format(
        layer=gate.layer, bias=MEMORY_GATE_BIAS)
    start, stop = amounts.memory_gate_slice(ctx.handle.format, evidence.cell, hidden)
    return WeightRecommendation("reinitialization", [gate.layer], action,
                                snippets.gate_bias(gate, start, stop), change="gate_bias",
                                edits=(Edit("fill", gate.param, gate.value, (start, stop)),))
