"""Build the LayerGraph from a concretely traced fx graph (see torch_trace).

Only the *data path* becomes nodes: fx nodes whose value holds a tensor computed from a model
input. Shape arithmetic (`x.size(0)`, `d ** 0.5`) and constant subgraphs (weights, masks,
`torch.arange` positions) are folded: they appear as a linear layer's weight statistics, a
scale's value, or a "constant" input of an add. `getitem` on a tuple result (an LSTM's
`(output, (h, c))`, MultiheadAttention's `(out, weights)`) selects a result, not data, so it maps
onto the producing node instead of adding one.
"""

from __future__ import annotations

from typing import Any, Callable

import networkx as nx
import torch
import torch.fx as fx

from gradaudit.graph import ParamStats, add_node, is_weight_role, new_graph
from gradaudit.loaders.onnx_patterns import FusedLayer
from gradaudit.loaders.torch_functions import SHAPE_ONLY, Stage, function_rule
from gradaudit.loaders.torch_ops import Call, NodeSpec, module_rule
from gradaudit.loaders.torch_patterns import fused_layers
from gradaudit.loaders.torch_trace import TraceResult, fetch, has_path
from gradaudit.weight_stats import constant_moments, param_stats

# (name, tensor, out_axis) -> ParamStats: how the builder takes a parameter's statistics
StatsOf = Callable[[str, Any, int], ParamStats]


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in a (possibly nested) result: the output a node's shape describes."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        return first_tensor(list(value.values()))
    return None


def shape_of(value: Any) -> tuple[int, ...] | None:
    tensor = first_tensor(value)
    return tuple(int(d) for d in tensor.shape) if tensor is not None else None


def call_name(node: fx.Node) -> str:
    """The vocabulary key of a call: function `__name__` or method name (`getattr(x, "T")` -> "T")."""
    if node.op == "call_method":
        return str(node.target)
    if node.target is getattr:
        return str(node.args[1])
    if isinstance(node.target, torch._ops.OpOverload):
        return node.target._opname
    return getattr(node.target, "__name__", str(node.target))


class ParameterNames:
    """Qualified `named_parameters()` names of the user's module, found by tensor identity.

    Identity survives weight tying (one name per tensor) and module reuse; a parametrized
    weight (weight_norm, spectral_norm) is a computed tensor, named after its stored original.
    """

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.by_id = {id(p): name for name, p in module.named_parameters()}
        self.names = set(self.by_id.values())

    def of_attribute(self, path: str) -> str | None:
        tensor = fetch(self.module, path)
        if id(tensor) in self.by_id:
            return self.by_id[id(tensor)]
        owner, _, attr = path.rpartition(".")
        stored = ".".join(filter(None, [owner, "parametrizations", attr, "original"]))
        originals = [n for n in sorted(self.names) if n.startswith(stored)]
        same_shape = [n for n in originals if fetch(self.module, n).shape == tensor.shape]  # weight_norm's direction v
        return (same_shape or originals or [None])[0]

    def of_ancestors(self, node: fx.Node, shape: tuple[int, ...] | None) -> str | None:
        """The parameter a computed constant derives from: same shape preferred, else the first."""
        found: list[str] = []
        stack, seen = [node], set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            if current.op == "get_attr":
                name = self.of_attribute(current.target) if has_path(self.module, current.target) else None
                found += [name] if name else []
            elif current.op == "call_module":
                found += [n for n, _ in fetch(self.module, current.target).named_parameters(prefix=current.target)]
            stack.extend(current.all_input_nodes)
        by_shape = [n for n in found if tuple(fetch(self.module, n).shape) == shape]
        return (by_shape or found or [None])[0]


def submodule_param(params: ParameterNames, path: str, out_axis: int,
                    stats_of: StatsOf = param_stats) -> ParamStats | None:
    """Statistics of a leaf module's tensor attribute (None when absent, e.g. bias=False)."""
    tensor = fetch(params.module, path) if has_path(params.module, path) else None
    if not isinstance(tensor, torch.Tensor):
        return None
    return stats_of(params.of_attribute(path) or path, tensor, out_axis)


def _same_value(a: Any, b: Any) -> bool:
    """One node, or two calls of one function on the same arguments (`key + time_first` spelt
    twice in RWKV's WKV)."""
    if a is b:
        return True
    return (isinstance(a, fx.Node) and isinstance(b, fx.Node) and a.op == b.op == "call_function"
            and (a.target, a.args, a.kwargs) == (b.target, b.args, b.kwargs))


