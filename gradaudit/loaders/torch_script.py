"""TorchScript modules: a partial graph from their leaf submodules, in definition order.

fx cannot trace scripted code and scripted code does not fire Python forward hooks, but a
scripted module keeps each submodule's original class name, parameters and constant attributes
(in_features, stride, eps...). So the leaf submodules are mapped with the same rules as live
modules (by their original class) and chained in definition order, which is the execution order
of sequential models; the graph says it is partial. The module itself runs normally, so the probe
measures real gradients of every parameter.
"""

from __future__ import annotations

from typing import Any, Collection, Sequence

import networkx as nx
import torch

from gradaudit.graph import add_node, new_graph
from gradaudit.loaders.torch_graph import ParameterNames, shape_of, submodule_param
from gradaudit.loaders.torch_hooks import input_names
from gradaudit.loaders.torch_ops import MODULE_RULES, Call, NodeSpec

PARTIAL_REASON = ("TorchScript module: the graph chains its leaf submodules in definition order; functional ops "
                  "and branches inside scripted code are not represented")


def _script_rule(sub: torch.jit.ScriptModule) -> Any:
    cls = getattr(torch.nn, getattr(sub, "original_name", ""), None)
    if not isinstance(cls, type):
        return None
    return next((rule for base, rule in MODULE_RULES if issubclass(cls, base)), None)


def graph_from_script(module: torch.jit.ScriptModule, inputs: tuple) -> nx.DiGraph:
    """The chain graph of a scripted module's leaves; the last one produces the output."""
    graph = new_graph("torch")
    graph.graph.update(partial=True, partial_reason=PARTIAL_REASON)
    params = ParameterNames(module)
    previous = input_names(module, len(inputs))
    for name, x in zip(previous, inputs):
        add_node(graph, name, name=name, op="input", source="input", out_shape=shape_of(x))
    graph.graph["inputs"] = list(previous)
    leaves: dict[str, Any] = {}
    for path, sub in module.named_modules():
        if path and not any(path.startswith(p + ".") for p in leaves) and _script_rule(sub) is not None:
            leaves[path] = sub
    for path, sub in leaves.items():
        call = Call(sub.original_name, tuple(inputs), {}, (True,) * len(inputs), None, lambda *_: None,
                    lambda attr, axis, path=path: submodule_param(params, f"{path}.{attr}", axis))
        spec = _safe_spec(sub, call)
        add_node(graph, path, name=path, op=spec.op, source=sub.original_name, fn=spec.fn, attrs=spec.attrs,
                 params=spec.params, inputs=previous)
        previous = [path]
    with torch.no_grad():
        outputs = module(*inputs)
    graph.nodes[previous[0]]["out_shape"] = shape_of(outputs)
    graph.graph["outputs"] = list(previous)
    return graph


def _safe_spec(sub: Any, call: Call) -> NodeSpec:
    """A rule needs attributes the script may have dropped; without them the op is unknown."""
    try:
        return _script_rule(sub)(sub, call)
    except (AttributeError, RuntimeError, IndexError, TypeError):
        return NodeSpec("unknown")


def run_script(module: torch.nn.Module, inputs: Sequence[Any], capture: Collection[str]) -> tuple[Any, dict[str, Any]]:
    """Runner of a scripted module: outputs, and only the inputs can be captured."""
    names = input_names(module, len(inputs))
    return module(*inputs), {n: x for n, x in zip(names, inputs) if n in capture}
