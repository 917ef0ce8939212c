"""Remedies for the architecture findings of gradaudit.rules.architecture (GA301-GA303)."""

from __future__ import annotations

from gradaudit.graph import weight_layers
from gradaudit.i18n import N_, _
from gradaudit.remedies import amounts, kinds, snippets
from gradaudit.remedies.remedy_registry import remedy
from gradaudit.results import Finding, Recommendation
from gradaudit.rules.architecture import (
    PlainStackEvidence,
    PostLnEvidence,
    ResidualEvidence,
    deep_plain_stack,
    post_ln_stack,
    residual_accumulation,
)
from gradaudit.rules.rule_registry import RuleContext

BRANCH_RESCALE = N_("Multiply the weights by the factor that scales each residual branch by 1/sqrt(number of sums): "
                    "{listing}")
# The planned run's defaults when the audit has none: AdamW at a Transformer's usual peak rate.
POST_LN_OPTIMIZER, POST_LN_LR = "adamw", 5e-4


@remedy("normalization", answers=(deep_plain_stack,),
        summary=N_("insert a norm after the layers of the plain stack"))
def normalised_plain_stack(finding: Finding, evidence: PlainStackEvidence, ctx: RuleContext) -> Recommendation | None:
    """Norms reset the scale a deep plain stack compounds."""
    return kinds.inserted_norms(kinds.layers_or_first(finding.layers, ctx), ctx)


@remedy("reinitialization", answers=(residual_accumulation,),
        summary=N_("scale each residual branch by 1/sqrt(number of sums) through its last weight layer"))
def branch_scaled(finding: Finding, evidence: ResidualEvidence, ctx: RuleContext) -> Recommendation | None:
    """alpha = 1/sqrt(L) on the last weight layer of every residual branch."""
    factors: dict[str, float | None] = dict.fromkeys(evidence.branch_layers, evidence.branch_scale)
    return kinds.rescaled(amounts.targets(ctx, factors), BRANCH_RESCALE, change="branch_scale")


@remedy("normalization", answers=(residual_accumulation,),
        summary=N_("insert a norm after the last weight layer of each residual branch"))
def normalised_branches(finding: Finding, evidence: ResidualEvidence, ctx: RuleContext) -> Recommendation | None:
    """Norms inside the branches keep each sum's variance from compounding."""
    return kinds.inserted_norms(evidence.branch_layers, ctx)


@remedy("lr_adaptation", answers=(post_ln_stack,),
        summary=N_("warm the learning rate up, or move the norms into the branches (Pre-LN)"))
def post_ln_warmup(finding: Finding, evidence: PostLnEvidence, ctx: RuleContext) -> Recommendation:
    """Xiong et al. 2020: Post-LN trains only with warm-up; Pre-LN needs none."""
    steps = int(evidence.warmup_steps)
    optimizer = getattr(ctx.config, "optimizer", None) or POST_LN_OPTIMIZER
    lr = getattr(ctx.config, "lr", None) or POST_LN_LR
    action = _("Warm the learning rate up linearly over {steps} steps ({sums} Post-LN sums; "
               "Xiong et al. 2020 needed it for a 6-layer model), or move the norms into the branches "
               "(Pre-LN, e.g. norm_first=True), which trains without warm-up").format(
        steps=steps, sums=evidence.sums)
    layers = list(dict.fromkeys(wl.layer for wl in weight_layers(ctx.graph)))
    return Recommendation("lr_adaptation", layers, action, snippets.planned_optimizer(optimizer, lr, steps))
