"""Load an ONNX file into a ModelHandle: the LayerGraph, the torch executor and its inputs.

Steps: read and check the file (every failure is one InputError line), map the weights out of
the file (`gradaudit.loaders.onnx_weights`), build the executor (`gradaudit.onnx_exec`), derive
the input specs, run the executor once under `no_grad` on synthetic inputs to learn every
tensor's real shape (shape inference alone misses shapes that depend on values; a static-only load
runs the data path on the meta device instead, `meta_trace`), then map each data-path node onto
the LayerGraph vocabulary
(`gradaudit.loaders.onnx_layer_kinds`). Shape arithmetic (int tensors) and weight-producing constant
subgraphs are not nodes: the graph holds the data path only. A model with operators the executor
lacks still gets its static graph; only the probe becomes unavailable.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import networkx as nx
import onnx
import torch

from gradaudit.errors import InputError, UnsupportedOperatorError
from gradaudit.graph import add_node, new_graph
from gradaudit.limits import default_max_memory, out_of_memory, regular_file_size
from gradaudit.loaders.onnx_folded_norms import restore_folded_batch_norms
from gradaudit.loaders.onnx_layer_kinds import QUANTISED_DATA_OPS, Kind, NodeView, Operand, node_kind
from gradaudit.loaders.onnx_patterns import decomposed_layers
from gradaudit.loaders.onnx_sparse import densify
from gradaudit.loaders.onnx_validate import check_memory, validate
from gradaudit.loaders.onnx_weights import CAN_MAP, large_initializers, mapped_initializers, read_stripped
from gradaudit.model import InputSpec, ModelHandle
from gradaudit.onnx_exec import OnnxExecutionError, OnnxModule, Step, run_onnx
from gradaudit.onnx_exec.executor import op_key
from gradaudit.onnx_exec.external_data import load_external_data
from gradaudit.onnx_exec.ops_elementwise import ONNX_TO_TORCH_DTYPE
from gradaudit.weight_stats import constant_moments

SYNTHETIC_SEED = 0
Shapes = dict[str, tuple[tuple[int, ...], torch.dtype]]


def read_model(path: str, max_memory: int | None = None) -> tuple[onnx.ModelProto, dict[str, torch.Tensor]]:
    """Read and check an ONNX file; InputError with one line for anything unusable.

    Returns the model, its sparse tensors made dense (`gradaudit.loaders.onnx_sparse`, each
    under `max_memory`), and its large initializers as tensors over the file's bytes, which the
    ModelProto does not hold (gradaudit.loaders.onnx_weights)."""
    if not os.path.exists(path):
        raise InputError(f"ONNX file not found: {path}")
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory, not an ONNX file")
    if regular_file_size(path, path) == 0:
        raise InputError(f"{path} is an empty file, not an ONNX model")
    cap = default_max_memory() if max_memory is None else max_memory
    try:
        model, model_map, stripped = read_stripped(path, cap)
    except InputError:
        raise
    except Exception as exc:  # protobuf DecodeError and friends: the bytes are not a model
        raise InputError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {_first_line(exc)})") from exc
    load_external_data(model, path, leave=large_initializers(model) if CAN_MAP else (), cap=cap)
    densify(model, cap)
    validate(model, path, sized=stripped.keys())
    weights = mapped_initializers(model, path, model_map, stripped)
    try:
        onnx.checker.check_model(weightless(model))
    except Exception as exc:
        raise InputError(f"{path} fails the ONNX checker: {_first_line(exc)}") from exc
    return model, weights


def weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its large initializers (onnx_weights.LARGE_ELEMENTS) turned into declared
    graph inputs of the same type and shape: what onnx.checker and shape inference need. Both
    serialise the whole model, which on a GPT-sized file took 15x as long as reading it, and
    neither needs a weight's values (its size is checked where it is mapped or by onnx_validate)."""
    graph = model.graph
    large = large_initializers(model)
    if not large:
        return model
    light = onnx.ModelProto()
    _copy_fields(model, light, skip="graph")
    _copy_fields(graph, light.graph, skip="initializer")
    declared = {value.name for value in graph.input}
    for tensor in graph.initializer:
        if tensor.name not in large:
            light.graph.initializer.append(tensor)
        elif tensor.name not in declared:
            light.graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    return light


