"""Small ONNX models, valid and broken, built with onnx.helper for the hostile-input tests.

Every builder returns a `ModelProto` (or bytes) in a few milliseconds; `save` writes one to disk.
The broken ones bypass `onnx.checker` on purpose: gradaudit must refuse them on its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
FEATURES = 4


def _model(nodes, inputs, outputs, initializers=(), opset: int = OPSET, **graph_fields) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "hostile", list(inputs), list(outputs), list(initializers))
    for key, value in graph_fields.items():
        setattr(graph, key, value)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def float_input(name: str = "x", shape=("N", FEATURES)) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def weight(name: str = "W", rows: int = FEATURES, cols: int = FEATURES, seed: int = 0) -> onnx.TensorProto:
    values = np.random.default_rng(seed).normal(0.0, (2.0 / rows) ** 0.5, (rows, cols)).astype(np.float32)
    return numpy_helper.from_array(values, name)


def mlp(
    weights: tuple[onnx.TensorProto, ...] | None = None,
    *,
    names: tuple[str, ...] = ("fc1", "act1", "fc2"),
    input_shape=("N", FEATURES),
    opset: int = OPSET,
) -> onnx.ModelProto:
    """x -> MatMul(W1) -> Relu -> MatMul(W2) -> y: the smallest model with two weight layers."""
    w1, w2 = weights or (weight("W1", seed=1), weight("W2", seed=2))
    nodes = [
        helper.make_node("MatMul", ["x", w1.name], ["h"], name=names[0]),
        helper.make_node("Relu", ["h"], ["a"], name=names[1]),
        helper.make_node("MatMul", ["a", w2.name], ["y"], name=names[2]),
    ]
    return _model(nodes, [float_input(shape=input_shape)], [float_input("y")], [w1, w2], opset=opset)


def with_nonfinite_weights() -> onnx.ModelProto:
    """A valid model whose first weight holds a NaN and an inf: a finding, not a crash."""
    values = numpy_helper.to_array(weight("W1", seed=1)).copy()
    values[0, 0], values[1, 1] = np.nan, np.inf
    return mlp((numpy_helper.from_array(values, "W1"), weight("W2", seed=2)))


def with_cycle() -> onnx.ModelProto:
    """a = x + b; b = relu(a): each node reads the other's output."""
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["b"], name="loop_back"),
        helper.make_node("Relu", ["a"], ["y"], name="out"),
    ]
    return _model(nodes, [float_input()], [float_input("y")])


def with_dangling_input() -> onnx.ModelProto:
    """A MatMul whose weight is neither an input, an initializer nor a node output."""
    nodes = [helper.make_node("MatMul", ["x", "W_missing"], ["y"], name="fc")]
    return _model(nodes, [float_input()], [float_input("y")])


def with_missing_output() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="act")]
    return _model(nodes, [float_input()], [float_input("z_never_made")])


def with_duplicate_output() -> onnx.ModelProto:
    """Two nodes write the same tensor (the graph is not in SSA form)."""
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="a"), helper.make_node("Sigmoid", ["x"], ["y"], name="b")]
    return _model(nodes, [float_input()], [float_input("y")])


def with_duplicate_initializer() -> onnx.ModelProto:
    model = mlp()
    model.graph.initializer.append(weight("W1", seed=9))
    return model


def with_opset(opset: int) -> onnx.ModelProto:
    return mlp(opset=opset)


def with_huge_input() -> onnx.ModelProto:
    """Declared input of 10^6 x 10^6 = 10^12 floats: 4 TB if anyone allocated it."""
    return mlp(input_shape=(1_000_000, 1_000_000))


def with_huge_constant() -> onnx.ModelProto:
    """A ConstantOfShape of 10^12 elements, from a 16-byte initializer."""
    shape = numpy_helper.from_array(np.array([1_000_000, 1_000_000], np.int64), "shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill",
                         value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])),
        helper.make_node("Add", ["x", "big"], ["y"], name="add"),
    ]
    return _model(nodes, [float_input(shape=(2, FEATURES))], [float_input("y")], [shape])


def with_empty_weight() -> onnx.ModelProto:
    """A (4, 0) weight: every activation after it has zero elements."""
    return mlp((weight("W1", seed=1), numpy_helper.from_array(np.zeros((FEATURES, 0), np.float32), "W2")))


def deep_chain(nodes: int) -> onnx.ModelProto:
    """`nodes` alternating Neg/Relu nodes between two weight layers."""
    body, previous = [], "h"
    for index in range(nodes):
        body.append(helper.make_node("Relu" if index % 2 else "Neg", [previous], [f"t{index}"], name=f"n{index}"))
        previous = f"t{index}"
    w1, w2 = weight("W1", seed=1), weight("W2", seed=2)
    graph_nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="first"), *body,
                   helper.make_node("MatMul", [previous, "W2"], ["y"], name="last")]
    return _model(graph_nodes, [float_input()], [float_input("y")], [w1, w2])


def with_typed_bias(data_type: int, values, *, as_constant: bool = False) -> onnx.ModelProto:
    """The MLP with a bias of ONNX type `data_type` cast to float and added after fc1: as an
    initializer, or as the value of a Constant node."""
    bias = helper.make_tensor("b", data_type, [len(values)], list(values))
    model = mlp()
    nodes = [helper.make_node("Cast", ["b"], ["bf"], name="cast_bias", to=TensorProto.FLOAT),
             helper.make_node("Add", ["h", "bf"], ["hb"], name="add_bias")]
    if as_constant:
        nodes.insert(0, helper.make_node("Constant", [], ["b"], name="bias_value", value=bias))
    else:
        model.graph.initializer.append(bias)
    model.graph.node[1].input[0] = "hb"
    model.graph.node.insert(1, nodes[-1])
    for node in reversed(nodes[:-1]):
        model.graph.node.insert(0, node)
    model.opset_import[0].version = 21  # Cast from float8 and 4-bit types
    return model


def with_sparse_weight(indices: np.ndarray | None = None) -> onnx.ModelProto:
    """The MLP with W1 stored as a sparse initializer (its non-zero half, linear indices)."""
    model = mlp()
    dense = numpy_helper.to_array(model.graph.initializer[0])
    del model.graph.initializer[0]
    index = np.flatnonzero(dense > 0) if indices is None else indices
    values = dense.ravel()[np.clip(index, 0, dense.size - 1)]
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(
        numpy_helper.from_array(values, "W1"), numpy_helper.from_array(index.astype(np.int64), "W1_indices"),
        list(dense.shape)))
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    """Write without the checker (the point is to hand gradaudit what the checker would refuse)."""
    path.write_bytes(model.SerializeToString())
    return path
