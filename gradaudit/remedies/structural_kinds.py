"""The structural alternatives of the normalization remedy: what to change in the architecture.

Each function phrases one kind of `Rewrite` (gradaudit.remedies.structure) with a torch snippet,
or returns None when the graph offers no place for it; the answers of gradaudit.remedies.answers
pick the ones that fit their rule's finding. They are alternatives, not a bundle: `verify`
measures each on its own copy, and `gradaudit fix --structural` applies the ones that helped.
"""

from __future__ import annotations

from gradaudit.i18n import _
from gradaudit.remedies import amounts, snippets
from gradaudit.remedies.amounts import Target, layer_param
from gradaudit.remedies.edits import Edit
from gradaudit.remedies.structure import (
    StructuralRecommendation,
    activation_after_norm,
    activation_swaps,
    norm_removals,
    norm_rewrite,
    skip_rewrites,
)
from gradaudit.rules.rule_registry import RuleContext
from gradaudit.rules.topology import consumer, node_by_name, weight_nodes


def inserted_norms(
    layers: list[str], norms: dict[str, tuple[str, str]], ctx: RuleContext
) -> StructuralRecommendation | None:
    """A norm after each listed layer but the output's; `norms` maps a layer to its (module path,
    norm constructor)."""
    ids = node_by_name(ctx.graph)
    rewrites = tuple(r for layer in layers if (r := norm_rewrite(ctx.graph, ids[layer])) is not None)
    layers = [r.node for r in rewrites]
    norms = {layer: norms[layer] for layer in layers}
    if not rewrites:
        return None
    after = _("{norm} after {layer}")
    listing = ", ".join(after.format(norm=norm, layer=layer) for layer, (_path, norm) in norms.items())
    action = _("Insert normalisation ({count} layer(s), scale 1 and shift 0 at init): {listing}").format(
        count=len(norms), listing=listing)
    return StructuralRecommendation("normalization", layers, action, snippets.insert_norms(dict(norms.values())),
                                    change="insert_norm", rewrites=rewrites)


def skips(ctx: RuleContext) -> StructuralRecommendation | None:
    """Identity skips around the runs of a plain stack, each branch scaled by 1/sqrt(runs)."""
    rewrites = skip_rewrites(ctx.graph)
    if not rewrites:
        return None
    scale = rewrites[0].scale
    action = _("Add an identity skip around each of the {runs} runs of layers from {first} to {last} "
               "(x + {scale:.3g} * run(x), 1/sqrt({runs}) per branch): a residual stack keeps gradients within "
               "a bounded factor of each other").format(runs=len(rewrites), first=rewrites[0].node,
                                                          last=rewrites[-1].to, scale=scale)
    runs = [(r.node, r.to) for r in rewrites]
    return StructuralRecommendation("normalization", [r.node for r in rewrites], action,
                                    snippets.add_skips(runs, scale), change="add_skip", rewrites=rewrites)


def removed_norms(ctx: RuleContext) -> StructuralRecommendation | None:
    """Drop the norms of a plain exploding stack and re-draw the layers before them at the critical
    scale of the activation that follows each norm (He for ReLU)."""
    rewrites = norm_removals(ctx.graph)
    if not rewrites:
        return None
    removed = {r.node for r in rewrites}
    targets = []
    for node in weight_nodes(ctx.graph):
        activation, norm = activation_after_norm(ctx.graph, node), consumer(ctx.graph, node)
        if activation is None or ctx.graph.nodes[norm]["name"] not in removed:
            continue
        layer = ctx.graph.nodes[node]["name"]
        stats, std = layer_param(ctx, layer), amounts.critical_std(ctx, layer, activation)
        if stats is not None and std is not None:
            targets.append(Target(layer, stats.name, std))
    action = _("Remove the {count} normalisation layer(s) ({first}, ...) of this plain stack, where batch "
               "statistics make the gradient grow toward the input (Yang et al. 2019), and re-draw the {redrawn} "
               "layer(s) in front of them at the critical scale").format(
        count=len(rewrites), first=rewrites[0].node, redrawn=len(targets))
    paths = {r.node: "nn.Identity()" for r in rewrites}
    return StructuralRecommendation("normalization", [r.node for r in rewrites], action,
                                    snippets.reinit_then(snippets.replace_modules(paths), targets),
                                    change="remove_norm", rewrites=rewrites,
                                    edits=tuple(Edit("normal", t.param, t.value) for t in targets))


def swapped_activations(ctx: RuleContext) -> StructuralRecommendation | None:
    """Sigmoid/tanh after a layer swapped for ReLU, the layer rescaled to ReLU's critical scale."""
    swaps = activation_swaps(ctx.graph)
    if not swaps:
        return None
    ids = node_by_name(ctx.graph)
    targets = []
    for rewrite, layer in swaps:
        stats, std = layer_param(ctx, layer), amounts.critical_std(ctx, layer, ids[rewrite.node], fn="relu")
        if stats is not None and std is not None and stats.std > 0:
            targets.append(Target(layer, stats.name, std / stats.std))
    rewrites = tuple(rewrite for rewrite, _ in swaps)
    action = _("Swap the {count} saturating activation(s) ({first}, ...) for ReLU, which does not saturate, "
               "and rescale the layer in front of each to ReLU's critical scale: {listing}").format(
        count=len(rewrites), first=rewrites[0].node, listing=", ".join(f"{t.layer} x{t.value:.3g}" for t in targets))
    return StructuralRecommendation("normalization", [r.node for r in rewrites], action,
                                    snippets.replace_modules({r.node: "nn.ReLU()" for r in rewrites}, targets),
                                    change="swap_activation", rewrites=rewrites,
                                    edits=tuple(Edit("scale", t.param, t.value) for t in targets))
