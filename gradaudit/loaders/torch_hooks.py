"""Fallback when fx cannot trace a model (data-dependent control flow): a graph of leaf modules.

Forward hooks record every call of a leaf module (the modules torch_ops has a rule for) in
execution order. Edges come from tensor lineage: a TorchFunctionMode tags every tensor computed
*between* leaf modules with the leaf calls it derives from, so `relu(fc1(x)) + x` still connects
fc2 to fc1 and to the input even though the relu and the add are not nodes. The graph is marked
partial: the functional ops between modules are missing, and the graph follows the one branch
the example input took.
"""

from __future__ import annotations

import copy
import inspect
from collections import Counter
from typing import Any, Collection, Sequence

import networkx as nx
import torch
from torch.overrides import TorchFunctionMode

from gradaudit.graph import add_node, new_graph
from gradaudit.loaders.torch_graph import ParameterNames, first_tensor, shape_of, submodule_param
from gradaudit.loaders.torch_ops import Call, module_rule


def _tensors(value: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    torch.utils._pytree.tree_map(lambda v: found.append(v) if isinstance(v, torch.Tensor) else None, value)
    return found


class _Lineage(TorchFunctionMode):
    """Which graph nodes each tensor computed outside leaf modules derives from."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[int, tuple[torch.Tensor, tuple[str, ...]]] = {}  # keeps tensors alive: ids stay unique
        self.inside_leaf = 0

    def tag(self, value: Any, producers: tuple[str, ...]) -> None:
        for tensor in _tensors(value):
            self.sources[id(tensor)] = (tensor, producers)

    def producers(self, value: Any) -> list[str]:
        found: dict[str, None] = {}
        for tensor in _tensors(value):
            found.update(dict.fromkeys(self.sources.get(id(tensor), (None, ()))[1]))
        return list(found)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self.inside_leaf:
            producers = self.producers((args, kwargs))
            if producers:
                self.tag(out, tuple(producers))
        return out


def leaf_modules(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Top-most modules with a rule (a Linear inside MultiheadAttention belongs to it)."""
    leaves: dict[str, torch.nn.Module] = {}
    for path, sub in module.named_modules():
        inside = any(path.startswith(p + ".") for p in leaves)
        if path and not inside and module_rule(sub) is not None:
            leaves[path] = sub
    return leaves


def input_names(module: torch.nn.Module, count: int) -> list[str]:
    """Node ids of the inputs: the forward's parameter names, like fx placeholders."""
    try:
        names = [p.name for p in inspect.signature(module.forward).parameters.values() if p.kind != p.VAR_KEYWORD]
    except (TypeError, ValueError):
        names = []
    names = [n.lstrip("*") for n in names]
    return (names + [f"input_{i}" for i in range(len(names), count)])[:count]


class HookRecorder:
    """Builds the fallback LayerGraph by running the model once with hooks on its leaves."""

    def __init__(self, module: torch.nn.Module, inputs: tuple, reason: str):
        self.params = ParameterNames(module)
        self.graph = new_graph("torch")
        self.graph.graph.update(partial=True, partial_reason=reason)
        self.lineage = _Lineage()
        self.calls: dict[str, tuple[str, int]] = {}  # node id -> (module path, call index)
        self.counts: Counter = Counter()
        self.module = module
        self.inputs = inputs

    def record(self) -> nx.DiGraph:
        for name, x in zip(input_names(self.module, len(self.inputs)), self.inputs):
            add_node(self.graph, name, name=name, op="input", source="input", out_shape=shape_of(x))
            self.graph.graph["inputs"].append(name)
            self.lineage.tag(x, (name,))
        work = copy.deepcopy(self.module).train()
        handles = []
        for path, leaf in leaf_modules(work).items():
            handles.append(leaf.register_forward_pre_hook(self._enter))
            handles.append(leaf.register_forward_hook(self._leave(path), with_kwargs=True))
        try:
            with torch.no_grad(), self.lineage:
                out = work(*self.inputs)
        finally:
            for handle in handles:
                handle.remove()
        self.graph.graph["outputs"] = self.lineage.producers(out)
        return self.graph

    def _enter(self, m: torch.nn.Module, args: Any) -> None:
        self.lineage.inside_leaf += 1

    def _leave(self, path: str):  # type: ignore[no-untyped-def]
        def hook(m: torch.nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            self.lineage.inside_leaf -= 1
            index = self.counts[path]
            self.counts[path] += 1
            node_id = path if index == 0 else f"{path}_{index}"
            call = Call(type(m).__name__, tuple(args), dict(kwargs), tuple(True for _ in args), out,
                        lambda *_: None, lambda attr, axis: submodule_param(self.params, f"{path}.{attr}", axis))
            spec = module_rule(m)(m, call)
            add_node(self.graph, node_id, name=path, op=spec.op, source=type(m).__name__, fn=spec.fn, attrs=spec.attrs,
                     params=spec.params, out_shape=shape_of(out), inputs=self.lineage.producers((args, kwargs)))
            self.calls[node_id] = (path, index)
            self.lineage.tag(out, (node_id,))

        return hook


class HookRunner:
    """runner(module, inputs, capture) for the fallback graph: forward hooks on requested leaves."""

    def __init__(self, calls: dict[str, tuple[str, int]], inputs: list[str]):
        self.calls = calls
        self.inputs = inputs

    def __call__(self, module: torch.nn.Module, inputs: Sequence[Any],
                 capture: Collection[str]) -> tuple[Any, dict[str, Any]]:
        captured = {name: x for name, x in zip(self.inputs, inputs) if name in capture}
        wanted: dict[str, dict[int, str]] = {}
        for node_id in capture:
            if node_id in self.calls:
                path, index = self.calls[node_id]
                wanted.setdefault(path, {})[index] = node_id
        counts: Counter = Counter()
        handles = [module.get_submodule(path).register_forward_hook(self._capture(path, by_index, counts, captured))
                   for path, by_index in wanted.items()]
        try:
            outputs = module(*inputs)
        finally:
            for handle in handles:
                handle.remove()
        return outputs, captured

    @staticmethod
    def _capture(path: str, by_index: dict[int, str], counts: Counter,
                 captured: dict[str, Any]):  # type: ignore[no-untyped-def]
        def hook(m: torch.nn.Module, args: tuple, out: Any) -> Any:
            index = counts[path]
            counts[path] += 1
            if index in by_index:
                captured[by_index[index]] = first_tensor(out)
                if isinstance(out, torch.Tensor):
                    return out.clone()  # later in-place ops must not overwrite the capture
            return None

        return hook


def graph_from_hooks(module: torch.nn.Module, inputs: tuple, reason: str) -> tuple[nx.DiGraph, HookRunner]:
    """The fallback LayerGraph (partial) and its runner."""
    recorder = HookRecorder(module, inputs, reason)
    graph = recorder.record()
    return graph, HookRunner(recorder.calls, graph.graph["inputs"])