def _copy_fields(source, target, skip: str) -> None:
    """Copy every set protobuf field of `source` but one into `target` (messages by value)."""
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if hasattr(value, "extend"):  # a repeated field (the descriptor API differs across protobufs)
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _torch_dtype_name(elem_type: int) -> str:
    dtype = ONNX_TO_TORCH_DTYPE.get(elem_type, torch.float32)
    return str(dtype).removeprefix("torch.")


def input_specs(model: onnx.ModelProto, input_shapes: list[tuple[int, ...]] | None, batch: int) -> list[InputSpec]:
    """Specs of the real inputs: a symbolic batch dim gets `batch`, other symbolic dims need shapes.

    Integer inputs get their id range from the executor later (`_with_table_size`)."""
    inits = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    if input_shapes is not None and len(input_shapes) != len(real):
        raise InputError(
            f"the model has {len(real)} input(s) ({', '.join(i.name for i in real)}), "
            f"got {len(input_shapes)} input shape(s)"
        )
    specs = []
    for index, value_info in enumerate(real):
        tensor_type = value_info.type.tensor_type
        declared = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim]
        given = input_shapes[index] if input_shapes is not None else None
        shape = _resolve_shape(value_info.name, declared, tensor_type.HasField("shape"), given, batch)
        specs.append(InputSpec(value_info.name, shape, _torch_dtype_name(tensor_type.elem_type)))
    return specs


def _with_table_size(spec: InputSpec, module: OnnxModule) -> InputSpec:
    """An integer input draws ids below the size of the table it indexes."""
    return spec if spec.is_float else dataclasses.replace(spec, high=_table_size(module, spec.name))


def _resolve_shape(
    name: str, declared: list[int | None], has_shape: bool, given: Sequence[int] | None, batch: int
) -> tuple[int, ...]:
    if given is not None:
        given = tuple(int(d) for d in given)
        if has_shape and len(given) != len(declared):
            raise InputError(f"input {name!r} has rank {len(declared)}, the given shape {given} has rank {len(given)}")
        for axis, (fixed, value) in enumerate(zip(declared, given)):
            if fixed is not None and fixed != value:
                raise InputError(f"input {name!r} has fixed dim {axis} = {fixed}, the given shape {given} says {value}")
        return given
    if not has_shape:
        raise InputError(f"input {name!r} has no declared shape; pass its shape (--input-shape)")
    shape = []
    for axis, fixed in enumerate(declared):
        if fixed is None and axis > 0:
            raise InputError(f"input {name!r} has a symbolic dim {axis}; pass its shape (--input-shape)")
        shape.append(batch if fixed is None else fixed)
    return tuple(shape)


# Ops that pass integer ids on unchanged in value (so the table bound still applies).
ID_PRESERVING_OPS = frozenset({"Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose"})


def id_tensors(module: OnnxModule, input_names: Sequence[str]) -> set[str]:
    """The integer inputs and the tensors that carry their ids on unchanged (casts, reshapes)."""
    ids = set(input_names)
    for step in module.steps:
        if step.op_type in ID_PRESERVING_OPS and step.inputs and step.inputs[0] in ids:
            ids.update(n for n in step.outputs if n)
    return ids


def _table_size(module: OnnxModule, input_name: str) -> int | None:
    """Rows of the constant table an integer input indexes (Gather), directly or after casts
    and reshapes."""
    ids = id_tensors(module, [input_name])
    for step in module.steps:
        if step.op_type == "Gather" and len(step.inputs) > 1 and step.inputs[1] in ids:
            table = _constant(module, step.inputs[0])
            if table is not None:
                return int(table.shape[step.attrs.get("axis", 0) % table.dim()])
    return None


def _constant(module: OnnxModule, name: str) -> torch.Tensor | None:
    attr = module.param_names.get(name) or module.buffer_names.get(name)
    return getattr(module, attr) if attr else None


def synthetic_inputs(specs: Sequence[InputSpec], seed: int = SYNTHETIC_SEED) -> tuple[torch.Tensor, ...]:
    """N(0, 1) floats and in-range integers, seeded."""
    gen = torch.Generator().manual_seed(seed)
    tensors = []
    for spec in specs:
        dtype = getattr(torch, spec.dtype)
        if spec.is_float:
            tensors.append(torch.randn(spec.shape, generator=gen).to(dtype))
        else:
            high = spec.high or 2
            tensors.append(torch.randint(0, high, spec.shape, generator=gen).to(dtype))
    return tuple(tensors)


