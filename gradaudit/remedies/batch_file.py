"""`--data FILE`: a real batch for the probe, so batch-shift remedies use the user's statistics.

.npy holds one array (one model input); .npz holds one array per input, in the archive's order;
.pt holds a tensor, or a tuple/list of tensors, loaded with `weights_only=True` so no pickled code
runs. Arrays become tensors; anything else is an input error naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gradaudit.errors import InputError

DATA_SUFFIXES = (".npy", ".npz", ".pt")


def read_batch(path: str) -> tuple[torch.Tensor, ...]:
    """The model inputs stored in `path`, as a tuple of tensors."""
    file = Path(path)
    if file.suffix.lower() not in DATA_SUFFIXES:
        raise InputError(f"--data {path}: expected a {', '.join(DATA_SUFFIXES)} file")
    if not file.is_file():
        raise InputError(f"--data {path}: no such file")
    try:
        loaded = _read(file)
    except (OSError, ValueError, RuntimeError, EOFError) as problem:
        raise InputError(f"--data {path}: cannot read it ({type(problem).__name__}: {problem})") from None
    batch = tuple(loaded) if isinstance(loaded, (tuple, list)) else (loaded,)
    if not batch or not all(isinstance(t, torch.Tensor) for t in batch):
        raise InputError(f"--data {path}: expected a tensor or a sequence of tensors")
    return batch


def _read(file: Path) -> object:
    suffix = file.suffix.lower()
    if suffix == ".npy":
        return torch.from_numpy(np.load(file, allow_pickle=False))
    if suffix == ".npz":
        with np.load(file, allow_pickle=False) as archive:
            return [torch.from_numpy(archive[name]) for name in archive.files]
    return torch.load(file, weights_only=True, map_location="cpu")
