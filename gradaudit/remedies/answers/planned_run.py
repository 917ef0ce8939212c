"""Remedies for the planned-run findings of gradaudit.rules.planned_run (GA601-GA603).

The trial runs (gradaudit.probe.trial) are imported where a rate is phrased: registering the
remedies (`gradaudit explain`) must not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradaudit.graph import weight_layers
from gradaudit.i18n import N_, _
from gradaudit.remedies import amounts, kinds, snippets
from gradaudit.remedies.edits import WeightRecommendation
from gradaudit.remedies.remedy_registry import LR_AFTER_INIT, remedy
from gradaudit.results import Finding, Recommendation
from gradaudit.rules.planned_run import (
    DivergenceEvidence,
    InputShiftEvidence,
    UpdateRatioEvidence,
    input_off_centre,
    learning_rate_diverges,
    planned_trials,
    update_ratio_off_scale,
)
from gradaudit.rules.rule_registry import RuleContext

if TYPE_CHECKING:
    from gradaudit.probe.trial import RateSearch


@remedy("lr_adaptation", answers=(update_ratio_off_scale, learning_rate_diverges),
        summary=N_("the peak learning rate that trained best in trial runs (or that puts the median layer's "
                   "update at 1e-3 of its weight), with warm-up, per-layer rates or Adam where the layers spread"))
def planned_rate(
    finding: Finding, evidence: UpdateRatioEvidence | DivergenceEvidence, ctx: RuleContext
) -> Recommendation | None:
    """The learning rate, warm-up or optimizer that fits the planned run: the rate that lowered
    the loss most in trial runs (gradaudit.probe.trial), halved, with warm-up when it needed one;
    without trial runs, the LR that puts the median layer's update at 1e-3 of its weight, below
    half the stability limit. Either way, per-layer rates or Adam when SGD
    updates spread over decades. A model exploding or collapsed at init gets neither: no rate
    fixes that, and a rate tuned to a broken init (1e-28, say) is wrong once it is fixed."""
    from gradaudit.probe.trial import SAFETY_FACTOR

    layers = list(dict.fromkeys(wl.layer for wl in weight_layers(ctx.graph)))
    if not kinds.healthy(ctx):
        action = _("The learning rate is not the fix until the initialisation is: the model is "
                   "{diagnosis} at initialisation, so apply the re-initialisation or normalisation "
                   "recommendations first, then re-run gradaudit with --lr to find the rate").format(
            diagnosis=_(ctx.probe.diagnosis.label))
        return WeightRecommendation("lr_adaptation", layers, action, "", change=LR_AFTER_INIT)
    plan = amounts.planned_lr_change(ctx)
    if plan is None:
        return None
    trials = planned_trials(ctx)
    search = trials.search() if trials is not None else None
    if search is not None and search.best is None:
        return _no_rate_trained(search, plan, layers)
    new_lr, warmup = (
        (search.recommended, search.best.warmup) if search is not None else (plan.new_lr, snippets.WARMUP_STEPS)
    )
    action = _(
        "At lr {lr:g} ({optimizer}) the layers' update/weight ratios per step span {low:.2g} to {high:.2g}"
    ).format(lr=plan.lr, optimizer=plan.optimizer, low=plan.low, high=plan.high)
    if search is not None:
        best = search.best
        action += _("; of {runs} trial runs, lr {best:.3g} lowered the loss most "
                    "(loss {first:.3g} -> {last:.3g} in {steps} steps").format(
            runs=len(search.trials), best=best.lr, first=best.losses[0], last=best.losses[-1], steps=len(best.losses))
        action += _(", warmed up over {steps}").format(steps=best.warmup) if best.warmup else ""
        action += _("); use a peak learning rate of {lr:.3g} ({factor:g}x that)").format(
            lr=new_lr, factor=SAFETY_FACTOR)
        action += _(", warmed up linearly over at least {steps} steps").format(steps=warmup) if warmup else ""
    else:
        if plan.limit is not None:
            action += _("; the largest stable step is {limit:.3g} (from the sharpness under {loss})").format(
                limit=plan.limit, loss=ctx.probe.loss)
        reason = (
            _("half the stability limit") if plan.capped else _("the median layer updating 1e-3 of its weight per step")
        )
        action += _("; use a peak learning rate of {lr:.3g} ({reason}), warmed up over {steps} steps").format(
            lr=new_lr, reason=reason, steps=warmup)
    if plan.multipliers:
        action += _("; the layers spread over decades: scale the rate per layer by {low:.3g}x to {high:.3g}x "
                    "(trust ratio |w|/|g|) or switch to Adam/AdamW").format(
            low=min(plan.multipliers.values()), high=max(plan.multipliers.values()))
    snippet = (snippets.layerwise_lr(plan.multipliers, new_lr, "the recommended peak") if plan.multipliers
               else snippets.planned_optimizer(plan.optimizer, new_lr, warmup))
    rec = WeightRecommendation("lr_adaptation", layers, action, snippet, change="planned_lr")
    rec.verified = _trial_record(search) if search is not None else None
    return rec


def _trial_record(search: RateSearch) -> dict:
    """The `verified` block of a rate from trial runs: each run's rate, outcome, first and last loss."""
    from gradaudit.probe.trial import SAFETY_FACTOR

    return {"trial_runs": search.records(), "recommended_lr": search.recommended,
            "safety_factor": SAFETY_FACTOR, "trains": search.best is not None}


def _no_rate_trained(search: RateSearch, plan: amounts.PlannedLr, layers: list[str]) -> Recommendation:
    rates = [t.lr for t in search.trials]
    if not search.trials or not all(t.completed for t in search.trials):
        action = _("The timeout stopped the trial runs at lr {lr:g} ({optimizer}) before a rate was seen to "
                   "train: raise --timeout (or lower --trial-steps) to get a verified learning rate").format(
            lr=plan.lr, optimizer=plan.optimizer)
    else:
        action = _("No learning rate from {low:.3g} to {high:.3g} ({optimizer}) trained in {runs} trial runs (none "
                   "both stayed finite and lowered the loss on synthetic batches): check with a real batch (--data), "
                   "or switch to Adam/AdamW").format(low=min(rates), high=max(rates), optimizer=plan.optimizer,
                                                      runs=len(rates))
    rec = WeightRecommendation("lr_adaptation", layers, action, "", change="planned_lr")
    rec.verified = _trial_record(search)
    return rec


@remedy("batch_shift", answers=(input_off_centre,),
        summary=N_("standardise the inputs with the measured batch mean and std"))
def standardised_inputs(finding: Finding, evidence: InputShiftEvidence, ctx: RuleContext) -> Recommendation | None:
    """x <- (x - mean) / std in the data pipeline."""
    mean, std = evidence.mean, evidence.std
    if mean is None or not std:
        return None
    first = kinds.layers_or_first(finding.layers, ctx)
    action = _("Standardise the inputs with the measured batch statistics, x <- (x - {mean:.4g}) / {std:.4g}, "
               "in the data pipeline (or per channel)").format(mean=mean, std=std)
    return Recommendation("batch_shift", first, action, snippets.standardise_inputs(mean, std))
