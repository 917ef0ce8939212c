"""Small graph questions the rules and remedies ask of a LayerGraph.

Kept apart so each rule stays one screen: which nodes carry weights, what a weight layer feeds
(through reshapes, dropout and bias additions), which additions are residual sums, and where the
weights of a residual branch end. All answers come from the node schema of gradaudit.graph,
never from layer or module names.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from gradaudit.graph import WEIGHT_ROLES, ParamStats, forward_order, ordered_inputs

PASS_THROUGH_OPS = frozenset({"reshape", "dropout", "identity"})
DENSE_OPS = frozenset({"linear", "conv"})


def weight_stats(data: dict[str, Any]) -> ParamStats | None:
    """The node's first weight tensor with ndim >= 2, if it has one."""
    for role in WEIGHT_ROLES:
        stats = data["params"].get(role)
        if stats is not None and stats.ndim >= 2:
            return stats
    return None


def weight_nodes(graph: nx.DiGraph) -> list[str]:
    """Nodes holding a weight layer, in forward order."""
    return [n for n in forward_order(graph) if weight_stats(graph.nodes[n]) is not None]


def data_inputs(graph: nx.DiGraph, node: str) -> list[str]:
    """Producers of a node's inputs that are activations, not constants (slot order, repeats kept)."""
    return [src for src in ordered_inputs(graph, node) if graph.nodes[src]["op"] != "constant"]


def is_residual_add(graph: nx.DiGraph, node: str) -> bool:
    """An add of two or more activations (a constant operand makes it a bias addition)."""
    return graph.nodes[node]["op"] == "add" and len(data_inputs(graph, node)) >= 2


def _computed_from(graph: nx.DiGraph, later: str, earlier: str) -> bool:
    """Whether `later` depends on `earlier`: a walk back from `later` that stops at nodes before
    `earlier` in forward order (a skip branch is short; the whole graph is not searched)."""
    start = graph.nodes[earlier]["order"]
    stack, seen = [later], {later}
    while stack:
        node = stack.pop()
        if node == earlier:
            return True
        for producer in graph.predecessors(node):
            if producer not in seen and graph.nodes[producer]["order"] >= start:
                seen.add(producer)
                stack.append(producer)
    return False


def skip_sources(graph: nx.DiGraph, node: str) -> set[str]:
    """Inputs of a merge (sum or concat) from which another of its inputs is computed: where a
    skip connection leaves the main path (x in x + f(x), an encoder level in a U-Net)."""
    inputs = set(data_inputs(graph, node))
    return {a for a in inputs if any(a != b and _computed_from(graph, b, a) for b in inputs)}


def is_pass_through(graph: nx.DiGraph, node: str) -> bool:
    """Ops that leave the signal's scale alone: reshapes, dropout, identity, a bias addition."""
    op = graph.nodes[node]["op"]
    return op in PASS_THROUGH_OPS or (op == "add" and not is_residual_add(graph, node))


def consumer(graph: nx.DiGraph, node: str) -> str | None:
    """The first op after `node` that is not pass-through, when the path does not fork."""
    current = node
    while True:
        successors = list(graph.successors(current))
        if len(successors) != 1 or current in graph.graph.get("outputs", []):
            return None
        current = successors[0]
        if not is_pass_through(graph, current):
            return current


def feeds_sum_or_output(graph: nx.DiGraph, node: str) -> bool:
    """The node's result reaches a residual add or a model output through pass-through ops only."""
    frontier, seen = [node], set()
    while frontier:
        current = frontier.pop()
        if current in graph.graph.get("outputs", []):
            return True
        for succ in graph.successors(current):
            if is_residual_add(graph, succ):
                return True
            if succ not in seen and is_pass_through(graph, succ):
                seen.add(succ)
                frontier.append(succ)
    return False


def gates_sum_or_output(graph: nx.DiGraph, node: str) -> bool:
    """The node's result, through pass-through ops, multiplies another activation whose product
    reaches a residual add or a model output: adaLN-Zero's gate, a zero-initialised gate."""
    frontier, seen = [node], set()
    while frontier:
        current = frontier.pop()
        for succ in graph.successors(current):
            if graph.nodes[succ]["op"] == "mul" and feeds_sum_or_output(graph, succ):
                return True
            if succ not in seen and is_pass_through(graph, succ):
                seen.add(succ)
                frontier.append(succ)
    return False


def branch_end_weight(graph: nx.DiGraph, add: str) -> str | None:
    """The last weight node on the branch of a residual add (None when it has no weights).

    The skip input is the one from which another input can be reached (the branch computes from
    it); the branch is followed back through single-input ops until a weight node appears.
    """
    inputs = list(dict.fromkeys(data_inputs(graph, add)))
    for start in inputs:
        if any(other != start and nx.has_path(graph, start, other) for other in inputs):
            continue
        current = start
        while current is not None:
            if weight_stats(graph.nodes[current]) is not None:
                return current
            previous = data_inputs(graph, current)
            current = previous[0] if len(previous) == 1 and not is_residual_add(graph, current) else None
    return None


def node_by_name(graph: nx.DiGraph) -> dict[str, str]:
    """Display name -> node id (the first node of that name in forward order)."""
    found: dict[str, str] = {}
    for node in forward_order(graph):
        found.setdefault(graph.nodes[node]["name"], node)
    return found


def longest_chain(graph: nx.DiGraph, resets: set[str], counted: set[str]) -> tuple[str, ...]:
    """The longest forward path's `counted` nodes, restarting after any node in `resets`."""
    best: dict[str, tuple[str, ...]] = {}
    for node in forward_order(graph):
        if node in resets:
            best[node] = ()
            continue
        previous = max((best[p] for p in graph.predecessors(node)), key=len, default=())
        best[node] = previous + (node,) if node in counted else previous
    return max(best.values(), key=len, default=())


def scale_resets(graph: nx.DiGraph) -> set[str]:
    """Nodes after which a per-layer gain error stops compounding: norms, residual sums, and the
    two ends of a skip (a concatenation of a tensor with one computed from it, as in U-Net and
    DenseNet, and that tensor): the gradient crosses a skip directly instead of through the
    layers it bypasses."""
    resets = set()
    for node in graph.nodes:
        op = graph.nodes[node]["op"]
        if op == "norm":
            resets.add(node)
        elif is_residual_add(graph, node) or op == "concat":
            sources = skip_sources(graph, node)
            if sources or op == "add":
                resets |= sources | {node}
    return resets
