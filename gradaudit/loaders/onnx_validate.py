"""Structural validation of an ONNX model before any of it executes or allocates.

`onnx.checker` stays the catch-all, but it reports a cycle as a multi-line dump of the node and
accepts a graph whose declared sizes would take terabytes to run. The checks here each name the
offending node or tensor in one line, and run first:

- the default-domain opset is one the executor implements (7 up to the installed onnx's newest);
- every name and string attribute is valid UTF-8;
- every tensor name is defined once (graph input, initializer or node output; an input that also
  has an initializer is the IR < 4 way of giving an input a default, and is allowed);
- every node reads tensors defined before it: a read of a later output is a cycle (named) or an
  unsorted graph, a read of nothing at all a dangling input;
- every graph output is defined; every initializer and attribute tensor has a type the executor
  can hold (gradaudit.onnx_exec.tensors), a shape numpy and torch can index, and stores exactly
  the values its dims declare; size attributes (group, strides, kernel_shape) are >= 1;
- `check_memory`: every declared or inferred tensor size, and their sum, fits under the memory
  cap (`gradaudit.limits`), so a 10^12-element ConstantOfShape is refused before allocation.
"""

from __future__ import annotations

import math
from typing import Callable, Collection, Iterator, Mapping

import networkx as nx
import onnx
import torch

from gradaudit.errors import InputError
from gradaudit.limits import require_fits, tensor_bytes
from gradaudit.onnx_exec import opset_of
from gradaudit.onnx_exec.external_data import graph_tensors
from gradaudit.onnx_exec.op_registry import MAX_OPSET, MIN_OPSET
from gradaudit.onnx_exec.tensors import HELD_DTYPE, indexable, payload_matches, stored_values, type_name

Check = Callable[[onnx.GraphProto, int], str]
CHECKS: list[Check] = []


def _check(fn: Check) -> Check:
    """Register a structural check: it returns the first problem it finds, or ""."""
    CHECKS.append(fn)
    return fn


def _node_label(node: onnx.NodeProto) -> str:
    return f"node {node.name or (node.output[0] if node.output else '?')!r} ({node.op_type})"


@_check
def _opset_in_range(graph: onnx.GraphProto, opset: int) -> str:
    if MIN_OPSET <= opset <= MAX_OPSET:
        return ""
    return f"uses ONNX opset {opset}; gradaudit supports opsets {MIN_OPSET} to {MAX_OPSET}"


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _node_names(node: onnx.NodeProto) -> Iterator[str | bytes]:
    yield from (node.name, node.op_type, node.domain, *node.input, *node.output)
    yield from (attr.name for attr in node.attribute)


@_check
def _texts_are_utf8(graph: onnx.GraphProto, opset: int) -> str:
    """protobuf hands back a string field holding invalid UTF-8 as bytes, and string attributes
    are bytes decoded later: every later step (torch names, reports) needs text."""
    values = (*graph.input, *graph.output, *graph.initializer)
    names = [value.name for value in values] + [name for node in graph.node for name in _node_names(node)]
    undecodable = next((name for name in names if not isinstance(name, str)), None)
    if undecodable is not None:
        return f"the model holds a name that is not valid UTF-8: {undecodable!r}"
    for node in graph.node:
        for attr in node.attribute:
            if not all(_is_utf8(value) for value in (attr.s, *attr.strings)):
                return f"{_node_label(node)} has a string attribute {attr.name!r} that is not valid UTF-8"
    return ""


def _definitions(graph: onnx.GraphProto) -> Iterator[tuple[str, str]]:
    """(tensor name, what defines it) for inputs, initializers and node outputs, in order."""
    initializers = {t.name for t in graph.initializer}
    for value in graph.input:
        if value.name not in initializers:  # an input with a default is defined by its initializer
            yield value.name, "a graph input"
    for tensor in graph.initializer:
        yield tensor.name, "an initializer"
    for tensor in graph.sparse_initializer:
        yield tensor.values.name, "a sparse initializer"
    for node in graph.node:
        for name in node.output:
            if name:
                yield name, _node_label(node)


@_check
def _names_defined_once(graph: onnx.GraphProto, opset: int) -> str:
    seen: dict[str, str] = {}
    for name, definer in _definitions(graph):
        if name in seen:
            return f"tensor {name!r} is defined twice: by {seen[name]} and by {definer}"
        seen[name] = definer
    return ""


def _cycle(graph: onnx.GraphProto) -> list[str]:
    """Node labels around one cycle of the node dependency graph ([] when acyclic)."""
    producer = {name: index for index, node in enumerate(graph.node) for name in node.output if name}
    deps = nx.DiGraph()
    deps.add_nodes_from(range(len(graph.node)))
    deps.add_edges_from((producer[name], index) for index, node in enumerate(graph.node)
                        for name in node.input if name in producer)
    try:
        edges = nx.find_cycle(deps)
    except nx.NetworkXNoCycle:
        return []
    return [_node_label(graph.node[u]) for u, _ in edges] + [_node_label(graph.node[edges[0][0]])]


