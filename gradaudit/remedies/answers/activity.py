"""Remedies for the unit-activity findings of gradaudit.rules.activity (GA401-GA403)."""

from __future__ import annotations

from gradaudit.i18n import N_
from gradaudit.remedies import amounts, kinds, structural_kinds
from gradaudit.remedies.remedy_registry import remedy
from gradaudit.results import Finding, Recommendation
from gradaudit.rules.activity import LayerGroupEvidence, dead_units, mean_shift, saturated_units
from gradaudit.rules.rule_registry import RuleContext

DESATURATE = N_("Multiply the weights by the factor that brings the pre-activation std to 1, out of saturation: "
                "{listing}")


@remedy("normalization", answers=(dead_units,),
        summary=N_("insert a norm after the layers with dead units (it re-centres each unit)"))
def normalised_dead(finding: Finding, evidence: LayerGroupEvidence, ctx: RuleContext) -> Recommendation | None:
    """A norm before the activation re-centres every unit, reviving the dead ones."""
    return kinds.inserted_norms(kinds.layers_or_first(finding.layers, ctx), ctx)


@remedy("batch_shift", answers=(dead_units, mean_shift),
        summary=N_("shift each layer's pre-activation by minus its measured mean, through its bias"))
def recentred(finding: Finding, evidence: LayerGroupEvidence, ctx: RuleContext) -> Recommendation | None:
    """For dead units the pre-activation mean says how far below the kink the units sit."""
    return kinds.bias_shifted(evidence.layers, ctx)


@remedy("reinitialization", answers=(saturated_units,),
        summary=N_("multiply the weights of each saturated layer by 1/act_std, its pre-activation back to unit "
                   "scale"))
def desaturated(finding: Finding, evidence: LayerGroupEvidence, ctx: RuleContext) -> Recommendation | None:
    """1/act_std: the pre-activation back to unit scale, where bounded activations are not flat."""
    stds = {layer: numbers.get("act_std") for layer, numbers in evidence.layers.items()}
    factors: dict[str, float | None] = {layer: 1.0 / std for layer, std in stds.items() if std}
    return kinds.rescaled(amounts.targets(ctx, factors), DESATURATE)


@remedy("normalization", answers=(saturated_units,),
        summary=N_("insert a norm after the saturated layers; or, as an alternative, swap saturating "
                   "activations for ReLU"))
def normalised_saturated(
    finding: Finding, evidence: LayerGroupEvidence, ctx: RuleContext
) -> list[Recommendation | None]:
    """A norm before the bounded activation keeps its inputs where it is not flat; or ReLU, which has no flat side."""
    return [kinds.inserted_norms(kinds.layers_or_first(finding.layers, ctx), ctx),
            structural_kinds.swapped_activations(ctx)]
