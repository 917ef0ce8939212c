"""GA6xx: the planned training run (`--lr`, `--optimizer`, `--data`) judged against the probe.

The gradient flow at initialisation says nothing about whether a given learning rate will train:
that needs the step size. With the planned learning rate and optimizer, each weight layer's
first-step update-to-weight ratio follows from the probe's gradient and weight RMS; whether the
run diverges is measured by a trial run (gradaudit.probe.trial), with the sharpness bound 2/lambda
(THEORY.md, Learning rate) as its evidence. With a real batch (`--data`), the probe's input mean
and spread show whether the inputs need re-centring. The plan travels in `PlannedRunConfig`, a
RuleConfig with the run settings and its trial runs added, so the rules and remedies read it from
their usual context.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from gradaudit.i18n import _
from gradaudit.optimizers import MOMENTUM
from gradaudit.results import LayerProbe
from gradaudit.rules.rule_registry import Evidence, Hit, RuleConfig, RuleContext, rule

# ||update|| / ||w|| per step of about 1e-3 is the usual healthy scale (THEORY.md, LARS);
# a decade either side is still workable, a layer updated by 10% of itself per step is not.
TARGET_UPDATE_RATIO = 1e-3
UPDATE_RATIO_WARN_DECADES = 1.0
UPDATE_RATIO_ERROR = 1e-1
# Inputs whose mean exceeds their spread, or whose spread is a decade off unit scale, push the
# first layer's pre-activations off centre (LeCun et al. 1998); same ratio as GA403's.
INPUT_MEAN_RATIO = 1.0
INPUT_SCALE_DECADES = 1.0


@dataclass(frozen=True)
class UpdateRatioEvidence(Evidence):
    """GA601: the planned run and each flagged layer's update/weight ratio per step."""

    count: int
    lr: float
    optimizer: str
    worst_layer: str
    worst: float
    layers: dict[str, float]
    loss: str


@dataclass(frozen=True)
class DivergenceEvidence(Evidence):
    """GA602: the planned run, the stability limit from the sharpness, the trial run's record."""

    lr: float
    optimizer: str
    limit: float | None
    sharpness: float | None
    loss: str
    trial: dict[str, Any] | None
    verdict: str


@dataclass(frozen=True)
class InputShiftEvidence(Evidence):
    """GA603: the measured input mean and std, and the standardisation that centres them."""

    mean: float
    std: float
    shift: float
    scale: float | None


@dataclass
class PlannedRunConfig(RuleConfig):
    """The rules' configuration plus the planned run: learning rate, optimizer, real data."""

    lr: float | None = None
    optimizer: str = "sgd"
    real_batch: bool = False  # the probe ran on the user's data, not on synthetic inputs
    trials: Any = None  # gradaudit.probe.trial.PlannedTrials: the trial run at `lr`, the rate search


def planned_config(
    base: RuleConfig | None, lr: float | None, optimizer: str | None, real_batch: bool = False, trials: Any = None
) -> RuleConfig:
    """`base` (or the defaults) carrying the planned run when one is given."""
    base = base or RuleConfig()
    if lr is None and optimizer is None and not real_batch:
        return base
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(RuleConfig)}
    return PlannedRunConfig(**fields, lr=lr, optimizer=optimizer or "sgd", real_batch=real_batch, trials=trials)


def planned_trials(ctx: RuleContext) -> Any:
    """The planned run's PlannedTrials, when a trial ran (with --lr, on a model that executes)."""
    return getattr(ctx.config, "trials", None)


def planned_lr(ctx: RuleContext) -> tuple[float, str] | None:
    """(learning rate, optimizer) of the planned run, when the user gave one."""
    config = ctx.config
    if isinstance(config, PlannedRunConfig) and config.lr is not None and config.lr > 0:
        return config.lr, config.optimizer
    return None


def update_ratio(layer: LayerProbe, lr: float, optimizer: str) -> float | None:
    """||update|| / ||w|| of the first steps: SGD steps lr*g, heavy ball lr*g/(1-beta) once its
    velocity builds up, Adam/AdamW about lr per element whatever the gradient's scale."""
    if not layer.weight_rms > 0 or not math.isfinite(layer.grad_rms):
        return None
    step = {"sgd": lr * layer.grad_rms, "momentum": lr * layer.grad_rms / (1.0 - MOMENTUM)}.get(optimizer, lr)
    return step / layer.weight_rms


