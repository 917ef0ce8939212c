"""Turn what the user passed (a factory spec or a saved file) into a torch module.

Sources: "pkg.module:factory" (imported), "path/to/file.py:factory" (loaded by path, its folder
on sys.path while it loads; the factory returns a module, (module, example_inputs) or (module,
example_inputs, loss_fn)), a `.pt2` file (torch.export; without trust only a checked copy that
runs nothing from the file, gradaudit.loaders.pt2_archive), a TorchScript file or a `.pt/.pth`
holding a whole pickled module — these two only with trust, because loading them runs code from
the file (the same reason bandit flags `torch.load`). Every failure is an InputError with one line naming it.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import pickle
import sys
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gradaudit.errors import InputError
from gradaudit.limits import default_max_memory, regular_file_size, require_archive_fits, require_fits


def first_line(error: BaseException) -> str:
    """`Type: first line of the message` — enough to recognise an error without a traceback."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def resolve_factory(source: str) -> Any:
    """The callable a factory spec names (a dotted attribute path is followed: `Class.method`)."""
    target, _, path = source.rpartition(":")
    found = _load_file(target) if target.endswith(".py") else _import(target)
    for depth, attr in enumerate(path.split("."), start=1):
        if not hasattr(found, attr):
            raise InputError(f"{target} has no attribute {'.'.join(path.split('.')[:depth])!r}")
        found = getattr(found, attr)
    return found


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise InputError(f"cannot import module {name!r} ({first_line(error)})") from error
    except Exception as error:
        raise InputError(f"importing module {name!r} raised {first_line(error)}") from error


def _load_file(path_text: str) -> Any:
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise InputError(f"file not found: {path_text}")
    spec = importlib.util.spec_from_file_location(f"gradaudit_user_{path.stem}_{uuid.uuid4().hex[:8]}", path)
    assert spec is not None and spec.loader is not None
    namespace = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules[spec.name] = namespace  # dataclasses and pickling look the module up by its name
    try:
        spec.loader.exec_module(namespace)
    except Exception as error:
        del sys.modules[spec.name]
        raise InputError(f"loading {path_text} raised {first_line(error)}") from error
    finally:
        sys.path.remove(str(path.parent))
    return namespace


def call_factory(factory: Any, source: str) -> tuple[torch.nn.Module, tuple | None, Callable | None]:
    """Call a factory; it returns a module, (module, example_inputs) or (module, example_inputs,
    loss_fn), example_inputs possibly None. `loss_fn(outputs, inputs) -> scalar tensor` is the
    run's own loss: the probe, the sharpness and the trial runs then use it, whatever `--loss`."""
    if not callable(factory):
        raise InputError(f"{source} is not callable")
    try:
        result = factory()
    except Exception as error:
        raise InputError(f"the factory {source} raised {first_line(error)}") from error
    parts = result if isinstance(result, tuple) and len(result) in (2, 3) else (result,)
    module, example, loss_fn = (*parts, None, None)[:3]
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"the factory {source} returned {type(module).__name__}, not a torch.nn.Module")
    if loss_fn is not None and not callable(loss_fn):
        raise InputError(f"the loss the factory {source} returned is a {type(loss_fn).__name__}, not a callable")
    if example is None:
        return module, None, loss_fn
    example = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    if not all(isinstance(x, torch.Tensor) for x in example):
        raise InputError(f"the example inputs of {source} must be a tensor or a tuple of tensors")
    return module, example, loss_fn


def load_file(path_text: str, trust: bool, max_memory: int | None = None) -> torch.nn.Module:
    """A module saved to a file: torch.export (.pt2), TorchScript, or a pickled whole module.

    Before any of it is read, the file (or, for a zip archive, what its members inflate to) must
    fit under `max_memory` bytes (default: the memory cap)."""
    path = Path(path_text)
    if not path.is_file():
        raise InputError(f"file not found: {path_text}")
    cap = default_max_memory() if max_memory is None else max_memory
    if zipfile.is_zipfile(path):
        require_archive_fits(path, cap, path_text)
    else:
        require_fits(path_text, regular_file_size(path, path_text), cap)
    if path.suffix == ".pt2":
        return _load_exported(path_text, trust)
    if _is_torchscript(path):
        if not trust:
            raise InputError(f"{path_text} is a TorchScript archive: a program whose code runs when it is loaded and "
                             "called, so gradaudit loads it only with --trust (trust=True) for a file you trust")
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as error:  # a zip with a code/ folder is not yet a TorchScript archive
            raise InputError(f"cannot load {path_text} as TorchScript ({first_line(error)})") from error
    return _load_pickle(path, path_text, trust)


def _load_exported(path_text: str, trust: bool) -> torch.nn.Module:
    """A torch.export program; untrusted, only the checked copy of it that runs nothing (pt2_archive)."""
    from gradaudit.loaders.pt2_archive import safe_archive

    archive = path_text if trust else io.BytesIO(safe_archive(path_text))
    try:
        return torch.export.load(archive).module()
    except Exception as error:
        raise InputError(f"cannot load {path_text} with torch.export.load ({first_line(error)})") from error


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code under `<name>/code/`; torch.save archives do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _load_pickle(path: Path, path_text: str, trust: bool) -> torch.nn.Module:
    try:
        content = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as error:
        if not trust:
            raise InputError(
                f"{path_text} holds a pickled object; unpickling runs arbitrary code, so gradaudit loads it "
                "only with --trust (trust=True) for a file you trust"
            ) from error
        content = _unpickle_trusted(path, path_text)
    except Exception as error:
        raise InputError(f"cannot read {path_text} as a torch file ({first_line(error)})") from error
    if isinstance(content, dict):
        raise InputError(
            f"{path_text} holds a state dict: weights without the architecture; "
            "pass a factory (module:function or file.py:function) that builds the model instead"
        )
    if not isinstance(content, torch.nn.Module):
        raise InputError(f"{path_text} holds a {type(content).__name__}, not a torch.nn.Module")
    return content


def _unpickle_trusted(path: Path, path_text: str) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as error:
        raise InputError(f"cannot unpickle {path_text} ({first_line(error)})") from error
