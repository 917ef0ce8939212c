"""The six remedies, one registered function each: phrase the amount, write the snippet.

Amounts come from gradaudit.remedies.amounts; the snippets from gradaudit.remedies.snippets.
A function returns None when its remedy has nothing concrete to offer for that finding (no
measured gradient norm to clip at, a gain too large to prune away, ...). A change to weights
comes with its `Edit`s, and each kind of edit's in-place function (`@edit`) sits beside the
remedy that produces it: gradaudit.remedies.edits applies them to a copy, verify re-measures.
"""

from __future__ import annotations

import math

import torch

from gradaudit.graph import weight_layers
from gradaudit.i18n import N_, _
from gradaudit.probe import trial
from gradaudit.remedies import amounts, snippets, structural_kinds
from gradaudit.remedies.amounts import Target, layer_param
from gradaudit.remedies.edits import Edit, WeightRecommendation, edit
from gradaudit.remedies.registry import FLOW_CODES, LR_AFTER_INIT, remedy
from gradaudit.results import Finding, Recommendation
from gradaudit.rules.planned_run import planned_trials
from gradaudit.rules.registry import Context
from gradaudit.rules.topology import consumer, node_by_name, weight_nodes, weight_stats

# Jozefowicz et al. 2015: a forget-gate bias of 1 closes most of the LSTM's gap to the GRU.
MEMORY_GATE_BIAS = 1.0
# Zeroing more than 90% of a layer removes most of its capacity; beyond that the excess gain is
# a rescaling problem, not a pruning one (keeping half the weight energy already prunes 88%).
PRUNE_MAX_FRACTION = 0.9
# What the rescale factor achieves, by finding code (default: a unit per-layer gain).
RESCALE_PURPOSE = {
    "GA107": N_("Multiply the weights by the factor that brings the recurrent weights' per-step gain to 1: {listing}"),
    "GA108": N_("Multiply the weights by the factor that brings the recurrent weights' per-step gain to 1: {listing}"),
    "GA302": N_("Multiply the weights by the factor that scales each residual branch by 1/sqrt(number of sums): "
                "{listing}"),
    "GA402": N_("Multiply the weights by the factor that brings the pre-activation std to 1, out of saturation: "
                "{listing}"),
}
UNIT_GAIN_RESCALE = N_("Multiply the weights by the factor that brings each layer's gain to 1: {listing}")


def _listing(targets: list[Target], unit: str) -> str:
    return ", ".join(f"{t.layer} {unit}{t.value:.3g}" for t in targets)


def _layers_or_first(finding: Finding, ctx: Context) -> list[str]:
    """The finding's layers, or the first weight layer when it names none."""
    if finding.layers:
        return list(finding.layers)
    nodes = weight_nodes(ctx.graph)
    return [ctx.graph.nodes[nodes[0]]["name"]] if nodes else []


def _rescaled(finding: Finding, ctx: Context) -> Recommendation | None:
    targets = amounts.rescale_targets(finding, ctx)
    if not targets:
        return None
    action = _(RESCALE_PURPOSE.get(finding.code, UNIT_GAIN_RESCALE)).format(listing=_listing(targets, "x"))
    change = "branch_scale" if finding.code == "GA302" else "rescale"
    return WeightRecommendation("reinitialization", [t.layer for t in targets], action,
                                snippets.rescale(targets), change=change,
                                edits=tuple(Edit("scale", t.param, t.value) for t in targets))


@edit("scale")
def _scale(weight: torch.Tensor, change: Edit, generator: torch.Generator) -> None:
    """Rescale and branch scaling: a layer's gain is proportional to its weight scale."""
    weight.mul_(change.value)