def stability_limit(sharpness: float, optimizer: str) -> float | None:
    """Largest stable step on the local quadratic: 2/lambda for SGD, 2(1+beta)/lambda for heavy
    ball; None for Adam, whose preconditioner changes the curvature the step sees."""
    if not sharpness > 0 or not math.isfinite(sharpness):
        return None
    return {"sgd": 2.0 / sharpness, "momentum": 2.0 * (1.0 + MOMENTUM) / sharpness}.get(optimizer)


@rule("GA601", "update-ratio-off-scale", "warning",
      "At the planned learning rate some layers' updates are far from 1e-3 of their weights per step.",
      "{count} layer(s) update far from 1e-3 of their weights per step at lr {lr:g} ({optimizer}; "
      "gradients under {loss}); worst {worst_layer}: {worst:.3g}",
      evidence=UpdateRatioEvidence)
def update_ratio_off_scale(ctx: RuleContext) -> list[Hit]:
    """What it detects
    With `--lr` (and `--optimizer`), weight layers whose first-step update-to-weight ratio,
    ||lr * step|| / ||w|| from the probe's gradient and weight RMS, is more than a decade away
    from 1e-3. Above 0.1 (a tenth of the weight per step) it is an error.

    Why it matters
    A layer updated by much more than 1e-3 of itself per step is rewritten within a few steps
    and can diverge; one updated far less does not train in the planned budget. Gradients that
    spread over decades across layers make one global learning rate wrong for most layers.

    Example
    A plain 12-layer sigmoid MLP at lr 0.1 with SGD: the head moves 10% per step, the first
    layer 1e-7.

    Fix
    Learning-rate adaptation: scale the learning rate so the median layer sits at 1e-3, use
    per-layer rates (LARS trust ratio ||w||/||g||), or an adaptive optimizer (Adam/AdamW),
    whose updates do not depend on the gradient's scale; warm up when the ratio is high.

    References
    You et al. 2017 (LARS); Karpathy's update/weight heuristic; Kingma & Ba 2015.
    """
    plan = planned_lr(ctx)
    if plan is None or ctx.probe is None:
        return []
    lr, optimizer = plan
    flagged = {}
    for layer in ctx.probe.layers:
        ratio = update_ratio(layer, lr, optimizer)
        if ratio is None or ratio <= 0 or ctx.layer_ignored("GA601", layer.layer):
            continue
        if abs(math.log10(ratio / TARGET_UPDATE_RATIO)) > UPDATE_RATIO_WARN_DECADES:
            flagged[layer.layer] = ratio
    if not flagged:
        return []
    worst = max(flagged, key=lambda name: abs(math.log10(flagged[name] / TARGET_UPDATE_RATIO)))
    severity = "error" if max(flagged.values()) > UPDATE_RATIO_ERROR else "warning"
    evidence = UpdateRatioEvidence(len(flagged), lr, optimizer, worst, flagged[worst], flagged, ctx.probe.loss)
    return [Hit(list(flagged), evidence, severity)]


@rule("GA602", "learning-rate-diverges", "error",
      "The planned learning rate diverges in a trial run, or exceeds the stability limit 2/sharpness.",
      "lr {lr:g} ({optimizer}) {verdict}",
      evidence=DivergenceEvidence)
