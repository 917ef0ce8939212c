"""Execute an ONNX graph with torch ops, initializers as trainable parameters.

Why our own executor: gradaudit needs real autograd gradients on the weights of an ONNX file, in
train-mode semantics (BatchNorm on batch statistics even when exported in eval mode). onnxruntime
gives no gradients; onnx2torch imports torchvision at import time and is unmaintained;
onnx2pytorch fails on an exported TransformerEncoder (DESIGN.md).

The module is an interpreter over the node list, in the spirit of `torch.fx.Interpreter`:
- constant-only subgraphs (shape arithmetic, `ConstantOfShape` weights of old model-zoo graphs)
  are folded once at build time;
- float initializers, and folded float tensors feeding a weight slot, become `nn.Parameter`s
  named after the sanitised ONNX tensor name (`param_names` keeps the mapping);
- a failing node is re-raised with its name and op type;
- a graph attribute (an If branch, a Loop or Scan body) becomes a `Subgraph`, run by its op
  against the enclosing scope: the names it reads from outside are the step's `captures`, kept
  alive, folded and turned into parameters exactly like the step's own inputs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, Sequence

import onnx
import torch
from onnx import helper

from gradaudit.errors import UnsupportedOperatorError
from gradaudit.onnx_exec.external_data import load_confined
from gradaudit.onnx_exec.op_registry import OPS, OpContext, operand_role
from gradaudit.onnx_exec.ops_elementwise import widened
from gradaudit.onnx_exec.tensors import to_torch

DEFAULT_DOMAINS = ("", "ai.onnx")


# Outputs that carry no gradient: indices, counts, masks and shapes (every output of these ops,
# or the listed output slots), and steps whose gradient is zero almost everywhere.
NO_GRADIENT_OPS = frozenset({
    "ArgMax", "ArgMin", "NonMaxSuppression", "Unique", "NonZero", "Shape", "Size", "Equal", "Less", "LessOrEqual",
    "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf", "Floor", "Ceil", "Round", "Sign",
    "OptionalHasElement",
})  # fmt: skip
NO_GRADIENT_SLOTS = {"TopK": {1}, "MaxPool": {1}, "Dropout": {1}}
SHAPE_READERS = frozenset({"Shape", "Size"})  # their outputs say nothing of the values before them
FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
)


class OnnxExecutionError(RuntimeError):
    """A node failed while running; the message names the node and its op type."""


@dataclass(frozen=True)
class Step:
    """One ONNX node left to run at call time (not folded)."""

    name: str
    op_type: str
    inputs: tuple[str, ...]  # '' for an omitted optional input
    outputs: tuple[str, ...]
    attrs: dict[str, Any]
    captures: tuple[str, ...] = ()  # outer-scope names its subgraphs read

    @property
    def node_id(self) -> str:
        """The LayerGraph node id: the node's first output tensor name."""
        return self.outputs[0]


def _attr_value(attr: onnx.AttributeProto, node: onnx.NodeProto, opset: int, train_mode: bool) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, onnx.GraphProto):
        return Subgraph(value, opset, train_mode)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return to_torch(value, f"the {attr.name!r} tensor of node {node.name or node.output[0]!r}")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value


def make_step(node: onnx.NodeProto, opset: int, train_mode: bool) -> Step:
    attrs = {a.name: _attr_value(a, node, opset, train_mode) for a in node.attribute}
    captures = tuple(dict.fromkeys(n for v in attrs.values() if isinstance(v, Subgraph) for n in v.captures))
    return Step(node.name or node.output[0], op_key(node), tuple(node.input), tuple(node.output), attrs, captures)


def run_step(step: Step, args: list[Any], ctx: OpContext) -> tuple[Any, ...]:
    """Run one step on its operand values; a failure is re-raised naming the node."""
    if step.op_type not in OPS:
        raise UnsupportedOperatorError([step.op_type])
    while args and args[-1] is None:
        args.pop()
    try:
        result = OPS[step.op_type].fn(args, step.attrs, ctx)
    except UnsupportedOperatorError:
        raise
    except Exception as exc:
        raise OnnxExecutionError(f"ONNX node {step.name!r} ({step.op_type}): {exc}") from exc
    return result if isinstance(result, tuple) else (result,)


