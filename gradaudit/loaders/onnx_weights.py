"""An ONNX file read without copying its weights: large initializers become torch tensors over a
copy-on-write map of the file that holds them.

`onnx.load` reads the whole file into memory and protobuf copies every weight again; a writable
tensor took a third copy. On a 1.4 GB GPT that was three times what reading the file costs, and
three times the memory. Here:

- `read_stripped` maps the .onnx file and scans its protobuf wire format (ModelProto.graph ->
  GraphProto.initializer -> TensorProto.raw_data). The bytes of every large embedded `raw_data`
  are left out of what protobuf parses; their (offset, length) in the file is kept instead.
- `mapped_initializers` turns those spans, and the location/offset/length of large external
  data (confined to the model's folder), into tensors over a private (`ACCESS_COPY`) map.

Nothing is read until used; read pages stay the kernel's page cache, reclaimable, so the
statistics of weights larger than memory are streamed rather than held; a write (the sharpness
probe, a remedy under verification) copies the page it touches, never the file. A payload the
scan cannot vouch for (a repeated `raw_data`, typed fields like `float_data`) stays in the
protobuf, as does everything on a big-endian host (ONNX stores raw data little-endian).
Like any reader of a mapped file, the audit assumes the file is not truncated while it runs
(replacing it, as an atomic save does, is harmless: the map keeps the old inode).
"""

from __future__ import annotations

import math
import mmap
import os
import sys
from typing import Iterator, NamedTuple

import onnx
import torch
from onnx import external_data_helper

from gradaudit.errors import InputError
from gradaudit.limits import require_fits
from gradaudit.onnx_exec.external_data import confined_path, span
from gradaudit.onnx_exec.ops_elementwise import ONNX_TO_TORCH_DTYPE
from gradaudit.onnx_exec.tensors import HELD_DTYPE, payload_matches, to_torch

# protobuf field numbers (onnx.proto) and wire types
MODEL_GRAPH, GRAPH_INITIALIZER, TENSOR_NAME, TENSOR_RAW_DATA = 7, 5, 8, 9
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5

# Initializers up to this many elements stay in the protobuf: copying them costs less than
# mapping them. A raw_data payload is left out of the parse above LARGE_ELEMENTS * 8 bytes, so
# that whatever its type (8 bytes at most) it is a large initializer.
LARGE_ELEMENTS = 4096
STRIP_BYTES = LARGE_ELEMENTS * 8
CAN_MAP = sys.byteorder == "little"


class Unscannable(ValueError):
    """The bytes use wire-format features the scan does not follow (groups) or are cut short."""


class Field(NamedTuple):
    number: int
    wire: int
    start: int  # of its key
    value_start: int
    end: int


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


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def _fields(buffer, start: int, end: int) -> Iterator[Field]:
    """The fields of one message, in order."""
    position = start
    while position < end:
        field_start = position
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
        yield Field(number, wire, field_start, position, after)
        position = after


def _only(fields: list[Field], number: int) -> Field | None:
    """The one length-delimited field `number`; None when absent or repeated (protobuf would merge
    or override repeats: not a layout to vouch for)."""
    found = [f for f in fields if f.number == number and f.wire == LENGTH_DELIMITED]
    return found[0] if len(found) == 1 else None


def strip_raw_data(buffer) -> tuple[bytes, dict[str, tuple[int, int]]] | None:
    """A serialised ModelProto without its large embedded `raw_data` payloads, and name ->
    (offset, byte length) of each left-out payload in `buffer`; None when the layout is not one
    to vouch for (no or several graph fields, a group, a field cut short)."""
    try:
        graph = _only(list(_fields(buffer, 0, len(buffer))), MODEL_GRAPH)
        if graph is None:
            return None
        parts, spans, cursor = [], {}, graph.value_start
        for field in _fields(buffer, graph.value_start, graph.end):
            if (field.number != GRAPH_INITIALIZER or field.wire != LENGTH_DELIMITED
                    or field.end - field.value_start <= STRIP_BYTES):
                continue
            tensor = list(_fields(buffer, field.value_start, field.end))
            name, raw = _only(tensor, TENSOR_NAME), _only(tensor, TENSOR_RAW_DATA)
            if name is None or raw is None or raw.end - raw.value_start <= STRIP_BYTES:
                continue
            kept = buffer[field.value_start : raw.start] + buffer[raw.end : field.end]
            parts += [buffer[cursor : field.start], _length_delimited(GRAPH_INITIALIZER, kept)]
            spans[bytes(buffer[name.value_start : name.end]).decode("utf-8", "replace")] = (raw.value_start,
                                                                                            raw.end - raw.value_start)
            cursor = field.end
        parts.append(buffer[cursor : graph.end])
        stripped_graph = b"".join(parts)
        model = buffer[: graph.start] + _length_delimited(MODEL_GRAPH, stripped_graph) + buffer[graph.end :]
        return model, spans
    except Unscannable:
        return None