@_check
def _reads_defined_tensors(graph: onnx.GraphProto, opset: int) -> str:
    produced_later = {name for node in graph.node for name in node.output if name}
    defined = {name for name, _ in _definitions(graph)} - produced_later
    for node in graph.node:
        for name in node.input:
            if name and name not in defined:
                if name not in produced_later:
                    return f"{_node_label(node)} reads {name!r}, which no graph input, initializer or node defines"
                cycle = _cycle(graph)
                if cycle:
                    return "the graph has a cycle: " + " -> ".join(cycle)
                return (
                    f"{_node_label(node)} reads {name!r} before the node producing it "
                    "(nodes are not topologically sorted)"
                )
        defined.update(name for name in node.output if name)
    return ""


@_check
def _outputs_defined(graph: onnx.GraphProto, opset: int) -> str:
    defined = {name for name, _ in _definitions(graph)}
    missing = [value.name for value in graph.output if value.name not in defined]
    return f"graph output {missing[0]!r} is not defined by any node, input or initializer" if missing else ""


@_check
def _tensor_types_supported(graph: onnx.GraphProto, opset: int) -> str:
    for what, tensor in graph_tensors(graph):
        if tensor.data_type not in HELD_DTYPE:
            return f"{what} has element type {type_name(tensor.data_type)}, which gradaudit cannot execute"
    return ""


def _tensor_sizes_match(graph: onnx.GraphProto, sized: Collection[str]) -> str:
    """Declared dims must describe exactly the stored values (the checker accepts extra data).

    The initializers named in `sized` are sized where their bytes are mapped from the file
    (gradaudit.loaders.onnx_weights): the ModelProto does not hold them."""
    for what, tensor in graph_tensors(graph):
        if any(d < 0 for d in tensor.dims):
            return f"{what} declares a negative dimension {list(tensor.dims)}"
        if not indexable(tensor.dims, HELD_DTYPE[tensor.data_type].itemsize):
            return (
                f"{what} declares shape {list(tensor.dims)}, "
                "too large to index even where a zero dimension leaves it empty"
            )
        if tensor.data_location == onnx.TensorProto.EXTERNAL or (
            what == f"initializer {tensor.name!r}" and tensor.name in sized
        ):
            continue  # external data is sized where it is read or mapped
        if not payload_matches(tensor):
            declared = math.prod(tensor.dims)
            return f"{what} declares shape {list(tensor.dims)} ({declared} values) but stores {stored_values(tensor)}"
    return ""


# Attributes the ONNX operator specs define as counts or sizes, so >= 1 (a conv `group` of 0 would
# divide by zero in the fan computation of the static estimate).
POSITIVE_ATTRIBUTES = frozenset({"group", "strides", "dilations", "kernel_shape", "size"})


@_check
def _size_attributes_positive(graph: onnx.GraphProto, opset: int) -> str:
    for node in graph.node:
        for attr in node.attribute:
            if attr.name in POSITIVE_ATTRIBUTES:
                values = list(attr.ints) if attr.type == onnx.AttributeProto.INTS else [attr.i]
                if any(v < 1 for v in values):
                    return (
                        f"{_node_label(node)} has {attr.name} = {values if len(values) > 1 else values[0]}; "
                        "it must be positive"
                    )
    return ""


def structural_problem(model: onnx.ModelProto, sized: Collection[str] = ()) -> str:
    """The first structural problem of `model` as one line, or "" when it has none; the sizes of
    the initializers named in `sized` are checked elsewhere (`_tensor_sizes_match`)."""
    opset = opset_of(model)
    for check in CHECKS:
        problem = check(model.graph, opset)
        if problem:
            return problem
    return _tensor_sizes_match(model.graph, sized)


Shapes = Mapping[str, tuple[tuple[int, ...], torch.dtype]]


def check_memory(model: onnx.ModelProto, shapes: Shapes, cap: int, label: str, *, mapped: Collection[str] = (),
                 backward: bool = True) -> None:
    """Refuse a model whose tensors cannot fit under `cap` bytes, before allocating any of them.

    `shapes` are the tensor shapes known before execution (inputs at their concrete shapes and
    what shape inference derived from them). One tensor above the cap is named; otherwise their
    sum is compared with the cap. With a `backward` pass (the probe) the sum is an upper bound on
    what autograd keeps: activations, weights and a gradient beside every weight. Without one
    (static-only) the `mapped` initializers, views of the file (gradaudit.loaders.onnx_weights),
    take page cache rather than memory and are left out.
    """
    sizes = {
        name: tensor_bytes(shape, dtype.itemsize)
        for name, (shape, dtype) in shapes.items()
        if backward or name not in mapped
    }
    gradients = 0
    for tensor in model.graph.initializer:
        dtype = HELD_DTYPE.get(tensor.data_type, torch.float32)
        size = tensor_bytes(tensor.dims, dtype.itemsize)
        if backward or tensor.name not in mapped:
            sizes[tensor.name] = size
        gradients += size if backward and dtype.is_floating_point else 0
    if not sizes:
        return
    largest = max(sizes, key=sizes.__getitem__)
    require_fits(f"{label}: tensor {largest!r}", sizes[largest], cap)
    what = ("the probe's tensors (activations kept for the backward pass, weights and their gradients)" if backward
            else "the tensors a static analysis holds (constants and shape arithmetic)")
    require_fits(f"{label}: {what}", sum(sizes.values()) + gradients, cap)


def validate(model: onnx.ModelProto, label: str, sized: Collection[str] = ()) -> None:
    """InputError `label: problem` for the first structural problem of `model` (`sized`: see
    structural_problem)."""
    problem = structural_problem(model, sized)
    if problem:
        raise InputError(f"{label}: {problem}")
