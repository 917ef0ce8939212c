"""The changes of the six remedy kinds that answers to several rules share: phrase, snippet, edits.

The answers (gradaudit.remedies.answers, one module beside each rule module) decide what a
finding calls for from its rule's evidence record; the functions here turn that into a
recommendation, or None when there is nothing concrete to offer (no measured gradient norm to
clip at, no layer a norm can follow, ...). Amounts come from gradaudit.remedies.amounts, snippets
from gradaudit.remedies.snippets. A change to weights comes with its `Edit`s, and each kind of
edit's in-place function (`@edit`) sits beside the change that produces it: gradaudit.remedies.edits
applies them to a copy, verify re-measures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gradaudit.graph import weight_layers
from gradaudit.i18n import N_, _
from gradaudit.remedies import amounts, snippets, structural_kinds
from gradaudit.remedies.amounts import Target, layer_param
from gradaudit.remedies.edits import Edit, WeightRecommendation, edit
from gradaudit.results import Recommendation
from gradaudit.rules.rule_registry import RuleContext
from gradaudit.rules.topology import consumer, node_by_name, weight_nodes, weight_stats

if TYPE_CHECKING:
    import torch

UNIT_GAIN_RESCALE = N_("Multiply the weights by the factor that brings each layer's gain to 1: {listing}")


def listing(targets: list[Target], unit: str) -> str:
    """`layer <unit><value>` for each target, as an action lists them."""
    return ", ".join(f"{t.layer} {unit}{t.value:.3g}" for t in targets)


def layers_or_first(layers: tuple[str, ...], ctx: RuleContext) -> list[str]:
    """A finding's layers, or the first weight layer when it names none."""
    if layers:
        return list(layers)
    nodes = weight_nodes(ctx.graph)
    return [ctx.graph.nodes[nodes[0]]["name"]] if nodes else []


def rescaled(targets: list[Target], purpose: str, change: str = "rescale") -> Recommendation | None:
    """Multiply each target's weights by its value; `purpose` (a msgid with {listing}) says what for."""
    if not targets:
        return None
    action = _(purpose).format(listing=listing(targets, "x"))
    return WeightRecommendation("reinitialization", [t.layer for t in targets], action,
                                snippets.rescale(targets), change=change,
                                edits=tuple(Edit("scale", t.param, t.value) for t in targets))


@edit("scale")
def _scale(weight: torch.Tensor, change: Edit, generator: torch.Generator) -> None:
    """Rescale and branch scaling: a layer's gain is proportional to its weight scale."""
    weight.mul_(change.value)


@edit("fill")
def _fill(values: torch.Tensor, change: Edit, generator: torch.Generator) -> None:
    """Memory-gate bias (its span of the stacked gate biases) and the zero biases of a re-draw."""
    values.fill_(change.value)


def redrawn(layers: list[str], ctx: RuleContext) -> Recommendation | None:
    """Re-draw the layers' weights at the critical scale, their biases at 0."""
    targets = amounts.init_targets(layers, ctx)
    if not targets:
        return None
    action = _("Re-initialise with N(0, std^2) at the critical scale, biases 0: {listing}").format(
        listing=listing(targets, "std "))
    biases = [stats for t in targets if (stats := layer_param(ctx, t.layer, "bias")) is not None]
    edits = [Edit("normal", t.param, t.value) for t in targets] + [Edit("fill", b.name, 0.0) for b in biases]
    return WeightRecommendation("reinitialization", [t.layer for t in targets], action,
                                snippets.reinit(targets), change="redraw", edits=tuple(edits))


@edit("normal")
def _redraw(weight: torch.Tensor, change: Edit, generator: torch.Generator) -> None:
    """Re-initialisation: a fresh N(0, std^2) draw replaces a broken (non-finite, symmetric) tensor."""
    import torch

    weight.copy_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype) * change.value)


def _norm_for(ctx: RuleContext, layer: str) -> tuple[str, str] | None:
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


def inserted_norms(layers: list[str], ctx: RuleContext) -> Recommendation | None:
    """A norm after each of the layers that a norm can simply follow (and does not already)."""
    placed = {layer: _norm_for(ctx, layer) for layer in layers}
    placed = {layer: where for layer, where in placed.items() if where is not None}
    return structural_kinds.inserted_norms(list(placed), placed, ctx) if placed else None


def layerwise_lr(ctx: RuleContext) -> Recommendation | None:
    """Per-layer learning rates equalising |update|/|w| (LARS), capped by 2/sharpness when measured."""
    multipliers = amounts.lr_multipliers(ctx)
    if not multipliers:
        return None
    sharpness = ctx.probe.sharpness if ctx.probe and healthy(ctx) else None  # a broken init's says nothing
    max_lr = 2.0 / sharpness if sharpness and math.isfinite(sharpness) and sharpness > 0 else None
    low, high = min(multipliers.values()), max(multipliers.values())
    action = _("Scale the SGD learning rate per layer by {low:.3g}x to {high:.3g}x (equal update/weight ratios) "
               "with {steps} warm-up steps").format(low=low, high=high, steps=snippets.WARMUP_STEPS)
    if max_lr:
        action += _("; keep the peak learning rate below {max_lr:.3g} (2/sharpness under {loss})").format(
            max_lr=max_lr, loss=ctx.probe.loss)
    layers = list(dict.fromkeys(wl.layer for wl in weight_layers(ctx.graph) if wl.param in multipliers))
    return Recommendation("lr_adaptation", layers, action, snippets.layerwise_lr(multipliers, max_lr))


def healthy(ctx: RuleContext) -> bool:
    """Gradient flow at init is healthy (or unmeasured): only then does a peak learning rate from
    its gradients, sharpness or trial runs carry over to the model that will be trained."""
    return ctx.probe is None or ctx.probe.diagnosis.label == "healthy"


def clipped(ctx: RuleContext) -> Recommendation | None:
    """Clip the global gradient norm at the norm measured at initialisation."""
    threshold = amounts.clip_threshold(ctx)
    if threshold is None:
        return None
    layers = [ctx.graph.nodes[n]["name"] for n in weight_nodes(ctx.graph)]  # the clip is global
    action = _(
        "Clip the global gradient norm at {threshold:.3g} (the norm measured at initialisation under {loss})"
    ).format(threshold=threshold, loss=ctx.probe.loss)
    return Recommendation("gradient_clipping", layers, action, snippets.clip(threshold))


def bias_shifted(layers: dict[str, dict], ctx: RuleContext) -> Recommendation | None:
    """Re-centre each layer's pre-activation (`layers`: its probe numbers): add minus its measured
    mean to the layer's bias (a forward hook if it has none)."""
    targets, hooks = [], {}
    shifts = amounts.preactivation_shifts(layers, ctx)
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
    listed = ", ".join(shift.format(layer=layer, shift=value) for layer, value in shifts.items())
    action = _("Shift each layer's pre-activation by minus its measured mean (through its bias) to centre it: "
               "{listing}").format(listing=listed)
    return WeightRecommendation("batch_shift", list(shifts), action,
                                snippets.shift_bias(targets, hooks), change="bias_shift",
                                edits=tuple(Edit("shift", t.param, t.value) for t in targets))


@edit("shift")
def _shift(bias: torch.Tensor, change: Edit, generator: torch.Generator) -> None:
    """Batch shift: adding -mean to the bias re-centres the layer's output."""
    bias.add_(change.value)
