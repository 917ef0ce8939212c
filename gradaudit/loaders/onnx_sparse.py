"""Sparse tensors made dense, so a `sparse_initializer` weight is audited like any other.

ONNX stores a sparse tensor as its dense `dims`, the non-zero `values` and their `indices`
(linear, shape [NNZ], or one row per value, shape [NNZ, rank]). The executor and the weight
statistics work on dense tensors, and a sparse weight is still a weight whose gradient the
probe measures; so each sparse initializer becomes a dense initializer of the same name, and a
Constant's `sparse_value` a dense `value`, before the model is validated. The dense size is
checked against the memory cap first: a sparse tensor of 10^12 declared elements holding one
value costs a few bytes in the file.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from gradaudit.errors import InputError
from gradaudit.limits import require_fits, tensor_bytes
from gradaudit.onnx_exec.tensors import HELD_DTYPE, indexable, payload_matches, type_name


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _nodes(sub)


def _linear_indices(sparse: onnx.SparseTensorProto, size: int, what: str) -> np.ndarray:
    """The positions of the values in the flattened dense tensor, each checked to lie inside it."""
    dims, indices, count = tuple(sparse.dims), sparse.indices, sparse.values.dims[0]
    if indices.data_type != onnx.TensorProto.INT64 or not payload_matches(indices):
        raise InputError(f"{what}: its indices must be int64 values matching their declared shape")
    index = numpy_helper.to_array(indices)
    if dims and index.shape == (count, len(dims)):
        if ((index < 0) | (index >= np.array(dims))).any():
            raise InputError(f"{what}: an index lies outside its shape {list(dims)}")
        return np.ravel_multi_index(tuple(index.T), dims) if count else np.zeros(0, np.int64)
    if index.shape != (count,):
        raise InputError(f"{what}: indices of shape {list(index.shape)} do not index {count} values of a {len(dims)}-d "
                         "tensor")
    if ((index < 0) | (index >= size)).any():
        raise InputError(f"{what}: an index lies outside its shape {list(dims)}")
    return index


def dense_of(sparse: onnx.SparseTensorProto, cap: int, what: str) -> onnx.TensorProto:
    """The dense tensor `sparse` describes, named as its values; InputError naming `what` for a
    malformed one or one over `cap` bytes."""
    values = sparse.values
    if values.data_type not in HELD_DTYPE:
        raise InputError(f"{what} has element type {type_name(values.data_type)}, which gradaudit cannot execute")
    itemsize = HELD_DTYPE[values.data_type].itemsize
    if (any(d < 0 for d in sparse.dims) or not indexable(sparse.dims, itemsize) or len(values.dims) != 1
            or not payload_matches(values)):
        raise InputError(f"{what}: dims {list(sparse.dims)} and values of shape {list(values.dims)} do not describe a "
                         "sparse tensor")
    require_fits(what, tensor_bytes(sparse.dims, itemsize), cap)
    size = math.prod(sparse.dims)
    index = _linear_indices(sparse, size, what)
    stored = numpy_helper.to_array(values)
    dense = np.zeros(size, dtype=stored.dtype)
    dense[index] = stored
    return numpy_helper.from_array(dense.reshape(tuple(sparse.dims)), values.name)


def densify(model: onnx.ModelProto, cap: int) -> None:
    """Replace, in place, every sparse initializer and Constant `sparse_value` by its dense form."""
    graph = model.graph
    for sparse in graph.sparse_initializer:
        graph.initializer.append(dense_of(sparse, cap, f"sparse initializer {sparse.values.name!r}"))
    del graph.sparse_initializer[:]
    for node in _nodes(graph):
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.SPARSE_TENSOR:
                label = (f"the {attr.name!r} sparse tensor of node "
                         f"{node.name or (node.output[0] if node.output else '?')!r}")
                dense = dense_of(attr.sparse_tensor, cap, label)
                attr.ClearField("sparse_tensor")
                attr.t.CopyFrom(dense)
                attr.type = onnx.AttributeProto.TENSOR
                if node.op_type == "Constant" and attr.name == "sparse_value":
                    attr.name = "value"
