"""torch.fx tracing that also runs the model on the example inputs while it traces.

Plain `torch.fx.symbolic_trace` stops at the first Python decision that reads a proxy: `if
x.dim() == 3`, `range(x.size(1))`, `if src.is_nested` (nn.TransformerEncoder's fast-path checks)
all raise. Those decisions depend only on tensor *metadata*, which is fixed for the audit (one
input shape), so this tracer evaluates every traced node on the real example values as it goes
and answers such questions from the concrete value: the graph is specialised to the example
shapes, exactly what the probe runs. A decision that reads tensor *values* (`if x.sum() > 0`)
is genuinely data-dependent: the tracer refuses it (TraceError) and the loader falls back to a
forward-hook graph marked partial.

Tracing happens on a deep copy in train mode, so BatchNorm running statistics of the user's
module are untouched and branches on `self.training` follow the probe's (train) semantics.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import operator
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.fx as fx
from torch.fx.proxy import Attribute, TraceError

_ORIGINAL_MODULE_METHODS = {"__call__": torch.nn.Module.__call__, "__getattr__": torch.nn.Module.__getattr__}

# Queries that read a tensor's metadata, not its values: decisions on them are shape-static.
METADATA_QUERIES = frozenset(
    {"size", "dim", "ndimension", "numel", "shape", "ndim", "dtype", "device", "is_nested", "is_cuda",
     "is_floating_point", "is_complex", "requires_grad", "layout", "is_sparse", "nelement", "element_size"}
)


@dataclass
class TraceResult:
    """A traced fx graph with the concrete value every node took on the example inputs."""

    graph: fx.Graph
    values: dict[fx.Node, Any]
    constants: dict[str, Any]  # get_attr targets the tracer created (tensor literals in forward)
    input_nodes: list[fx.Node]  # placeholders of the model inputs, in order


# Tensor attributes that describe rather than hold data: read from the concrete value, not traced.
TENSOR_METADATA = frozenset({"shape", "dtype", "device", "ndim", "layout", "is_cuda"})


class _ConcreteProxy(fx.Proxy):
    """A proxy that answers Python questions (len, int, bool, iteration) from its concrete value."""

    def __getattr__(self, k: str) -> Any:
        value = self.tracer.values.get(self.node)
        if k in TENSOR_METADATA and isinstance(value, torch.Tensor):
            return getattr(value, k)  # fixed for these inputs: torch.finfo(x.dtype), torch.ones(x.shape)
        return _ConcreteAttribute(self, k)

    def __len__(self) -> int:
        return self.tracer.length(self)

    def __int__(self) -> int:
        return int(self.tracer.concrete(self, "int()"))

    def __index__(self) -> int:
        return operator.index(self.tracer.concrete(self, "an index"))

    def __float__(self) -> float:
        return float(self.tracer.concrete(self, "float()"))


class _ConcreteAttribute(Attribute, _ConcreteProxy):
    """`x.shape` and friends: fx creates their node lazily, the concrete value comes with it."""


class ConcreteTracer(fx.Tracer):
    """An fx tracer that evaluates each node on example values while recording it."""

    def __init__(self, is_leaf: Callable[[torch.nn.Module], bool], inputs: dict[str, Any]):
        super().__init__()
        self._is_leaf = is_leaf
        self._inputs = inputs
        self.values: dict[fx.Node, Any] = {}
        self._data_dependent: dict[fx.Node, bool] = {}

    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        return self._is_leaf(m)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):  # type: ignore[no-untyped-def]
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        node = proxy.node
        if kind == "placeholder":
            self.values[node] = self._inputs[target] if target in self._inputs else (args[0] if args else None)
        else:
            self.values[node] = self._evaluate(node)
            if (
                kind != "get_attr"
                and target is not getattr
                and _is_plain_number(self.values[node])
                and not self.is_data_dependent(node)
            ):
                # a size taken from a shape (`n = x.shape[-1]`, `x.size(0)`) is a number for these
                # inputs; as a proxy, `torch.ones(n, n)` fails (the argument parser wants ints)
                return self.values[node]
        return proxy

    def _value(self, arg: Any) -> Any:
        if isinstance(arg, fx.Node):
            if arg not in self.values and arg.op == "get_attr":
                self.values[arg] = fetch(self.root, arg.target)
            return self.values[arg]
        return arg

    def _evaluate(self, node: fx.Node) -> Any:
        with _modules_unpatched():
            return self._run(node)

    def _run(self, node: fx.Node) -> Any:
        args = fx.node.map_aggregate(node.args, self._value)
        kwargs = fx.node.map_aggregate(node.kwargs, self._value)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        if node.op == "call_module":
            return fetch(self.root, node.target)(*args, **kwargs)
        return fetch(self.root, node.target)

    def concrete(self, proxy: fx.Proxy, use: str) -> Any:
        """The value behind a proxy for a Python-level decision; refuse data-dependent ones."""
        if self.is_data_dependent(proxy.node):
            raise TraceError(f"data-dependent control flow: {use} of a tensor value at {proxy.node.name}")
        return self.values[proxy.node]

    def is_data_dependent(self, node: fx.Node) -> bool:
        if node not in self._data_dependent:
            self._data_dependent[node] = self._compute_data_dependent(node)
        return self._data_dependent[node]

    def _compute_data_dependent(self, node: fx.Node) -> bool:
        if isinstance(self.values.get(node), torch.Tensor):
            return True
        if node.op == "call_method" and node.target in METADATA_QUERIES:
            return False
        if node.op == "call_function" and node.target is getattr and node.args[1] in METADATA_QUERIES:
            return False
        return any(self.is_data_dependent(n) for n in node.all_input_nodes)

    def length(self, proxy: fx.Proxy) -> int:
        """len() of a tensor is its first dimension (metadata); of anything else, its value's."""
        value = self.values[proxy.node]
        return len(value) if isinstance(value, torch.Tensor) else len(self.concrete(proxy, "len()"))

    def to_bool(self, obj: fx.Proxy) -> bool:
        return bool(self.concrete(obj, "a branch"))

    def iter(self, obj: fx.Proxy) -> Iterator:
        return iter([obj[i] for i in range(self.length(obj))])

    def keys(self, obj: fx.Proxy) -> Any:
        return self.concrete(obj, "keys()").keys()


