"""Turn what the user named into a ModelHandle: an ONNX file, or a PyTorch model.

Dispatch only; each format's loader lives in its own module and is imported lazily so that
`gradaudit --help` stays fast.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from gradaudit.errors import InputError
from gradaudit.model import ModelHandle

TORCH_SUFFIXES = {".pt", ".pth", ".pt2", ".ts", ".ptl", ".jit"}
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_FACTORY = re.compile(rf"^(?P<target>.+):(?P<attr>{_NAME}(?:\.{_NAME})*)$")


def is_factory_spec(source: str) -> bool:
    """`pkg.mod:fn`, `pkg.mod:Class.method` or `path/file.py:fn`, as opposed to a model file path
    (an existing file wins: `a:b` that exists is a file). The one test every loader uses."""
    return bool(_FACTORY.match(source)) and not Path(source).exists()


def load(
    source: str,
    input_shapes: list[tuple[int, ...]] | None = None,
    *,
    trust: bool = False,
    batch: int = 8,
    max_memory: int | None = None,
    static_only: bool = False,
) -> ModelHandle:
    """Load `source` as an ONNX file, a torch file or a factory spec; InputError when unusable.

    `max_memory` caps the bytes of tensors the model may declare (default: half of usable RAM).
    `static_only` lets an ONNX load skip what only the probe needs (gradaudit.loaders.onnx_loader);
    a factory's static-only load is `gradaudit.loaders.torch_meta.load_static_only`."""
    if is_factory_spec(source):
        from gradaudit.loaders.torch_loader import load_torch

        return load_torch(source, input_shapes, trust=trust, batch=batch, max_memory=max_memory)
    path = Path(source)
    if not path.exists():
        raise InputError(f"{source}: no such file (expected an .onnx/.pt2/.pt file or a 'module:factory' spec)")
    if path.is_dir():
        raise InputError(f"{source}: is a directory, not a model file")
    if path.suffix.lower() in TORCH_SUFFIXES or (path.suffix.lower() != ".onnx" and zipfile.is_zipfile(path)):
        from gradaudit.loaders.torch_loader import load_torch

        return load_torch(source, input_shapes, trust=trust, batch=batch, max_memory=max_memory)
    from gradaudit.loaders.onnx_loader import load_onnx

    return load_onnx(source, input_shapes, batch=batch, max_memory=max_memory, static_only=static_only)