def copy_on_write_map(path: str) -> mmap.mmap | None:
    """A private map of the file (None for an empty file, which cannot be mapped)."""
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return None
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)


def large_initializers(model: onnx.ModelProto) -> set[str]:
    return {t.name for t in model.graph.initializer if math.prod(t.dims) > LARGE_ELEMENTS}


def _view(mapping: mmap.mmap, tensor: onnx.TensorProto, offset: int, length: int, where: str) -> torch.Tensor:
    """The tensor over `length` bytes at `offset`; InputError unless they hold what its dims declare.

    A type torch has no view for (float8, 4-bit: gradaudit.onnx_exec.tensors) is converted from
    a copy of its bytes instead; a bool mask (the dynamo exporter stores attention masks as
    initializers) is its bytes compared with zero."""
    shape = tuple(int(d) for d in tensor.dims)
    count = math.prod(shape)
    dtype = ONNX_TO_TORCH_DTYPE.get(tensor.data_type)
    if dtype is None and tensor.data_type in HELD_DTYPE and 0 < count and offset + length <= len(mapping):
        stored = onnx.TensorProto(data_type=tensor.data_type, dims=shape,
                                  raw_data=bytes(mapping[offset : offset + length]))
        if payload_matches(stored):
            return to_torch(stored, f"initializer {tensor.name!r}")
    if (dtype is None or count <= 0 or count * dtype.itemsize != length
            or offset + length > len(mapping)):
        raise InputError(f"initializer {tensor.name!r} declares shape {list(shape)} but its data ({length} bytes "
                         f"{where}) does not hold it")
    if dtype == torch.bool:  # a byte other than 0/1 is no valid torch bool: read the bytes, compare (a copy)
        return torch.frombuffer(mapping, dtype=torch.uint8, count=count, offset=offset).reshape(shape) != 0
    return torch.frombuffer(mapping, dtype=dtype, count=count, offset=offset).reshape(shape)


def mapped_initializers(model: onnx.ModelProto, path: str, model_map: mmap.mmap | None,
                        stripped: dict[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    """Tensors over the file bytes of the `stripped` embedded initializers (spans in `model_map`)
    and of the large external ones; InputError for data that does not hold its tensor."""
    base_dir = os.path.dirname(os.path.abspath(path))
    maps: dict[str, mmap.mmap | None] = {}
    tensors: dict[str, torch.Tensor] = {}
    large = large_initializers(model) if CAN_MAP else set()
    for tensor in model.graph.initializer:
        if tensor.name in stripped:
            tensors[tensor.name] = _view(model_map, tensor, *stripped[tensor.name],
                                         where=f"at offset {stripped[tensor.name][0]}")
        elif tensor.name in large and external_data_helper.uses_external_data(tensor):
            entries = {entry.key: entry.value for entry in tensor.external_data}
            file = confined_path(base_dir, tensor.name, entries.get("location", ""))
            offset, length = span(tensor, file)
            if file not in maps:
                maps[file] = copy_on_write_map(file)
            where = f"at offset {offset} of external file {entries.get('location')!r}"
            if maps[file] is None:
                raise InputError(f"initializer {tensor.name!r}: its external file {entries.get('location')!r} is empty")
            tensors[tensor.name] = _view(maps[file], tensor, offset, length, where)
    return tensors


def read_stripped(path: str, cap: int) -> tuple[onnx.ModelProto, mmap.mmap | None, dict[str, tuple[int, int]]]:
    """The ModelProto of an ONNX file with its large embedded payloads left in the file, the
    file's map and the payloads' spans; `onnx.load` (everything parsed) where the layout is not
    one to vouch for. What protobuf parses must fit under `cap` bytes: InputError otherwise.
    Protobuf's own errors propagate (the caller names the file)."""
    model_map = copy_on_write_map(path) if CAN_MAP else None
    found = strip_raw_data(model_map) if model_map is not None else None
    if found is None:
        require_fits(f"{path}: the model's protobuf", os.path.getsize(path), cap)
        return onnx.load(path, load_external_data=False), model_map, {}
    data, spans = found
    require_fits(f"{path}: the model's protobuf (its large weights left in the file)", len(data), cap)
    return onnx.ModelProto.FromString(data), model_map, spans