def _gate_opened(finding: Finding, ctx: Context) -> Recommendation | None:
    gates = amounts.gate_bias_targets(finding, ctx, MEMORY_GATE_BIAS) if finding.code == "GA108" else []
    node = node_by_name(ctx.graph).get(gates[0].layer) if gates else None
    hidden = int(ctx.graph.nodes[node]["attrs"].get("hidden") or 0) if node is not None else 0
    if not hidden:
        return None
    action = _("Set the memory-gate bias of {layer} to {bias:g} (the gate keeps memory at init)").format(
        layer=gates[0].layer, bias=MEMORY_GATE_BIAS)
    start, stop = amounts.memory_gate_slice(ctx.handle.format, finding.evidence["cell"], hidden)
    return WeightRecommendation("reinitialization", [gates[0].layer], action,
                                snippets.gate_bias(gates[0], start, stop), change="gate_bias",
                                edits=(Edit("fill", gates[0].param, gates[0].value, (start, stop)),))


@edit("fill")
def _fill(values: torch.Tensor, change: Edit, generator: torch.Generator) -> None:
    """Memory-gate bias (its span of the stacked gate biases) and the zero biases of a re-draw."""
    values.fill_(change.value)


def _redrawn(finding: Finding, ctx: Context) -> Recommendation | None:
    if finding.code not in ("GA105", "GA202", "GA203"):
        return None
    finding = Finding(finding.code, finding.severity, finding.message, tuple(_layers_or_first(finding, ctx)))
    targets = amounts.init_targets(finding, ctx)
    if not targets:
        return None
    action = _("Re-initialise with N(0, std^2) at the critical scale, biases 0: {listing}").format(
        listing=_listing(targets, "std "))
    biases = [stats for t in targets if (stats := layer_param(ctx, t.layer, "bias")) is not None]
    edits = [Edit("normal", t.param, t.value) for t in targets] + [Edit("fill", b.name, 0.0) for b in biases]
    return WeightRecommendation("reinitialization", [t.layer for t in targets], action,
                                snippets.reinit(targets), change="redraw", edits=tuple(edits))


@edit("normal")
def _redraw(weight: torch.Tensor, change: Edit, generator: torch.Generator) -> None:
    """Re-initialisation: a fresh N(0, std^2) draw replaces a broken (non-finite, symmetric) tensor."""
    weight.copy_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype) * change.value)


@remedy("reinitialization",
        answers=FLOW_CODES | {"GA105", "GA107", "GA108", "GA201", "GA202", "GA203", "GA302", "GA402"})
def reinitialization(finding: Finding, ctx: Context) -> Recommendation | None:
    """Rescale weights to a unit gain, open a recurrent memory gate, or re-draw broken tensors."""
    return _rescaled(finding, ctx) or _gate_opened(finding, ctx) or _redrawn(finding, ctx)


def _norm_for(ctx: Context, layer: str) -> tuple[str, str] | None:
    """(module path, norm constructor) for a weight layer not already followed by a norm."""
    node = node_by_name(ctx.graph).get(layer)
    stats = weight_stats(ctx.graph.nodes[node]) if node is not None else None
    if stats is None or not amounts.dense_layer(ctx, layer):
        return None  # a recurrent or attention module returns tuples: no norm can simply follow it
    after = consumer(ctx.graph, node)
    if after is not None and ctx.graph.nodes[after]["op"] == "norm":
        return None
    data = ctx.graph.nodes[node]
    if data["op"] == "conv":
        transposed, groups = data["attrs"].get("transposed"), int(data["attrs"].get("groups") or 1)
        channels = stats.shape[1] * groups if transposed else stats.shape[0]
        norm = f"nn.BatchNorm{max(min(len(stats.shape) - 2, 3), 1)}d({channels})"
    else:
        width = data["out_shape"][-1] if data["out_shape"] else int(data["attrs"].get("fan_out") or stats.shape[0])
        norm = f"nn.LayerNorm({width})"
    return stats.name.rpartition(".")[0], norm