# Ops whose output depends on an input's shape only, not on its values.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})


def input_dependent(inputs: Sequence[str], nodes: Sequence[onnx.NodeProto]) -> set[str]:
    """Tensors whose value depends on the input values (the rest are weights or constants for
    the given input shapes: a 1/sqrt(head_dim) computed from Shape is a constant here)."""
    dependent = set(inputs)
    for node in nodes:
        if op_key(node) not in SHAPE_ONLY_OPS and any(n in dependent for n in node.input if n):
            dependent.update(n for n in node.output if n)
    return dependent


def trace(
    module: OnnxModule, inputs: Sequence[torch.Tensor], dependent: set[str]
) -> tuple[Shapes, dict[str, torch.Tensor]]:
    """Run once without gradients: every tensor's shape and dtype, input-free tensors' values.
    A sequence (SplitToSequence's tuple of tensors) has no one shape and is not recorded."""
    shapes: Shapes = {name: (tuple(t.shape), t.dtype) for name, t in zip(module.input_names, inputs)}
    values: dict[str, torch.Tensor] = {}

    def observe(name: str, tensor: Any) -> None:
        if not isinstance(tensor, torch.Tensor):
            return
        shapes[name] = (tuple(tensor.shape), tensor.dtype)
        if name not in dependent:
            values[name] = tensor

    with torch.no_grad():
        module.run(inputs, observe=observe)
    return shapes, values


def meta_trace(module: OnnxModule, specs: Sequence[InputSpec], dependent: set[str], declared: Shapes
               ) -> tuple[Shapes, dict[str, torch.Tensor]] | None:
    """`trace` without the data path's arithmetic, for a static-only load: every shape and every
    input-independent value. Input-independent steps (shape arithmetic, weight views) run for
    real. An input-dependent step whose outputs shape inference `declared` yields meta-device
    stand-ins of those shapes; one it left unknown (a Reshape to a computed shape) runs with meta
    stand-ins for its floating-point operands. None when such a kernel needs values the meta
    device does not have (NonZero, a constant index into a data tensor): the caller then runs
    `trace`. (Running every step on meta would be exact too, but meta kernels cost about a
    millisecond each in Python, more than a ResNet's file takes to parse.)"""
    env: dict[str, Any] = {n: getattr(module, a) for n, a in module.param_names.items()}
    env.update({n: getattr(module, a) for n, a in module.buffer_names.items()})
    env.update({spec.name: torch.empty(spec.shape, dtype=getattr(torch, spec.dtype), device="meta") for spec in specs})
    shapes: Shapes = {spec.name: (spec.shape, getattr(torch, spec.dtype)) for spec in specs}
    values: dict[str, torch.Tensor] = {}

    def on_meta(value: Any) -> Any:
        return value.to("meta") if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    for step in module.steps:
        outputs = [n for n in step.outputs if n]
        if outputs and all(n in dependent and n in declared for n in outputs):
            produced = tuple(
                torch.empty(declared[n][0], dtype=declared[n][1], device="meta") if n else None for n in step.outputs
            )
        else:
            args = [env.get(n) if n else None for n in step.inputs]
            if any(n in dependent for n in outputs):
                args = [on_meta(a) for a in args]
            try:
                with torch.no_grad():
                    produced = module.call_step(step, args, env)
            except (OnnxExecutionError, UnsupportedOperatorError) as exc:
                if out_of_memory(exc):
                    raise
                return None
        for name, tensor in zip(step.outputs, produced):
            if name and tensor is not None:
                env[name] = tensor  # a sequence too: SequenceAt reads it
            if name and isinstance(tensor, torch.Tensor):
                shapes[name] = (tuple(tensor.shape), tensor.dtype)
                if name not in dependent:
                    values[name] = tensor
    return shapes, values