class GraphBuilder:
    """Walks the traced fx graph once, in execution order, adding LayerGraph nodes."""

    def __init__(self, module: torch.nn.Module, trace: TraceResult, stats_of: StatsOf = param_stats):
        self.module = module
        self.trace = trace
        self.stats_of = stats_of
        self.params = ParameterNames(module)
        self.graph = new_graph("torch")
        self.node_of: dict[fx.Node, str] = {}  # fx data node -> LayerGraph node id

    def build(self) -> nx.DiGraph:
        fused = self._written_out_layers()
        absorbed = set().union(*(layer.absorbed for layer in fused.values()))
        for node in self.trace.graph.nodes:
            if node in self.trace.input_nodes:
                self._add(node.name, NodeSpec("input"), node.target, [], shape_of(self.trace.values[node]), "input")
                self.graph.graph["inputs"].append(node.name)
                self.node_of[node] = node.name
            elif node.op == "output":
                self.graph.graph["outputs"] = self._outputs(node)
            elif node.name in fused:
                self._add_fused(node, fused[node.name])
            elif node.name not in absorbed and self._is_data(node):
                self._map(node)
        return self.graph

    def _is_data(self, node: fx.Node) -> bool:
        return self._computed_from(node, self.node_of)

    def _computed_from(self, node: fx.Node, data: Any) -> bool:
        """A tensor whose values are computed from one of `data` (`zeros_like(x)` takes x's shape
        only: a constant, as the ONNX exporter's ConstantOfShape(Shape(x)) is)."""
        return (first_tensor(self.trace.values.get(node)) is not None and call_name(node) not in SHAPE_ONLY
                and any(n in data for n in node.all_input_nodes))

    def _written_out_layers(self) -> dict[str, FusedLayer]:
        """Norms and activations written as calls (torch_patterns) whose input is on the data path."""
        data = set(self.trace.input_nodes)
        for node in self.trace.graph.nodes:
            if self._computed_from(node, data):
                data.add(node)
        names = {node.name for node in data}
        fused = fused_layers(self.trace.graph, self.trace.values, data, call_name)
        return {end: layer for end, layer in fused.items() if layer.source in names}

    def _add_fused(self, node: fx.Node, layer: FusedLayer) -> None:
        source = next(n for n in self.node_of if n.name == layer.source)
        shape = shape_of(self.trace.values[node])
        attrs = dict(layer.attrs)
        if "axis" in attrs:
            axis = attrs.pop("axis")
            attrs["normalized_shape"] = tuple(shape[axis % len(shape):]) if shape else ()
        self.node_of[node] = node.name
        self._add(node.name, NodeSpec(layer.op, layer.fn, attrs), node.name, [self.node_of[source]], shape,
                  f"{layer.fn} {layer.op}, written out")

    def _outputs(self, node: fx.Node) -> list[str]:
        ids: list[str] = []
        fx.node.map_arg(node.args, lambda n: ids.append(self.node_of[n]) if n in self.node_of
                        and self.node_of[n] not in ids else None)
        return ids

    def _map(self, node: fx.Node) -> None:
        if call_name(node) == "getitem" and not isinstance(self.trace.values[node.args[0]], torch.Tensor):
            self.node_of[node] = self.node_of[node.args[0]]
            return
        call = self._call(node)
        if node.op == "call_module":
            submodule = fetch(self.module, node.target)
            spec = module_rule(submodule)(submodule, call)
            name, kind = node.target, type(submodule).__name__
        elif call_name(node) == "exp" and (pair := self._gap_to_max(node.args[0])) is not None:
            self.node_of[node] = node.name
            self._add(node.name, NodeSpec("exp_gap"), node.name, [self.node_of[n] for n in pair],
                      shape_of(self.trace.values[node]), "exp")
            return
        else:
            rule = function_rule(call_name(node), aten=isinstance(node.target, torch._ops.OpOverload))
            spec = rule(call) if rule else NodeSpec("unknown")
            name, kind = self._owner_of_weight(spec) or node.name, call_name(node)
        self.node_of[node] = node.name
        if isinstance(spec, list):
            self._add_stages(node, spec, kind)
            return
        inputs = self._inputs(node, spec)
        self._add(node.name, spec, name, inputs, shape_of(self.trace.values[node]), kind)

    def _gap_to_max(self, arg: Any) -> list[fx.Node] | None:
        """x and y when `arg` is x - maximum(x, y), both activations: the exponent of a stabilised
        log-sum-exp (RWKV's WKV), min(x - y, 0), read as the ONNX loader reads Sub(x, Max(x, y))."""
        if not isinstance(arg, fx.Node) or call_name(arg) != "sub" or len(arg.args) != 2 or arg.kwargs:
            return None
        x, peak = arg.args
        if not isinstance(peak, fx.Node) or call_name(peak) != "maximum" or len(peak.args) != 2:
            return None
        for slot, candidate in enumerate(peak.args):
            if _same_value(candidate, x):
                pair = [x, peak.args[1 - slot]]
                return pair if all(n in self.node_of for n in pair) else None
        return None

    def _owner_of_weight(self, spec: NodeSpec | list[Stage]) -> str | None:
        """The module owning a call's weight (`h.0.mlp.c_fc` for GPT-2's `addmm(bias, x, W)`,
        any layer of a torch.export graph): the name a user recognises, not `addmm_2`."""
        if isinstance(spec, list):
            return None
        weights = [stats.name for role, stats in spec.params.items() if is_weight_role(role)
                   and stats.name in self.params.names]
        return (weights[0].rpartition(".")[0] or None) if weights else None

    def _call(self, node: fx.Node) -> Call:
        values = self.trace.values
        args = fx.node.map_arg(node.args, lambda n: values[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
        is_data = tuple(self._holds_data(a) for a in node.args)

        def param(index: int, key: str, out_axis: int) -> ParamStats | None:
            arg = node.kwargs.get(key, node.args[index] if index < len(node.args) else None)
            if not isinstance(arg, fx.Node) or not isinstance(values[arg], torch.Tensor) or arg in self.node_of:
                return None
            value = values[arg]
            name = self.params.of_ancestors(arg, tuple(value.shape)) or arg.name
            return self.stats_of(name, value, out_axis % max(value.dim(), 1))

        def module_param(attr: str, out_axis: int) -> ParamStats | None:
            return submodule_param(self.params, f"{node.target}.{attr}", out_axis, self.stats_of)

        return Call(call_name(node), tuple(args), dict(kwargs), is_data, values[node], param, module_param)

    def _holds_data(self, arg: Any) -> bool:
        found: list[bool] = []
        fx.node.map_arg(arg, lambda n: found.append(n in self.node_of))
        return any(found)

    def _inputs(self, node: fx.Node, spec: NodeSpec) -> list[str]:
        """Producers in argument order; an add also takes its constant operands as nodes."""
        inputs: list[str] = []
        for position, arg in enumerate(node.args):
            if self._holds_data(arg):
                fx.node.map_arg(arg, lambda n: inputs.append(self.node_of[n]) if n in self.node_of else None)
            elif spec.op in ("add", "maximum") and isinstance(self._concrete(arg), (torch.Tensor, int, float)):
                inputs.append(self._add_constant(node, position, arg, as_bias=spec.op == "add"))
        for arg in node.kwargs.values():
            fx.node.map_arg(arg, lambda n: inputs.append(self.node_of[n]) if n in self.node_of else None)
        return inputs

    def _concrete(self, arg: Any) -> Any:
        return self.trace.values[arg] if isinstance(arg, fx.Node) else arg

    def _add_constant(self, node: fx.Node, position: int, arg: Any, as_bias: bool) -> str:
        """A constant operand of an add or maximum, like the ONNX loader's: mean and RMS, an add's
        tensor's statistics under role "bias" (a scalar also gives its signed `value`)."""
        value = self._concrete(arg)
        tensor = (value.detach().double() if isinstance(value, torch.Tensor)
                  else torch.tensor(float(value), dtype=torch.float64))
        node_id = f"{node.name}.constant{position}"
        attrs = constant_moments(tensor)
        if tensor.numel() == 1:
            attrs["value"] = float(tensor)
        params: dict[str, ParamStats] = {}
        if as_bias and isinstance(arg, fx.Node) and "masked" not in attrs:  # a mask is no bias
            params["bias"] = param_stats(self.params.of_ancestors(arg, tuple(tensor.shape)) or arg.name, tensor)
        self._add(node_id, NodeSpec("constant", attrs=attrs, params=params), node_id, [], tuple(tensor.shape),
                  "constant")
        return node_id

    def _add_stages(self, node: fx.Node, stages: list[Stage], kind: str) -> None:
        produced: dict[str, str] = {}
        for stage in stages:
            node_id = f"{node.name}.{stage.suffix}" if stage.suffix else node.name
            inputs = [produced[i] if isinstance(i, str) else self.node_of[node.args[i]] for i in stage.inputs]
            shape = stage.shape if stage.suffix else shape_of(self.trace.values[node])
            self._add(node_id, stage.spec, node_id, inputs, shape, kind)
            produced[stage.suffix] = node_id

    def _add(self, node_id: str, spec: NodeSpec, name: str, inputs: list[str], shape: tuple[int, ...] | None,
             kind: str) -> None:
        params = {self._role(role, stats): stats for role, stats in spec.params.items()}
        add_node(self.graph, node_id, name=name, op=spec.op, source=kind, fn=spec.fn, attrs=spec.attrs,
                 params=params, out_shape=shape, inputs=inputs)

    def _role(self, role: str, stats: ParamStats) -> str:
        """A weight that is not a trainable parameter (a buffer, a literal) is kept apart:
        it has a gain but no gradient of its own, so it must not count as a weight layer."""
        return role if stats.name in self.params.names else "fixed_" + role


def graph_from_trace(module: torch.nn.Module, trace: TraceResult, stats_of: StatsOf = param_stats) -> nx.DiGraph:
    """The LayerGraph of a traced module (node ids = fx node names). `stats_of` takes a
    parameter's statistics (torch_meta passes one that knows meta tensors' recorded values)."""
    return GraphBuilder(module, trace, stats_of).build()
