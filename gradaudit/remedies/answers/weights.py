"""Remedies for the weight findings of gradaudit.rules.weights (GA201-GA203)."""

from __future__ import annotations

from gradaudit.i18n import N_
from gradaudit.remedies import amounts, kinds
from gradaudit.remedies.remedy_registry import remedy
from gradaudit.results import Finding, Recommendation
from gradaudit.rules.rule_registry import RuleContext
from gradaudit.rules.weights import (
    InitMismatchEvidence,
    NonfiniteWeightsEvidence,
    SymmetricWeightsEvidence,
    init_mismatch,
    nonfinite_weights,
    symmetric_weights,
)


@remedy("reinitialization", answers=(init_mismatch,),
        summary=N_("multiply the weights of each mismatched layer by its own 1/sqrt(chi)"))
def init_rescaled(finding: Finding, evidence: InitMismatchEvidence, ctx: RuleContext) -> Recommendation | None:
    """The rule's own per-layer rescale factors: each layer's gain back to 1."""
    factors = {layer: numbers["rescale"] for layer, numbers in evidence.layers.items()}
    return kinds.rescaled(amounts.targets(ctx, factors), kinds.UNIT_GAIN_RESCALE)


@remedy("reinitialization", answers=(nonfinite_weights, symmetric_weights),
        summary=N_("re-draw the broken tensors at the critical scale, biases 0"))
def redrawn_broken(
    finding: Finding, evidence: NonfiniteWeightsEvidence | SymmetricWeightsEvidence, ctx: RuleContext
) -> Recommendation | None:
    """Non-finite or symmetric weights carry nothing worth keeping: a fresh draw replaces them."""
    return kinds.redrawn(kinds.layers_or_first(finding.layers, ctx), ctx)