class Subgraph:
    """A graph attribute compiled once: its nodes run at call time against the enclosing scope,
    its initializers are constants (a body's own tensors, not the model's weights)."""

    def __init__(self, graph: onnx.GraphProto, opset: int, train_mode: bool):
        self.opset, self.train_mode = opset, train_mode
        self.input_names = [i.name for i in graph.input]
        self.output_names = [o.name for o in graph.output]
        self.constants = {t.name: to_torch(t, f"subgraph initializer {t.name!r}") for t in graph.initializer}
        self.steps = [make_step(node, opset, train_mode) for node in graph.node]
        self.unsupported = sorted(
            {s.op_type for s in self.steps if s.op_type not in OPS}
            | {op for s in self.steps for v in s.attrs.values() if isinstance(v, Subgraph) for op in v.unsupported}
        )
        defined = set(self.input_names) | set(self.constants) | {o for s in self.steps for o in s.outputs}
        read = [n for s in self.steps for n in (*s.inputs, *s.captures) if n]
        self.captures = tuple(dict.fromkeys(n for n in read if n not in defined))

    def __call__(self, inputs: Sequence[Any], scope: Mapping[str, Any]) -> list[Any]:
        """The graph outputs for these inputs, outer names read from `scope`."""
        env: dict[str, Any] = {n: scope[n] for n in self.captures}
        env.update(self.constants)
        env.update(zip(self.input_names, inputs))
        for step in self.steps:
            ctx = OpContext(
                self.opset, self.train_mode, len(step.outputs), len(step.outputs), {n: env[n] for n in step.captures}
            )
            outs = run_step(step, [env.get(n) for n in step.inputs], ctx)  # an empty optional reads None
            env.update((n, t) for n, t in zip(step.outputs, outs) if n and t is not None)
        return [env[n] for n in self.output_names]


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain opset the model imports."""
    return max((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), default=1)


def op_key(node: onnx.NodeProto) -> str:
    """Registry key: the op type, or `domain:op` for custom domains (never registered)."""
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}:{node.op_type}"


def sanitise(name: str) -> str:
    """A parameter/buffer name torch accepts and a user can still recognise."""
    return re.sub(r"\W", "_", name) or "_"


class OnnxModule(torch.nn.Module):
    """An ONNX graph as a torch module: `forward(*inputs)` returns the graph outputs."""

    def __init__(
        self, model: onnx.ModelProto, *, train_mode: bool = True, weights: dict[str, torch.Tensor] | None = None
    ):
        """`weights` holds ready tensors for some initializers (gradaudit.loaders.onnx_weights maps
        them from the file); the others are converted from the protobuf."""
        super().__init__()
        graph = model.graph
        self.opset = opset_of(model)
        self.train_mode = train_mode
        weights = weights or {}
        inits = {
            t.name: weights[t.name] if t.name in weights else to_torch(t, f"initializer {t.name!r}")
            for t in graph.initializer
        }
        self.input_names = [i.name for i in graph.input if i.name not in inits]
        self.output_names = [o.name for o in graph.output]
        self.param_names: dict[str, str] = {}  # onnx tensor name -> qualified parameter name
        self.buffer_names: dict[str, str] = {}  # onnx tensor name -> buffer name
        nodes = [make_step(node, self.opset, train_mode) for node in graph.node]
        statistics = _statistics_only(nodes)
        trainable = _learnable_initializers(nodes, inits, statistics)
        # the file's order, not the set's (which follows PYTHONHASHSEED): same seed, same numbers
        learnable = {n: t for n, t in inits.items() if n in trainable}
        static = {n: t for n, t in inits.items() if n not in learnable}
        self._used_outputs: dict[str, int] = {}  # folding runs every declared output
        self.unsupported: list[str] = []
        self.steps = self._fold(nodes, static, learnable, statistics)
        read = {n for step in self.steps for n in (*step.inputs, *step.captures)} | set(self.output_names)
        for name, tensor in learnable.items():
            if name in read:
                self._keep(name, tensor, parameter=True)
        self._keep_folded(static)
        floats = {i.name for i in graph.input if i.type.tensor_type.elem_type in FLOAT_TYPES}
        self.loss_outputs = gradient_outputs(self.steps, self.output_names, set(self.param_names) | floats)
        self._last_use = _last_uses(self.steps, set(self.output_names) | set(self.loss_outputs))
        self._used_outputs = _used_outputs(self.steps, set(self.output_names))

    def _fold(
        self,
        nodes: list[Step],
        static: dict[str, torch.Tensor],
        learnable: dict[str, torch.Tensor],
        statistics: set[str],
    ) -> list[Step]:
        """Evaluate constant-only nodes now; return the nodes that must run at call time.

        An Identity of a learned initializer becomes a parameter of its own: the torch exporter
        de-duplicates equal initializers (the deep-copied layers of nn.TransformerEncoder), and
        the layers it merged were separate parameters in the model being audited. A copy read
        only as a statistic (a running_var merged with a gamma) is a constant instead.
        """
        steps: list[Step] = []
        unsupported: set[str] = set()
        for step in nodes:
            unsupported |= {step.op_type} - set(OPS)
            unsupported |= {op for v in step.attrs.values() if isinstance(v, Subgraph) for op in v.unsupported}
            if step.op_type == "Identity" and step.inputs[0] in learnable:
                copies = static if step.outputs[0] in statistics else learnable
                copies[step.outputs[0]] = learnable[step.inputs[0]].clone()
                continue
            foldable = step.op_type in OPS and all(not n or n in static for n in (*step.inputs, *step.captures))
            if foldable:
                try:
                    with torch.no_grad():
                        outs = self.call_step(step, [static[n] if n else None for n in step.inputs], static)
                except OnnxExecutionError:  # left to run (and fail, named) at call time
                    foldable = False
                else:
                    foldable = all(isinstance(t, torch.Tensor) for t in outs)  # sequences stay steps
                if foldable:
                    static.update({n: t for n, t in zip(step.outputs, outs) if n and t is not None})
            if not foldable:
                steps.append(step)
        self.unsupported = sorted(unsupported)
        return steps

    def _keep_folded(self, static: dict[str, torch.Tensor]) -> None:
        """Register the constants the remaining steps read: learned ones as parameters."""
        learned: set[str] = set()
        fixed = {n for n in self.output_names if n in static}
        for step in self.steps:
            spec = OPS.get(step.op_type)
            for slot, name in enumerate(step.inputs):
                if not name or name not in static:
                    continue
                tensor = static[name]
                is_weight = operand_role(spec, slot, tensor) == "weight"
                (learned if tensor.is_floating_point() and is_weight else fixed).add(name)
            fixed.update(n for n in step.captures if n in static)
        for name in sorted(learned):
            self._keep(name, static[name], parameter=True)
        for name in sorted(fixed - learned):
            self._keep(name, static[name], parameter=False)

    def _keep(self, onnx_name: str, tensor: torch.Tensor, *, parameter: bool) -> None:
        base = sanitise(onnx_name)
        attr, k = base, 1
        while hasattr(self, attr):
            attr, k = f"{base}_{k}", k + 1
        if parameter:
            self.register_parameter(attr, torch.nn.Parameter(tensor.detach()))
            self.param_names[onnx_name] = attr
        else:
            self.register_buffer(attr, tensor.detach())
            self.buffer_names[onnx_name] = attr

    def call_step(self, step: Step, args: list[Any], env: Mapping[str, Any]) -> tuple[Any, ...]:
        """Run one step on its operand values (`env` supplies what its subgraphs capture; a
        name it lacks fails inside the body, named)."""
        n_outputs = len(step.outputs)
        scope = {n: env.get(n) for n in step.captures}
        return run_step(
            step,
            args,
            OpContext(self.opset, self.train_mode, n_outputs, self._used_outputs.get(step.node_id, n_outputs), scope),
        )

    def run(
        self,
        inputs: Sequence[torch.Tensor],
        capture: Collection[str] = (),
        observe: Callable[[str, Any], None] | None = None,
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """Run the graph; return (outputs, {name: tensor} for the requested node ids and tensors).

        `observe(name, value)` sees every produced value, a tensor or a sequence's tuple (shape tracing).
        """
        if self.unsupported:
            raise UnsupportedOperatorError(self.unsupported)
        if len(inputs) != len(self.input_names):
            raise ValueError(f"the ONNX graph takes {len(self.input_names)} input(s), got {len(inputs)}")
        env: dict[str, Any] = {n: getattr(self, a) for n, a in self.param_names.items()}
        env.update({n: getattr(self, a) for n, a in self.buffer_names.items()})
        env.update(zip(self.input_names, map(widened, inputs)))
        wanted = set(capture)
        captured = {n: env[n] for n in self.input_names if n in wanted}
        for index, step in enumerate(self.steps):
            outs = self.call_step(step, [env.get(n) for n in step.inputs], env)  # an empty optional reads None
            for name, tensor in zip(step.outputs, outs):
                if name and tensor is not None:
                    env[name] = tensor
                    if observe is not None:
                        observe(name, tensor)
                    if name in wanted:
                        captured[name] = tensor
            for name in self._last_use.get(index, ()):
                env.pop(name, None)
        outputs = tuple(env[n] for n in self.output_names)
        return (outputs[0] if len(outputs) == 1 else outputs), captured

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.run(inputs)[0]


def _statistics_only(steps: list[Step]) -> set[str]:
    """Tensors every reader takes as statistics (BN running mean/var), never as a learned value.

    Identity reads do not count: an Identity's output is judged by its own readers. The
    exporter merges equal initializers (a BN gamma and a running_var are both ones at init) and
    hands out the copies through Identity nodes.
    """
    stat_only: dict[str, bool] = {}
    for step in steps:
        if step.op_type == "Identity":
            continue
        spec = OPS.get(step.op_type)
        for slot, name in enumerate(step.inputs):
            if name:
                stat_only[name] = stat_only.get(name, True) and spec is not None and slot in spec.stat_slots
        stat_only.update(dict.fromkeys(step.captures, False))
    return {name for name, only in stat_only.items() if only}


def _learnable_initializers(steps: list[Step], inits: dict[str, torch.Tensor], statistics: set[str]) -> set[str]:
    """Float initializers some node reads as a value rather than as a statistic or a setting
    (`operand_role`): the dynamo exporter stores an RMSNorm's Pow exponent 2.0 as an
    initializer, and trained it took NaN gradients from every negative input."""
    read: set[str] = set()
    for step in steps:
        if step.op_type == "Identity":
            continue
        spec = OPS.get(step.op_type)
        for slot, name in enumerate(step.inputs):
            if name in inits and operand_role(spec, slot, inits[name]) != "setting":
                read.add(name)
        read.update(n for n in step.captures if n in inits and inits[n].numel() > 1)  # a body's weights
    return {n for n, t in inits.items() if t.is_floating_point() and n in read and n not in statistics}


def _carries_gradient(step: Step, slot: int) -> bool:
    if step.op_type in NO_GRADIENT_OPS or slot in NO_GRADIENT_SLOTS.get(step.op_type, ()):
        return False
    return step.op_type != "Cast" or step.attrs.get("to") in FLOAT_TYPES


def gradient_outputs(steps: list[Step], outputs: Sequence[str], sources: set[str]) -> tuple[str, ...]:
    """The tensors a loss reads so gradients reach the weights: every graph output a gradient
    can flow back from, and for each one that cannot (indices of a NonMaxSuppression, an ArgMax,
    a TopK's indices), the last tensors on its way that still can: the differentiable inputs of
    the steps that cut the gradient (the boxes and scores before post-processing). An output
    computed from shapes alone adds nothing."""
    carrying = set(sources)
    producer: dict[str, Step] = {}
    for step in steps:
        fed = any(n in carrying for n in (*step.inputs, *step.captures))
        for slot, name in enumerate(step.outputs):
            producer[name] = step
            if fed and _carries_gradient(step, slot):
                carrying.add(name)
    chosen = [n for n in outputs if n in carrying]
    pending, seen = [n for n in outputs if n not in carrying], set()
    while pending:
        step = producer.get(pending.pop())
        if step is None or step.node_id in seen or step.op_type in SHAPE_READERS:
            continue
        seen.add(step.node_id)
        for name in (*step.inputs, *step.captures):
            if name in carrying:
                chosen.append(name)
            elif name:
                pending.append(name)
    return tuple(dict.fromkeys(chosen))


def _used_outputs(steps: list[Step], keep: set[str]) -> dict[str, int]:
    """Node id -> how many leading outputs a later step or the graph output reads."""
    read = keep | {name for step in steps for name in (*step.inputs, *step.captures)}
    return {step.node_id: 1 + max((i for i, n in enumerate(step.outputs) if n in read), default=0) for step in steps}


def _last_uses(steps: list[Step], keep: set[str]) -> dict[int, list[str]]:
    """Step index -> tensors no later step reads, so call-time memory stays bounded."""
    last: dict[str, int] = {}
    for index, step in enumerate(steps):
        for name in (*step.inputs, *step.captures):
            if name:
                last[name] = index
    freed: dict[int, list[str]] = {}
    for name, index in last.items():
        if name not in keep:
            freed.setdefault(index, []).append(name)
    return freed


def load_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """A ModelProto as given, or read from a path (external data confined to its folder)."""
    return model if isinstance(model, onnx.ModelProto) else load_confined(os.fspath(model))


def onnx_to_torch(model: str | os.PathLike | onnx.ModelProto, *, train_mode: bool = True) -> OnnxModule:
    """Build the torch module of an ONNX model; UnsupportedOperatorError lists unknown op types."""
    module = OnnxModule(load_model(model), train_mode=train_mode)
    if module.unsupported:
        raise UnsupportedOperatorError(module.unsupported)
    return module


def run_onnx(
    module: OnnxModule, inputs: Sequence[torch.Tensor], capture: Collection[str]
) -> tuple[Any, dict[str, torch.Tensor]]:
    """The ModelHandle runner of ONNX models: the outputs the loss reads (`loss_outputs`: the
    graph outputs unless some carry no gradient) and the captured node outputs."""
    if module.loss_outputs == tuple(module.output_names):
        return module.run(inputs, capture)
    outputs, captured = module.run(inputs, set(capture) | set(module.loss_outputs))
    by_name = dict(zip(module.output_names, outputs if isinstance(outputs, tuple) else (outputs,)))
    values = tuple(by_name[n] if n in by_name else captured[n] for n in module.loss_outputs)
    return (values[0] if len(values) == 1 else values), captured