@remedy("normalization", answers=FLOW_CODES | {"GA105", "GA301", "GA302", "GA401", "GA402"})
def normalization(finding: Finding, ctx: Context) -> list[Recommendation | None]:
    """Insert a norm after the listed layers (the branches' last layers for residual sums); and the
    structural alternatives (gradaudit.remedies.structural_kinds): skips, norms removed, activations swapped."""
    layers = finding.evidence.get("branch_layers") if finding.code == "GA302" else _layers_or_first(finding, ctx)
    placed = {layer: _norm_for(ctx, layer) for layer in layers or []}
    placed = {layer: where for layer, where in placed.items() if where is not None}
    inserted = structural_kinds.inserted_norms(list(placed), placed, ctx) if placed else None
    return [inserted] + structural_kinds.alternatives(finding, ctx)


@remedy("pruning", answers={"GA101"})
def pruning(finding: Finding, ctx: Context) -> Recommendation | None:
    """Zero the smallest weights of layers whose gain exceeds 1, keeping 10^(-2 g) of their energy."""
    gains = finding.evidence.get("layer_log10_gains") or {}
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
    magnitudes = weight.abs().flatten().sort().values
    energy = (magnitudes * magnitudes).cumsum(0)
    cut = int(torch.searchsorted(energy, (1.0 - change.value) * energy[-1]))
    weight.mul_((weight.abs() >= magnitudes[min(cut, magnitudes.numel() - 1)]).to(weight.dtype))


@remedy("lr_adaptation", answers=FLOW_CODES | {"GA303", "GA601", "GA602"})
def lr_adaptation(finding: Finding, ctx: Context) -> Recommendation | None:
    """Per-layer learning rates equalising |update|/|w| (LARS), capped by 2/sharpness when measured;
    for a planned run (GA601/GA602), the learning rate, warm-up or optimizer that fits it; for a
    Post-LN stack (GA303), warm-up."""
    if finding.code in ("GA601", "GA602"):
        return _planned_run_lr(finding, ctx)
    if finding.code == "GA303":
        return _post_ln_warmup(finding, ctx)
    multipliers = amounts.lr_multipliers(ctx)
    if not multipliers:
        return None
    sharpness = ctx.probe.sharpness if ctx.probe and _healthy(ctx) else None  # a broken init's says nothing
    max_lr = 2.0 / sharpness if sharpness and math.isfinite(sharpness) and sharpness > 0 else None
    low, high = min(multipliers.values()), max(multipliers.values())
    action = _("Scale the SGD learning rate per layer by {low:.3g}x to {high:.3g}x (equal update/weight ratios) "
               "with {steps} warm-up steps").format(low=low, high=high, steps=snippets.WARMUP_STEPS)
    if max_lr:
        action += _("; keep the peak learning rate below {max_lr:.3g} (2/sharpness under {loss})").format(
            max_lr=max_lr, loss=ctx.probe.loss)
    layers = list(dict.fromkeys(wl.layer for wl in weight_layers(ctx.graph) if wl.param in multipliers))
    return Recommendation("lr_adaptation", layers, action, snippets.layerwise_lr(multipliers, max_lr))


def _healthy(ctx: Context) -> bool:
    """Gradient flow at init is healthy (or unmeasured): only then does a peak learning rate from
    its gradients, sharpness or trial runs carry over to the model that will be trained."""
    return ctx.probe is None or ctx.probe.diagnosis.label == "healthy"


def _post_ln_warmup(finding: Finding, ctx: Context) -> Recommendation:
    """Xiong et al. 2020: Post-LN trains only with warm-up; Pre-LN needs none."""
    steps = int(finding.evidence["warmup_steps"])
    optimizer = getattr(ctx.config, "optimizer", None) or "adamw"
    lr = getattr(ctx.config, "lr", None) or 5e-4
    action = _("Warm the learning rate up linearly over {steps} steps ({sums} Post-LN sums; "
               "Xiong et al. 2020 needed it for a 6-layer model), or move the norms into the branches "
               "(Pre-LN, e.g. norm_first=True), which trains without warm-up").format(
        steps=steps, sums=finding.evidence["sums"])
    layers = list(dict.fromkeys(wl.layer for wl in weight_layers(ctx.graph)))
    return Recommendation("lr_adaptation", layers, action, snippets.planned_optimizer(optimizer, lr, steps))