def inferred_shapes(model: onnx.ModelProto, specs: Sequence[InputSpec]) -> Shapes:
    """Shapes from ONNX shape inference on the concrete input shapes: what the memory cap checks
    before anything runs, and the graph's shapes when the model cannot be executed."""
    concrete = onnx.ModelProto()
    concrete.CopyFrom(weightless(model))
    by_name = {spec.name: spec.shape for spec in specs}
    for value_info in concrete.graph.input:
        if value_info.name in by_name:
            dims = value_info.type.tensor_type.shape.dim
            del dims[:]
            for size in by_name[value_info.name]:
                dims.add().dim_value = size
    try:
        inferred = onnx.shape_inference.infer_shapes(concrete)
    except Exception:  # inference is best effort here; the graph still builds without shapes
        inferred = concrete
    shapes: Shapes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        tensor_type = info.type.tensor_type
        dims = [d.dim_value for d in tensor_type.shape.dim]
        if dims and all(d > 0 for d in dims):
            shapes[info.name] = (tuple(dims), ONNX_TO_TORCH_DTYPE.get(tensor_type.elem_type, torch.float32))
    return shapes


def _param_origins(module: OnnxModule, dependent: set[str]) -> dict[str, str]:
    """Tensor name -> qualified parameter it is a reshaped/transposed/cast view of.

    A view may read its parameter more than once: the legacy exporter reorders an LSTM's gates
    as Concat(Slice(W), Slice(W), Slice(W)). Such a rearrangement has the parameter's elements,
    so the parameter's gradient has the layer weight's norm and numel: the same grad RMS."""
    origins = dict(module.param_names)
    for step in module.steps:
        sources = {origins[n] for n in step.inputs if n in origins}
        if step.outputs[0] not in dependent and len(sources) == 1:
            origins[step.outputs[0]] = sources.pop()
    return origins