def learning_rate_diverges(ctx: RuleContext) -> list[Hit]:
    """What it detects
    With `--lr`, a trial run (a short real training of a copy of the model with the planned
    optimizer and rate on seeded batches labelled by a seeded teacher network, `trial-steps`
    steps, twice that when the loss has not gone down by then) whose loss goes non-finite or
    above 10x its first value: an error that names the step. The sharpness (largest Hessian
    eigenvalue lambda under the planned loss) backs it as evidence: the largest stable step on
    the local quadratic is 2/lambda for SGD, 2(1+beta)/lambda with heavy-ball momentum. A rate
    above that limit whose trial run does not diverge is a warning only, saying so.

    Why it matters
    A run that diverges in its first dozens of steps on synthetic batches will diverge on real
    data too, or need a restart at a lower rate. The bound alone is not enough: real networks
    often train above 2/lambda (the loss spikes once, the curvature drops: catapult and
    edge-of-stability dynamics), so it is evidence, not the verdict.

    Example
    A Post-LN transformer trained with SGD at lr 1: its loss is non-finite at step 3.

    Fix
    Learning-rate adaptation: the recommendation gives the rate that lowered the loss most in
    a short search of trial runs, halved, with a warm-up when a higher rate does better once
    warmed up.

    References
    Cohen et al. 2021, Gradient descent on neural networks typically occurs at the edge of
    stability; Lewkowycz et al. 2020, The large learning rate phase of deep learning: the
    catapult mechanism; LeCun et al. 1998, Efficient BackProp.
    """
    plan = planned_lr(ctx)
    if plan is None or ctx.probe is None:
        return []
    lr, optimizer = plan
    sharpness = ctx.probe.sharpness
    limit = stability_limit(sharpness, optimizer) if sharpness is not None else None
    trials = planned_trials(ctx)
    trial = trials.planned if trials is not None else None
    bound = (_("sharpness {sharpness:.3g} under {loss} puts the stable step at {limit:.3g}").format(
        sharpness=sharpness, loss=ctx.probe.loss, limit=limit) if limit is not None else "")
    run = {"lr": lr, "optimizer": optimizer, "limit": limit, "sharpness": sharpness, "loss": ctx.probe.loss,
           "trial": trial.record() if trial is not None else None}
    if trial is not None and trial.diverged_at is not None:
        verdict = _("diverges in a trial run at step {step} (loss {first:.3g} -> {last:.3g})").format(
            step=trial.diverged_at, first=trial.losses[0], last=trial.losses[-1]) + (f"; {bound}" if bound else "")
        return [Hit([], DivergenceEvidence(**run, verdict=verdict), "error")]
    if limit is None or lr <= limit:
        return []
    if trial is None:
        verdict = _("is above the stability limit: {bound} (no trial run could check it)").format(bound=bound)
    else:
        verdict = _("is above the stability limit ({bound}) but its trial run did not diverge ({outcome}, {steps} "
                    "steps, loss {first:.3g} -> {last:.3g}); expect a loss spike in the first steps").format(
            bound=bound, outcome=trial.outcome, steps=len(trial.losses), first=trial.losses[0], last=trial.losses[-1])
    return [Hit([], DivergenceEvidence(**run, verdict=verdict), "warning")]


@rule("GA603", "input-off-centre", "warning",
      "The probe's input batch is far from zero mean and unit scale.",
      "inputs have mean {mean:+.3g} and standard deviation {std:.3g}",
      evidence=InputShiftEvidence)
def input_off_centre(ctx: RuleContext) -> list[Hit]:
    """What it detects
    Float inputs of the real batch given with `--data` whose mean exceeds their
    standard deviation in magnitude, or whose standard deviation is more than a decade away
    from 1.

    Why it matters
    The first layer's pre-activations inherit the input's offset and scale: an offset puts
    them on one side of the nonlinearity and adds a coherent component that grows with depth;
    a scale off by a decade moves every layer's gain computed for unit inputs.

    Example
    Pixels in [0, 255] fed without normalisation.

    Fix
    Batch shift: re-centre and rescale the inputs, x <- (x - mean) / std, with the measured
    numbers (or standardise per channel in the data pipeline).

    References
    LeCun et al. 1998, Efficient BackProp (centring the inputs).
    """
    probe, real = ctx.probe, isinstance(ctx.config, PlannedRunConfig) and ctx.config.real_batch
    mean, std = (probe.input_mean, probe.input_std) if probe is not None and real else (None, None)
    if mean is None or std is None or not math.isfinite(mean) or not math.isfinite(std):
        return []
    shifted = abs(mean) > INPUT_MEAN_RATIO * std
    scaled = std <= 0 or abs(math.log10(std)) > INPUT_SCALE_DECADES
    if not (shifted or scaled):
        return []
    return [Hit([], InputShiftEvidence(mean, std, -mean, 1.0 / std if std > 0 else None))]
