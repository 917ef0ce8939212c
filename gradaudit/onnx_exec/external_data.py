"""Read an ONNX model whose tensors live in external data files, confined to its folder.

An ONNX file names its external data by relative `location`. A model from an untrusted source
could point at `../../etc/passwd`, an absolute path, or a symlink leading out of its folder, and
have gradaudit read (and report statistics of) arbitrary files. Every location is therefore
resolved, symlinks included, and must stay inside the model's folder; anything else is an
InputError naming the tensor and its location, raised before any external byte is read.
"""

from __future__ import annotations

import os
import re
from typing import Collection, Iterator

import onnx
from onnx import external_data_helper

from gradaudit.errors import InputError
from gradaudit.limits import default_max_memory, require_fits


def graph_tensors(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """(what it is, tensor) for initializers, the parts of sparse initializers and tensor-valued
    attributes (Constant values), subgraphs included."""
    for tensor in graph.initializer:
        yield f"initializer {tensor.name!r}", tensor
    for sparse in graph.sparse_initializer:
        yield f"sparse initializer {sparse.values.name!r} (values)", sparse.values
        yield f"sparse initializer {sparse.values.name!r} (indices)", sparse.indices
    for node in graph.node:
        label = f"node {node.name or (node.output[0] if node.output else '?')!r}"
        for attr in node.attribute:
            if attr.HasField("t"):
                yield f"the {attr.name!r} tensor of {label}", attr.t
            if attr.HasField("sparse_tensor"):
                yield f"the {attr.name!r} sparse tensor of {label} (values)", attr.sparse_tensor.values
                yield f"the {attr.name!r} sparse tensor of {label} (indices)", attr.sparse_tensor.indices
            yield from ((f"a {attr.name!r} tensor of {label}", t) for t in attr.tensors)
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from graph_tensors(sub)


def _location(tensor: onnx.TensorProto) -> str:
    return next((entry.value for entry in tensor.external_data if entry.key == "location"), "")


def confined_path(base_dir: str, tensor_name: str, location: str) -> str:
    """The real path of an external data file, or InputError when it leaves `base_dir`."""

    def refuse(why: str) -> InputError:
        return InputError(f"external data of tensor {tensor_name!r} at location {location!r} {why}")

    if not location:
        raise refuse("has no location")
    if os.path.isabs(location) or os.path.splitdrive(location)[0]:
        raise refuse("is an absolute path; it must be relative to the model's folder")
    if ".." in location.replace("\\", "/").split("/"):
        raise refuse("climbs out of the model's folder ('..')")
    root = os.path.realpath(base_dir)
    resolved = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, resolved]) != root:
        raise refuse("resolves (through a symlink) outside the model's folder")
    if not os.path.isfile(resolved):
        raise refuse("names no file in the model's folder")
    return resolved


def span(tensor: onnx.TensorProto, file: str) -> tuple[int, int]:
    """(offset, length) of a tensor's bytes in its external file, checked to be non-negative
    integers inside the file; a missing length is set to the rest of the file, so no reader
    takes more than the file holds."""
    entries = {entry.key: entry.value for entry in tensor.external_data}
    where = f"external data of tensor {tensor.name!r} at location {entries.get('location')!r}"
    numbers = {}
    for key in ("offset", "length"):
        text = entries.get(key, "0" if key == "offset" else None)
        if text is None:
            continue
        if not re.fullmatch(r"\s*[0-9]{1,30}\s*", text):
            raise InputError(f"{where}: {key} {text!r} is not a non-negative integer")
        numbers[key] = int(text)
    size = os.path.getsize(file)
    offset = numbers["offset"]
    if offset > size:
        raise InputError(f"{where}: offset {offset} lies past the end of the {size}-byte file")
    length = numbers.get("length", size - offset)
    if offset + length > size:
        raise InputError(f"{where}: {length} bytes at offset {offset} run past the end of the {size}-byte file")
    if "length" not in numbers:
        entry = tensor.external_data.add()
        entry.key, entry.value = "length", str(length)
    return offset, length


def load_external_data(model: onnx.ModelProto, model_path: str, leave: Collection[str] = (),
                       cap: int | None = None) -> onnx.ModelProto:
    """Fill the external tensors of `model` (read without its data) from the model's folder.

    Every location is confined first and every span checked (`span`); the tensors named in
    `leave` are not read (their bytes are mapped instead, gradaudit.loaders.onnx_weights), and
    the others must fit under `cap` bytes together (default: the memory cap) before any is read."""
    base_dir = os.path.dirname(os.path.abspath(model_path))
    external = [t for _, t in graph_tensors(model.graph) if external_data_helper.uses_external_data(t)]
    lengths = {id(t): span(t, confined_path(base_dir, t.name, _location(t)))[1] for t in external}
    read = [t for t in external if t.name not in leave]
    require_fits(f"{model_path}: its external data", sum(lengths[id(t)] for t in read),
                 default_max_memory() if cap is None else cap)
    for tensor in read:
        try:
            external_data_helper.load_external_data_for_tensor(tensor, base_dir)
        except (OSError, ValueError) as exc:
            raise InputError(f"external data of tensor {tensor.name!r} at location {_location(tensor)!r} is "
                             f"unreadable: {exc}") from exc
    return model


def load_confined(path: str) -> onnx.ModelProto:
    """`onnx.load` with external data read only from inside the model's folder."""
    return load_external_data(onnx.load(path, load_external_data=False), path)


def external_data_files(path: str) -> list[str]:
    """The real paths of the external data files an ONNX file names inside its folder.

    For callers that must know a model's files before loading it (an output may not overwrite
    one, gradaudit.output_guard); a file that does not parse, or a location the loader will
    refuse, names nothing here: loading reports it."""
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception:  # any parse failure is the loader's to report, with its own message
        return []
    base_dir = os.path.dirname(os.path.abspath(path))
    found = []
    for _, tensor in graph_tensors(model.graph):
        if external_data_helper.uses_external_data(tensor):
            try:
                found.append(confined_path(base_dir, tensor.name, _location(tensor)))
            except InputError:
                continue
    return list(dict.fromkeys(found))
