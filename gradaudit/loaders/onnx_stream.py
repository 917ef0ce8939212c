"""Statistics of an ONNX model's external-data initializers, streamed block by block from disk.

A model saved with external data (weights beside the .onnx file) can be larger than memory.
`external_initializer_stats` reads the graph without its data (`onnx.load(load_external_data=False)`),
then, for each external tensor, reads its file range in blocks of rows (`numpy.fromfile` at an
offset: anonymous memory of one block, never a mapping of the whole file) and merges the blocks'
statistics exactly (gradaudit.loaders.chunked_stats). Locations are confined to the model's
folder by gradaudit.loaders.onnx_external before any byte is read. Statistics are taken along
axis 0, the output axis of Conv and Gather tables and of Gemm weights stored with transB.
"""

from __future__ import annotations

import math
import os
from typing import Iterator

import numpy as np
import onnx
import torch
from onnx import external_data_helper, helper

from gradaudit.errors import InputError
from gradaudit.graph import ParamStats, param_stats
from gradaudit.loaders.chunked_stats import merge_blocks, rows_per_block
from gradaudit.loaders.onnx_external import confined_path


def _entries(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def _blocks(path: str, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> Iterator[tuple[ParamStats, torch.Tensor]]:
    """(statistics, first row) of consecutive row blocks of a tensor stored at `offset` in `path`."""
    rows = shape[0] if shape else 1
    row_elems = math.prod(shape[1:]) if len(shape) > 1 else 1
    step = rows_per_block(row_elems)
    with open(path, "rb") as file:
        for start in range(0, rows, step):
            count = min(step, rows - start)
            file.seek(offset + start * row_elems * dtype.itemsize)
            block = np.fromfile(file, dtype=dtype, count=count * row_elems)
            if block.size != count * row_elems:
                raise InputError(f"{path}: external data ends before the tensor does")
            values = torch.from_numpy(block.reshape((count,) + tuple(shape[1:])))
            yield param_stats("", values), values[0].reshape(-1).clone()


def external_initializer_stats(model_path: str) -> dict[str, ParamStats]:
    """ParamStats of every external-data initializer of an ONNX file, one block in memory at a time."""
    model = onnx.load(model_path, load_external_data=False)
    base_dir = os.path.dirname(os.path.abspath(model_path))
    stats = {}
    for tensor in model.graph.initializer:
        if not external_data_helper.uses_external_data(tensor):
            continue
        entries = _entries(tensor)
        path = confined_path(base_dir, tensor.name, entries.get("location", ""))
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
        shape = tuple(int(d) for d in tensor.dims)
        stats[tensor.name] = merge_blocks(tensor.name, shape, _blocks(path, int(entries.get("offset", 0)), dtype, shape))
    return stats
