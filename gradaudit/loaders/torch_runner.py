"""The runner of a traced torch model: the fx graph re-bound to whatever module the probe passes.

The probe runs a deep copy of the user's module, so the traced graph is re-bound to that copy's
submodules and parameters on each call (a GraphModule over a dict root). Requested nodes become
extra outputs of a compiled copy of the graph, so a capture costs no Python interpretation per
node and the captured tensors are the very tensors the forward pass uses (they stay in the
autograd graph). When a later op writes into a captured tensor in place (`ReLU(inplace=True)`
after a BatchNorm), that consumer gets a clone instead, so the capture keeps the value it had.
"""

from __future__ import annotations

import operator
import weakref
from typing import Any, Collection, Sequence

import torch
import torch.fx as fx

from gradaudit.loaders.torch_trace import TraceResult, fetch, has_path

IN_PLACE_OPERATORS = frozenset({"iadd", "isub", "imul", "itruediv", "ipow"})


def _index_path(value: Any) -> list[int]:
    """Indices leading to the first tensor of a nested tuple result ([] for a tensor)."""
    if isinstance(value, torch.Tensor):
        return []
    for index, item in enumerate(value if isinstance(value, (tuple, list)) else ()):
        if isinstance(item, torch.Tensor):
            return [index]
        if isinstance(item, (tuple, list)):
            return [index] + _index_path(item)
    return []


class FxRunner:
    """runner(module, inputs, capture) -> (outputs, {node_id: tensor}) over a traced graph."""

    def __init__(self, trace: TraceResult):
        self.graph = trace.graph
        self.constants = trace.constants
        self.nodes = {n.name: n for n in trace.graph.nodes if n.op not in ("output", "get_attr")}
        self.paths = {n.name: _index_path(trace.values.get(n)) for n in self.nodes.values()}
        self._compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __call__(self, module: torch.nn.Module, inputs: Sequence[Any],
                 capture: Collection[str]) -> tuple[Any, dict[str, Any]]:
        wanted = tuple(sorted(c for c in set(capture) if c in self.nodes))
        per_module = self._compiled.setdefault(module, {})
        if wanted not in per_module:
            per_module[wanted] = self._compile(module, wanted)
        outputs, captured = per_module[wanted](*inputs)
        return outputs, dict(captured)

    def _compile(self, module: torch.nn.Module, wanted: tuple[str, ...]) -> fx.GraphModule:
        graph = fx.Graph()
        copies: dict[fx.Node, fx.Node] = {}
        result = graph.graph_copy(self.graph, copies)
        captured: dict[str, fx.Node] = {}
        for name in wanted:
            node = copies[self.nodes[name]]
            self._protect_from_in_place(graph, module, node)
            for index in self.paths[name]:
                with graph.inserting_after(node):
                    node = graph.call_function(operator.getitem, (node, index))
            captured[name] = node
        graph.output((result, captured))
        root = {n.target: fetch(module, n.target) if has_path(module, n.target) else self.constants[n.target]
                for n in graph.nodes if n.op in ("get_attr", "call_module")}
        return fx.GraphModule(root, graph)

    @staticmethod
    def _protect_from_in_place(graph: fx.Graph, module: torch.nn.Module, node: fx.Node) -> None:
        users = [u for u in node.users if _writes_in_place(u, module)]
        if not users:
            return
        with graph.inserting_after(node):
            copy = graph.call_method("clone", (node,))
        for user in users:
            user.replace_input_with(node, copy)


def _writes_in_place(node: fx.Node, module: torch.nn.Module) -> bool:
    if node.op == "call_module":
        return bool(getattr(fetch(module, node.target), "inplace", False))
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    in_place_name = isinstance(name, str) and name.endswith("_") and not name.endswith("__")
    return in_place_name or name in IN_PLACE_OPERATORS or bool(node.kwargs.get("inplace", False))