class _GraphBuilder:
    """Maps the executor's steps onto a LayerGraph, node by node."""

    def __init__(self, module: OnnxModule, specs: Sequence[InputSpec], shapes: Shapes, values: dict[str, torch.Tensor],
                 dependent: set[str]):
        self.module = module
        self.shapes = shapes
        self.values = values
        self.dependent = dependent
        self.origins = _param_origins(module, self.dependent)
        self.graph = new_graph("onnx")
        self.producer: dict[str, str] = {}  # tensor name -> LayerGraph node id
        self.step_of = {name: step for step in module.steps for name in step.outputs if name}
        self.fused = decomposed_layers(module.steps, self._constant_value)
        self.absorbed = set().union(*(layer.absorbed for layer in self.fused.values()))
        self.ids = id_tensors(module, [spec.name for spec in specs if not spec.is_float])
        for spec in specs:
            add_node(self.graph, spec.name, name=spec.name, op="input", source="input", out_shape=spec.shape)
            self.graph.graph["inputs"].append(spec.name)
            self.producer[spec.name] = spec.name

    def build(self) -> nx.DiGraph:
        """Add every data-path step; ops without a mapping are 'unknown' nodes, which the static
        estimate reports as partial itself (the graph still represents them)."""
        for step in self.module.steps:
            if step.node_id not in self.absorbed and self._on_data_path(step):
                self._add_step(step)
        used = self.module.loss_outputs  # what the runner returns: the outputs a gradient flows back from
        kept = [slot for slot, name in enumerate(used) if name in self.producer]
        self.graph.graph["outputs"] = [self.producer[used[slot]] for slot in kept]
        if len(kept) < len(used):  # integer outputs off the data path (NonMaxSuppression's indices)
            self.graph.graph["output_slots"] = kept
        cut = [n for n in self.module.output_names if n not in used] + [
            used[s] for s in range(len(used)) if s not in kept
        ]
        if cut:  # the probe's loss reads the last tensors a gradient flows back from instead
            self.graph.graph["gradient_cut"] = {"used": [used[slot] for slot in kept], "cut": cut}
        return self.graph

    def _on_data_path(self, step: Step) -> bool:
        """Float tensors computed from a data-path tensor, and token ids on their way to an
        embedding (`ids.view(-1, n)` in GPT-2); int shape arithmetic is left out. A control-flow
        step reads what its bodies capture from the outer scope as well."""
        layer = self.fused.get(step.node_id)
        reads = [layer.source] if layer is not None else [n for n in (*step.inputs, *step.captures) if n]
        if not any(n in self.producer for n in reads):
            return False
        shape = self.shapes.get(step.outputs[0])
        quantised = step.op_type in QUANTISED_DATA_OPS  # the data in integer form (onnx_layer_kinds)
        return shape is None or shape[1].is_floating_point or quantised or step.outputs[0] in self.ids

    def _constant_value(self, name: str) -> torch.Tensor | None:
        """The value of an input-independent tensor: a parameter, buffer or traced constant."""
        value = _constant(self.module, name)
        if value is None:
            value = self.values.get(name)
        return value.detach() if value is not None else None

    def _operand(self, name: str) -> Operand:
        if not name:
            return Operand("")
        shape = self.shapes.get(name, (None, None))[0]
        if name in self.producer:
            return Operand(name, source=self.producer[name], shape=shape)
        value = self._constant_value(name)
        return Operand(
            name, value=value, param=self.origins.get(name), shape=tuple(value.shape) if value is not None else shape
        )

    def _kind(
        self, step: Step, operands: list[Operand], out_shape: tuple[int, ...] | None
    ) -> tuple[Kind, list[Operand]]:
        """The node's kind and the operands it reads (a fused LayerNorm reads its source only)."""
        layer = self.fused.get(step.node_id)
        if step.op_type == "Where" and (branch := self._function_branch(operands)) is not None:
            return Kind("identity"), [branch]
        if step.op_type == "Exp" and (pair := self._gap_to_max(step.inputs[0])) is not None:
            return Kind("exp_gap"), pair
        if layer is None:
            return node_kind(NodeView(step.op_type, step.attrs, operands, out_shape, self.module.opset)), operands
        attrs = dict(layer.attrs)
        if out_shape and "axis" in attrs:
            attrs["normalized_shape"] = tuple(out_shape[attrs["axis"] % len(out_shape) :])
        return Kind(layer.op, layer.fn, attrs), [self._operand(layer.source)]

    def _function_branch(self, operands: list[Operand]) -> Operand | None:
        """Where(condition, x, f(x)) with f(x) computed directly from x is f's threshold switch to
        its asymptote (softplus, ELU or GELU as the dynamo exporter decomposes them, `x > 20`
        picking x): the output is f(x) almost everywhere and the two agree where it is not."""
        if len(operands) != 3 or operands[1].source is None or operands[2].source is None:
            return None
        a, b = operands[1], operands[2]
        if self.graph.has_edge(a.source, b.source):
            return b
        if self.graph.has_edge(b.source, a.source):
            return a
        return None

    def _same_value(self, a: str, b: str) -> bool:
        """One tensor, or two computed alike from the same tensors (the exporter writes
        `key + time_first` twice where the code spells it twice)."""
        if a == b:
            return True
        step_a, step_b = self.step_of.get(a), self.step_of.get(b)
        if step_a is None or step_b is None or (step_a.op_type, step_a.inputs) != (step_b.op_type, step_b.inputs):
            return False
        plain = all(not isinstance(v, torch.Tensor) for v in (*step_a.attrs.values(), *step_b.attrs.values()))
        return plain and step_a.attrs == step_b.attrs  # a tensor attribute compares elementwise: not the same

    def _gap_to_max(self, name: str) -> list[Operand] | None:
        """The operands x and y when `name` is Sub(x, Max(x, y)), the exponent of a log-sum-exp
        kept stable (RWKV's WKV, an online softmax): min(x - y, 0), never above zero, which the
        difference of x and the max read as independent tensors would not know."""
        step = self.step_of.get(name)
        if step is None or step.op_type != "Sub" or len(step.inputs) != 2:
            return None
        maximum = self.step_of.get(step.inputs[1])
        if maximum is None or maximum.op_type != "Max" or len(maximum.inputs) != 2:
            return None
        for slot, candidate in enumerate(maximum.inputs):
            if self._same_value(candidate, step.inputs[0]):
                pair = [self._operand(step.inputs[0]), self._operand(maximum.inputs[1 - slot])]
                return pair if all(o.source is not None for o in pair) else None
        return None

    def _add_step(self, step: Step) -> None:
        out_shape = self.shapes.get(step.outputs[0], (None, None))[0]
        kind, operands = self._kind(step, [self._operand(n) for n in (*step.inputs, *step.captures)], out_shape)
        inputs = []
        for slot, operand in enumerate(operands):
            if operand.source is not None:
                inputs.append(operand.source)
            elif slot in kind.constant_slots:
                inputs.append(self._constant_node(operand))
        add_node(
            self.graph, step.node_id, name=step.name, op=kind.op, source=step.op_type, fn=kind.fn,
            attrs=kind.attrs, params=kind.params, out_shape=out_shape, inputs=inputs,
        )  # fmt: skip
        for name in step.outputs:
            if name:
                self.producer[name] = step.node_id

    def _constant_node(self, operand: Operand) -> str:
        node_id = operand.name
        if node_id not in self.graph:
            attrs = constant_moments(operand.value)
            params = {"bias": operand.stats()} if operand.param and "masked" not in attrs else {}  # a mask is no bias
            source = "initializer" if operand.param else "Constant"
            add_node(self.graph, node_id, name=operand.name, op="constant", source=source, attrs=attrs, params=params,
                     out_shape=tuple(operand.value.shape))
        return node_id


