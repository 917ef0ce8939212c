"""Structural remedies: changes to the architecture, proposed from the LayerGraph and verified on a copy.

Some models no weight edit can cure: a deep plain stack of Linear -> BatchNorm -> ReLU explodes
at initialisation whatever its weight scale (Yang et al. 2019: BN undoes any rescale), a
saturating activation stays saturating. Their fixes change the graph: insert a norm after a layer
(identity-initialised affine), add an identity skip around a run of layers whose input and
output shapes match (the branch scaled by 1/sqrt(number of skips)), remove the norms, or swap a
sigmoid/tanh for ReLU (its preceding layer rescaled to ReLU's critical scale). Each is a
`Rewrite` named by LayerGraph names; gradaudit.remedies.rewrite_onnx carries it out on a copy of
the ONNX graph, gradaudit.remedies.rewrite_torch on a deep copy of a torch module (module
surgery). `verify` re-analyses that copy exactly as it does a weight edit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from gradaudit.graph import forward_order
from gradaudit.remedies.edits import WeightRecommendation
from gradaudit.rules.topology import consumer, data_inputs, is_pass_through, weight_nodes, weight_stats

# What a saturating activation is swapped for: ReLU is non-saturating for positive inputs and
# its critical init (He) is known in closed form.
SWAPPED_ACTIVATIONS = {"sigmoid": "relu", "tanh": "relu"}
STRUCTURAL_CHANGES = ("insert_norm", "add_skip", "remove_norm", "swap_activation")
# How much of the user's model a change replaces, for choosing between cures: weight changes (0),
# added modules that keep every weight (1), swapped activations with rescaled layers (2), removed
# layers with re-drawn weights (3). A ratio in the healthy band is necessary, not sufficient: the
# plain 50-layer stack with its norms removed and He weights is "healthy" yet barely trains in
# benchmarks/fix_trains.py, while the same stack with scaled skips trains.
INVASIVENESS = {"insert_norm": 1, "add_skip": 1, "swap_activation": 2, "remove_norm": 3}


@dataclass(frozen=True)
class Rewrite:
    """One change to the graph, named by LayerGraph display names."""

    how: str  # "insert_norm" | "remove_norm" | "swap_activation" | "add_skip"
    node: str  # the layer a norm follows / the node removed or swapped / the first layer of a skipped run
    to: str = ""  # the norm kind ("batch", "layer"), the new activation, or the layer that ends the run
    size: int = 0  # channels (batch norm) or width (layer norm) of an inserted norm
    scale: float = 1.0  # the branch scale of a skip


@dataclass
class StructuralRecommendation(WeightRecommendation):
    """A recommendation that changes the architecture (`rewrites`), with weight edits applied first."""

    rewrites: tuple[Rewrite, ...] = ()


def restructured(rec: object) -> bool:
    """Does this recommendation change the graph?"""
    return isinstance(rec, StructuralRecommendation) and bool(rec.rewrites)


def is_output_layer(graph: nx.DiGraph, node: str) -> bool:
    """Does `node`'s result become a model output through pass-through ops only (the head)?"""
    current = node
    while current not in graph.graph.get("outputs", []):
        successors = list(graph.successors(current))
        if len(successors) != 1 or not is_pass_through(graph, successors[0]):
            return False
        current = successors[0]
    return True


def norm_rewrite(graph: nx.DiGraph, node: str) -> Rewrite | None:
    """A norm after a dense layer: BatchNorm over a conv's channels, LayerNorm over a linear's
    features; none after the head, whose outputs a norm would pin to zero mean and unit spread
    per example (the sigmoid CNN with one there could not fit its targets in
    benchmarks/fix_trains.py: 0.99 of their variance left, against 0.04 without it)."""
    data = graph.nodes[node]
    stats = weight_stats(data)
    shape = data["out_shape"]
    if stats is None or not shape or len(shape) < 2 or is_output_layer(graph, node):
        return None
    if data["op"] == "conv":
        return Rewrite("insert_norm", data["name"], "batch", int(shape[1]))
    return Rewrite("insert_norm", data["name"], "layer", int(shape[-1]))


def _sums_branches(graph: nx.DiGraph) -> bool:
    """Does the graph already add two computed signals (a residual or multi-branch model)?"""
    return any(data["op"] == "add" and len(data_inputs(graph, n)) >= 2 for n, data in graph.nodes(data=True))


def _chain(graph: nx.DiGraph, nodes: list[str]) -> bool:
    """Each node feeds only the next, and the next reads only it: a run with no fork or join."""
    for current, following in zip(nodes, nodes[1:]):
        if list(graph.successors(current)) != [following] or data_inputs(graph, following) != [current]:
            return False
    return True


def skippable_runs(graph: nx.DiGraph) -> list[tuple[str, str]]:
    """(first layer, next layer) of every run between consecutive weight layers that a plain chain
    connects and whose input and output shapes match; none in a graph that already sums branches."""
    if _sums_branches(graph):
        return []
    order = forward_order(graph)
    position = {node: index for index, node in enumerate(order)}
    layers = weight_nodes(graph)
    runs = []
    for first, following in zip(layers, layers[1:]):
        sources = data_inputs(graph, first)
        segment = order[position[first]:position[following] + 1]
        if len(sources) != 1 or not _chain(graph, segment):
            continue
        if graph.nodes[sources[0]]["out_shape"] == graph.nodes[segment[-2]]["out_shape"]:
            runs.append((graph.nodes[first]["name"], graph.nodes[following]["name"]))
    return runs


def skip_rewrites(graph: nx.DiGraph) -> tuple[Rewrite, ...]:
    """An identity skip around every skippable run, each branch scaled by 1/sqrt(runs) so the
    summed variance grows by (1 + 1/L)^L <= e, not 2^L (the residual remedy's branch scaling)."""
    runs = skippable_runs(graph)
    if len(runs) < 2:
        return ()
    scale = 1.0 / math.sqrt(len(runs))
    return tuple(Rewrite("add_skip", first, following, scale=scale) for first, following in runs)


def norm_removals(graph: nx.DiGraph) -> tuple[Rewrite, ...]:
    """Every norm of a graph that sums no branches (a plain stack: Yang et al.'s exploding case)."""
    if _sums_branches(graph):
        return ()
    return tuple(Rewrite("remove_norm", graph.nodes[n]["name"]) for n in forward_order(graph)
                 if graph.nodes[n]["op"] == "norm")


def activation_swaps(graph: nx.DiGraph) -> list[tuple[Rewrite, str | None]]:
    """Each saturating activation swapped for ReLU, with the weight layer in front of it (if any)."""
    found = []
    for layer in weight_nodes(graph):
        after = consumer(graph, layer)
        if after is None:
            continue
        data = graph.nodes[after]
        if data["op"] == "activation" and data["fn"] in SWAPPED_ACTIVATIONS:
            found.append((Rewrite("swap_activation", data["name"], SWAPPED_ACTIVATIONS[data["fn"]]),
                          graph.nodes[layer]["name"]))
    return found


def activation_after_norm(graph: nx.DiGraph, node: str) -> str | None:
    """The activation that follows `node`'s norm (layer -> norm -> activation), if that is the shape."""
    norm = consumer(graph, node)
    if norm is None or graph.nodes[norm]["op"] != "norm":
        return None
    after = consumer(graph, norm)
    return after if after is not None and graph.nodes[after]["op"] == "activation" else None
