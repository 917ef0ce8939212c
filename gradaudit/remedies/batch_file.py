"""`--data FILE`: a real batch for the probe, so batch-shift remedies use the user's statistics.

.npy holds one array (one model input); .npz holds one array per input, in the archive's order;
.pt holds a tensor, or a tuple/list of tensors, saved by `torch.save` (a zip archive) and loaded
with `weights_only=True` so no pickled code runs. Arrays become tensors; anything else is an
input error naming the file.

Every size is checked against the memory cap before anything is read or inflated: the file must
be a regular file; a .npy header's shape times its item size must fit under the cap and inside
the bytes the file holds (numpy allocates what the header claims before reading); a zip
archive's members (.npz, .pt) must inflate, as they declare, to no more than the cap, and each
.npz member's header must fit inside its member.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from gradaudit.errors import InputError
from gradaudit.limits import default_max_memory, format_size, regular_file_size, require_archive_fits, require_fits

DATA_SUFFIXES = (".npy", ".npz", ".pt")


def read_batch(path: str, max_memory: int | None = None) -> tuple[torch.Tensor, ...]:
    """The model inputs stored in `path`, as a tuple of tensors, read under `max_memory` bytes
    (default: the memory cap)."""
    file = Path(path)
    if file.suffix.lower() not in DATA_SUFFIXES:
        raise InputError(f"--data {path}: expected a {', '.join(DATA_SUFFIXES)} file")
    if not file.exists():
        raise InputError(f"--data {path}: no such file")
    cap = default_max_memory() if max_memory is None else max_memory
    try:
        loaded = _read(file, cap, f"--data {path}")
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as problem:
        raise InputError(f"--data {path}: cannot read it ({type(problem).__name__}: {_first_line(problem)})") from None
    batch = tuple(loaded) if isinstance(loaded, (tuple, list)) else (loaded,)
    if not batch or not all(isinstance(t, torch.Tensor) for t in batch):
        raise InputError(f"--data {path}: expected a tensor or a sequence of tensors")
    return batch


def _first_line(problem: BaseException) -> str:
    lines = str(problem).strip().splitlines()
    return lines[0] if lines else ""


def _checked_header(stream: BinaryIO, available: int, cap: int, what: str) -> None:
    """Read a .npy header from `stream` and refuse an array that does not fit under `cap` or in
    the `available` bytes that follow the header (the stream is left after the header)."""
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(stream)
    size = math.prod(shape) * dtype.itemsize
    require_fits(f"{what}: the array of shape {list(shape)}", size, cap)
    if not dtype.hasobject and size > available - stream.tell():
        raise InputError(f"{what}: its header declares {format_size(size)} of shape {list(shape)}, "
                         f"more than the {format_size(available - stream.tell())} it holds")


def _read_npy(stream: BinaryIO, available: int, cap: int, what: str) -> torch.Tensor:
    _checked_header(stream, available, cap, what)
    stream.seek(0)
    return torch.from_numpy(np.lib.format.read_array(stream, allow_pickle=False))


def _read(file: Path, cap: int, what: str) -> object:
    suffix = file.suffix.lower()
    size = regular_file_size(file, what)
    if suffix == ".npy":
        require_fits(what, size, cap)
        with open(file, "rb") as stream:
            return _read_npy(stream, size, cap, what)
    members = require_archive_fits(file, cap, what)
    if suffix == ".npz":
        with zipfile.ZipFile(file) as archive:
            return [_read_npy(io.BytesIO(archive.read(m)), m.file_size, cap, f"{what} member {m.filename!r}")
                    for m in members if m.filename.endswith(".npy")]
    return torch.load(file, weights_only=True, map_location="cpu")