def _is_plain_number(value: Any) -> bool:
    """An int, or a shape (a tuple of ints): what metadata arithmetic yields."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (
        isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


@contextlib.contextmanager
def _modules_unpatched() -> Iterator[None]:
    """fx patches Module.__call__/__getattr__ while tracing; real evaluation must bypass that."""
    patched = {name: getattr(torch.nn.Module, name) for name in _ORIGINAL_MODULE_METHODS}
    if all(patched[name] is method for name, method in _ORIGINAL_MODULE_METHODS.items()):
        yield  # not tracing: setting class attributes would only flush type caches (slow)
        return
    for name, method in _ORIGINAL_MODULE_METHODS.items():
        setattr(torch.nn.Module, name, method)
    try:
        yield
    finally:
        for name, method in patched.items():
            setattr(torch.nn.Module, name, method)


def fetch(root: torch.nn.Module, target: str) -> Any:
    """The attribute at a dotted path (a submodule, parameter, buffer or constant)."""
    with _modules_unpatched():
        obj: Any = root
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj


def trace_concrete(
    module: torch.nn.Module,
    example_inputs: tuple,
    is_leaf: Callable[[torch.nn.Module], bool],
    owner: torch.nn.Module | None = None,
) -> TraceResult:
    """Trace `module` on `example_inputs` (positional), keeping `is_leaf` modules as single calls.

    Forward parameters beyond the given inputs are fixed to their defaults (fx concrete_args),
    so optional masks left at None stay None instead of becoming proxies. `owner` is the module
    the graph's attribute paths are resolved against when it runs (default `module`); a path it
    lacks is a constant the trace keeps.
    """
    work = copy.deepcopy(module).train()
    names = [p.name for p in inspect.signature(work.forward).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(names) < len(example_inputs):
        raise TraceError("forward takes fewer named positional parameters than there are inputs")
    fixed = {n: p.default for n, p in inspect.signature(work.forward).parameters.items()
             if n not in names[: len(example_inputs)] and p.default is not inspect.Parameter.empty}
    tracer = ConcreteTracer(is_leaf, dict(zip(names, example_inputs)))
    with torch.no_grad():
        graph = tracer.trace(work, concrete_args=fixed or None)
    constants = {n.target: fetch(work, n.target) for n in graph.nodes
                 if n.op == "get_attr" and not has_path(owner or module, n.target)}
    for node in graph.nodes:
        if node.op == "get_attr" and node not in tracer.values:
            tracer.values[node] = fetch(work, node.target)
    input_nodes = [n for n in graph.nodes if n.op == "placeholder" and n.target in names[: len(example_inputs)]]
    return TraceResult(graph, tracer.values, constants, input_nodes)


def has_path(module: torch.nn.Module, target: str) -> bool:
    """Whether a dotted attribute path exists (tracer-made constants exist only on the copy)."""
    try:
        fetch(module, target)
    except AttributeError:
        return False
    return True


FUSED_RECURRENT_OPS = (torch.ops.aten.lstm.input, torch.ops.aten.gru.input, torch.ops.aten.rnn_tanh.input,
                       torch.ops.aten.rnn_relu.input)


def training_forward(module: torch.nn.Module) -> torch.nn.Module:
    """A copy in train mode: the forward the probe measures (BatchNorm on batch statistics)."""
    return copy.deepcopy(module).train()


def deterministic_training_forward(module: torch.nn.Module) -> torch.nn.Module:
    """A copy in eval mode but for its BatchNorm/InstanceNorm modules, which stay on batch statistics.

    The training forward of some models makes random structural choices in Python: wav2vec2's
    LayerDrop skips a layer `if torch.rand([]) < layerdrop`, its SpecAugment draws numpy masks and
    writes through them. No single trace is that forward (torch.export refuses the branch on a
    random value); without those choices (their expectation: every layer kept, nothing masked) it
    traces, and normalisation still reads the batch as in training.
    """
    work = copy.deepcopy(module).eval()
    for sub in work.modules():
        if isinstance(sub, torch.nn.modules.batchnorm._NormBase):
            sub.train()
    return work


def trace_exported(module: torch.nn.Module, example_inputs: tuple,
                   forward: Callable[[torch.nn.Module], torch.nn.Module] = training_forward) -> TraceResult:
    """Trace as PyTorch itself does: torch.export (non-strict), functionalised, then traced concretely.

    Non-strict export runs the model's own Python on fake tensors, so what a proxy cannot answer
    works: `torch.is_tensor(t)`, item and boolean-mask assignment, helper modules that are not
    submodules (transformers' rotary embeddings), `forward(self, *inputs)`. Functionalisation
    turns in-place writes into ops that return a value (`select_scatter`, `index_put`), so the
    written data stays connected. The ATen graph keeps parameter paths, so it runs against the
    user's module like an fx trace; every module is traced through (no leaves). `forward` makes
    the copy that is exported (its modes).
    """
    work = forward(module)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        # a model torch.export cannot trace makes it print the partial graph before it raises; the
        # failure itself reaches the caller, which falls back to another tracer
        program = torch.export.export(work, example_inputs, strict=False).run_decompositions({})
    exported = program.module()
    fused = sorted({str(node.target) for node in exported.graph.nodes if node.target in FUSED_RECURRENT_OPS})
    if fused:
        raise ValueError(f"torch.export flattens recurrent modules into {', '.join(fused)}, which the static "
                         "estimate reads only as the nn.RNN/LSTM/GRU module")
    for node in exported.graph.nodes:
        if node.target is torch.ops.aten.copy.default:
            node.target = copy_into
        elif node.target is torch.ops.aten.view.default:
            # the decomposed graph can view a tensor its eager forward made contiguous first
            # (transformers' Swin windows): reshape gives the same values, copying where it must
            node.target = torch.ops.aten.reshape.default
    exported.recompile()
    with warnings.catch_warnings():  # copying the exported module trips torch's own pytree deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        return trace_concrete(exported, example_inputs, lambda m: False, owner=module)


def copy_into(destination: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """What functionalisation's `aten.copy` computes (the source's values in the destination's
    dtype and shape), with a gradient: aten.copy has no autograd formula."""
    return source.to(destination.dtype).expand_as(destination).clone()