def folded_norm_note(model: onnx.ModelProto) -> list[str]:
    """PyTorch's eval-mode export folds a BatchNorm into the convolution before it and names the
    folded weight `onnx::Conv_<n>`; the file then describes a network without that normalisation,
    which is not the one that will be trained. Said once, as a note."""
    if model.producer_name != "pytorch":
        return []
    initializers = {t.name for t in model.graph.initializer}
    folded = [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1
              and n.input[1] in initializers and n.input[1].startswith("onnx::Conv_")]
    if not folded:
        return []
    return [
        f"{len(folded)} convolution weight(s) were computed by the exporter (onnx::Conv_*): an eval-mode export "
        "folds a BatchNorm into the convolution before it, so this file may describe the network without that "
        "normalisation; export with do_constant_folding=False or training=torch.onnx.TrainingMode.TRAINING to keep it"
    ]


def load_onnx(
    path: str, input_shapes: list[tuple[int, ...]] | None = None, batch: int = 8, max_memory: int | None = None,
    static_only: bool = False,
) -> ModelHandle:
    """Load an ONNX file for auditing; InputError for unusable files or input shapes, and for a
    model whose declared sizes exceed `max_memory` bytes (default: `limits.default_max_memory`).

    `static_only` runs the data path on the meta device (`meta_trace`) and leaves the weights it
    only takes statistics of in the file's page cache."""
    cap = default_max_memory() if max_memory is None else max_memory
    model, weights = read_model(os.fspath(path), cap)
    restored_norms = restore_folded_batch_norms(model)
    specs = input_specs(model, input_shapes, batch)
    declared = inferred_shapes(model, specs)
    dependent = input_dependent([spec.name for spec in specs], model.graph.node)
    kept = declared if not static_only else {n: s for n, s in declared.items() if n not in dependent}
    check_memory(model, kept, cap, os.fspath(path),
                 mapped=weights.keys(), backward=not static_only)
    module = OnnxModule(model, train_mode=True, weights=weights)
    specs = [_with_table_size(spec, module) for spec in specs]
    probe_unavailable = "unsupported ONNX operator(s): " + ", ".join(module.unsupported) if module.unsupported else ""
    warnings: list[str] = []
    traced = meta_trace(module, specs, dependent, declared) if static_only and not probe_unavailable else None
    shapes, values = traced or ({}, {})
    if traced is None and not probe_unavailable:
        try:
            shapes, values = trace(module, synthetic_inputs(specs), dependent)
        except OnnxExecutionError as exc:
            if out_of_memory(exc):
                raise
            probe_unavailable = f"the ONNX graph failed to execute: {exc}"
    if probe_unavailable:
        shapes = declared
        warnings.append(probe_unavailable)
    warnings += restored_norms + folded_norm_note(model)
    graph = _GraphBuilder(module, specs, shapes, values, dependent).build()
    executable = not probe_unavailable
    return ModelHandle(
        source=os.fspath(path),
        format="onnx",
        graph=graph,
        inputs=specs,
        module=module if executable else None,
        module_is_own=True,
        runner=run_onnx if executable else None,
        probe_unavailable=probe_unavailable,
        parameters=sum(p.numel() for p in module.parameters() if p.is_floating_point()),
        warnings=warnings,
    )