def _planned_run_lr(finding: Finding, ctx: Context) -> Recommendation | None:
    """The rate that lowered the loss most in trial runs (gradaudit.probe.trial), halved, with
    warm-up when it needed one; without trial runs, the LR that puts the median layer's update at 1e-3 of its
    weight, below half the stability limit. Either way, per-layer rates or Adam when SGD
    updates spread over decades. A model exploding or collapsed at init gets neither: no rate
    fixes that, and a rate tuned to a broken init (1e-28, say) is wrong once it is fixed."""
    layers = list(dict.fromkeys(wl.layer for wl in weight_layers(ctx.graph)))
    if not _healthy(ctx):
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
            lr=new_lr, factor=trial.SAFETY_FACTOR)
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


def _trial_record(search: trial.RateSearch) -> dict:
    """The `verified` block of a rate from trial runs: each run's rate, outcome, first and last loss."""
    return {"trial_runs": search.records(), "recommended_lr": search.recommended,
            "safety_factor": trial.SAFETY_FACTOR, "trains": search.best is not None}


def _no_rate_trained(search: trial.RateSearch, plan: amounts.PlannedLr, layers: list[str]) -> Recommendation:
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


@remedy("gradient_clipping", answers={"GA101", "GA103", "GA105", "GA107"})
def gradient_clipping(finding: Finding, ctx: Context) -> Recommendation | None:
    """Clip the global gradient norm at the norm measured at initialisation."""
    threshold = amounts.clip_threshold(ctx)
    if threshold is None:
        return None
    layers = [ctx.graph.nodes[n]["name"] for n in weight_nodes(ctx.graph)]  # the clip is global
    action = _(
        "Clip the global gradient norm at {threshold:.3g} (the norm measured at initialisation under {loss})"
    ).format(threshold=threshold, loss=ctx.probe.loss)
    return Recommendation("gradient_clipping", layers, action, snippets.clip(threshold))


@remedy("batch_shift", answers={"GA401", "GA403", "GA603"})
def batch_shift(finding: Finding, ctx: Context) -> Recommendation | None:
    """Re-centre each shifted or dead layer's pre-activation: add minus its measured mean to the
    layer's bias (a forward hook if it has none); for off-centre inputs (GA603), standardise them
    with the measured mean and std."""
    if finding.code == "GA603":
        return _recentred_inputs(finding, ctx)
    targets, hooks = [], {}
    shifts = amounts.preactivation_shifts(finding, ctx)
    for layer, shift in shifts.items():
        bias, weight = layer_param(ctx, layer, "bias"), layer_param(ctx, layer)
        if bias is None and weight is None:
            continue
        if bias is not None:
            targets.append(Target(layer, bias.name, shift))
        else:
            hooks[weight.name.rpartition(".")[0]] = shift
    if not targets and not hooks:
        return None
    shift = _("{layer} by {shift:+.4g}")
    listing = ", ".join(shift.format(layer=layer, shift=value) for layer, value in shifts.items())
    action = _("Shift each layer's pre-activation by minus its measured mean (through its bias) to centre it: "
               "{listing}").format(listing=listing)
    return WeightRecommendation("batch_shift", list(shifts), action,
                                snippets.shift_bias(targets, hooks), change="bias_shift",
                                edits=tuple(Edit("shift", t.param, t.value) for t in targets))


@edit("shift")
def _shift(bias: torch.Tensor, change: Edit, generator: torch.Generator) -> None:
    """Batch shift: adding -mean to the bias re-centres the layer's output."""
    bias.add_(change.value)


def _recentred_inputs(finding: Finding, ctx: Context) -> Recommendation | None:
    mean, std = finding.evidence.get("mean"), finding.evidence.get("std")
    if mean is None or not std:
        return None
    first = _layers_or_first(finding, ctx)
    action = _("Standardise the inputs with the measured batch statistics, x <- (x - {mean:.4g}) / {std:.4g}, "
               "in the data pipeline (or per channel)").format(mean=mean, std=std)
    return Recommendation("batch_shift", first, action, snippets.standardise_inputs(mean, std))
