"""Initializers as torch tensors over copy-on-write maps of the files that hold them.

Going through protobuf costs two full copies of every weight (upb hands out a fresh `bytes` for
each read of `raw_data`, and a writable tensor needs another), which on a 1.4 GB GPT took longer
than reading the file. Here each top-level initializer's bytes are located in the file itself:
embedded `raw_data` by a scan of the protobuf wire format (ModelProto.graph ->
GraphProto.initializer -> TensorProto.raw_data), external data by its location, offset and
length. The tensors view a private (`ACCESS_COPY`) map of that file:

- nothing is read until used, and read pages stay the kernel's page cache, reclaimable, so the
  statistics of external data larger than memory are streamed rather than held;
- a write (the sharpness probe, a remedy being verified) copies the page it touches, never the
  file.

The scan vouches only for what it can read unambiguously. A tensor with typed fields
(`float_data`), a repeated `raw_data`, a size that does not match its dims, a bool or non-numeric
type, or a big-endian host takes the protobuf path instead (`mapped_initializers` leaves it out).
"""

from __future__ import annotations

import math
import mmap
import os
import sys
from typing import Iterator

import onnx
import torch
from onnx import external_data_helper

from gradaudit.errors import InputError
from gradaudit.loaders.onnx_external import confined_path
from gradaudit.onnx_exec.ops_elementwise import ONNX_TO_TORCH_DTYPE

# protobuf field numbers (onnx.proto)
MODEL_GRAPH, GRAPH_INITIALIZER, TENSOR_NAME, TENSOR_RAW_DATA = 7, 5, 8, 9
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


class Unscannable(ValueError):
    """The bytes use wire-format features the scan does not follow (groups) or are cut short."""


def _varint(buffer, position: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while position < end and shift < 64:
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    raise Unscannable("varint runs past its message")


def _fields(buffer, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field of one message."""
    position = start
    while position < end:
        key, position = _varint(buffer, position, end)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            _, after = _varint(buffer, position, end)
        elif wire == LENGTH_DELIMITED:
            length, position = _varint(buffer, position, end)
            after = position + length
        elif wire in (FIXED64, FIXED32):
            after = position + (8 if wire == FIXED64 else 4)
        else:
            raise Unscannable(f"wire type {wire}")
        if after > end:
            raise Unscannable("field runs past its message")
        yield number, wire, position, after
        position = after


def _spans(buffer, start: int, end: int, numbers: tuple[int, ...]) -> list[tuple[int, int] | None]:
    """For each field number, the span of its one length-delimited occurrence in the message;
    None when absent or repeated (protobuf would merge or override repeats: not a layout to vouch
    for)."""
    found: dict[int, list[tuple[int, int]]] = {n: [] for n in numbers}
    for number, wire, value_start, value_end in _fields(buffer, start, end):
        if number in found and wire == LENGTH_DELIMITED:
            found[number].append((value_start, value_end))
    return [spans[0] if len(spans) == 1 else None for spans in found.values()]


def embedded_raw_data(buffer) -> dict[str, tuple[int, int]]:
    """Initializer name -> (offset, byte length) of its `raw_data` in a serialised ModelProto."""
    try:
        (graph,) = _spans(buffer, 0, len(buffer), (MODEL_GRAPH,))
        if graph is None:
            return {}
        found: dict[str, tuple[int, int]] = {}
        repeated: set[str] = set()
        for number, wire, start, end in _fields(buffer, *graph):
            if number != GRAPH_INITIALIZER or wire != LENGTH_DELIMITED:
                continue
            name, raw = _spans(buffer, start, end, (TENSOR_NAME, TENSOR_RAW_DATA))
            if name is None or raw is None:
                continue
            key = bytes(buffer[name[0] : name[1]]).decode("utf-8", "replace")
            repeated.update({key} & found.keys())
            found[key] = (raw[0], raw[1] - raw[0])
        return {key: span for key, span in found.items() if key not in repeated}
    except Unscannable:
        return {}


def _copy_on_write_map(path: str) -> mmap.mmap | None:
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return None
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)


def _view(mapping: mmap.mmap, tensor: onnx.TensorProto, offset: int, length: int) -> torch.Tensor | None:
    """The tensor over `length` bytes at `offset`, when they hold exactly what its dims declare."""
    dtype = ONNX_TO_TORCH_DTYPE.get(tensor.data_type)
    if dtype is None or dtype == torch.bool or dtype.is_complex:
        return None
    shape = tuple(int(d) for d in tensor.dims)
    count = math.prod(shape)
    if count == 0 or count * dtype.itemsize != length or offset + length > len(mapping):
        return None
    return torch.frombuffer(mapping, dtype=dtype, count=count, offset=offset).reshape(shape)


def _external_entries(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def mapped_initializers(model: onnx.ModelProto, path: str) -> dict[str, torch.Tensor]:
    """Tensors over the file bytes of the top-level initializers that can be mapped (module doc).

    External data must lie inside the model's folder (InputError otherwise) and hold exactly the
    bytes its tensor declares (InputError naming the tensor otherwise): unlike embedded data,
    there is no protobuf copy to fall back to.
    """
    if sys.byteorder != "little":  # ONNX stores raw data little-endian
        return {}
    base_dir = os.path.dirname(os.path.abspath(path))
    maps: dict[str, mmap.mmap | None] = {}

    def mapping(file: str) -> mmap.mmap | None:
        if file not in maps:
            maps[file] = _copy_on_write_map(file)
        return maps[file]

    tensors: dict[str, torch.Tensor] = {}
    external = [t for t in model.graph.initializer if external_data_helper.uses_external_data(t)]
    for tensor in external:
        entries = _external_entries(tensor)
        file = confined_path(base_dir, tensor.name, entries.get("location", ""))
        offset = int(entries.get("offset", 0))
        length = int(entries["length"]) if "length" in entries else os.path.getsize(file) - offset
        view = _view(mapping(file), tensor, offset, length) if length > 0 else None
        if view is None:
            raise InputError(f"external data of tensor {tensor.name!r} ({length} bytes at offset {offset} of "
                             f"{entries.get('location')!r}) does not hold the {list(tensor.dims)} values it declares")
        tensors[tensor.name] = view
    if len(external) < len(model.graph.initializer):
        model_map = mapping(path)
        spans = embedded_raw_data(model_map) if model_map is not None else {}
        for tensor in model.graph.initializer:
            if tensor.name in spans and tensor.name not in tensors:
                view = _view(model_map, tensor, *spans[tensor.name])
                if view is not None:
                    tensors[tensor.name] = view
    return tensors
