"""No file a command writes may be a file it reads.

`check DIR --json DIR/model.onnx` would replace a model being checked, and `--json` or `fix -o`
naming a model's external data file would corrupt the model. So, before any work, every output
path is compared with every input of the run: the models (after a folder is expanded into its
model files; a `file.py:factory` spec's file), the external data files of ONNX models, the
`--data` batch, the config file and the baseline read. Two paths are the same file when they
resolve to the same path (symlinks followed) or, both existing, `os.path.samefile` says so (hard
links). Two outputs naming one file are refused as well: one would silently replace the other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from gradaudit.errors import InputError


def model_inputs(sources: Sequence[str], outputs: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(what, path) for each file the models of a run are read from; an ONNX model's external
    data files only where one of `outputs` could be one (finding them parses the model)."""
    from gradaudit.loaders import TORCH_SUFFIXES, is_factory_spec
    from gradaudit.onnx_exec.external_data import external_data_files

    for source in sources:
        if is_factory_spec(source):
            target = source.rpartition(":")[0]
            if target.endswith(".py"):
                yield "factory file", target
            continue
        yield "model", source
        if Path(source).is_file() and Path(source).suffix.lower() not in TORCH_SUFFIXES \
                and _may_be_external_data(source, outputs):
            yield from ((f"external data file of {source}", data) for data in external_data_files(source))


def _may_be_external_data(model: str, outputs: Sequence[str]) -> bool:
    """External data lives inside the model's folder (gradaudit.onnx_exec.external_data), so only an
    output resolving there, or an existing file with other hard links, can be one of its files."""
    folder = Path(model).resolve().parent
    for output in outputs:
        path = Path(output)
        if path.resolve().is_relative_to(folder) or (path.is_file() and path.stat().st_nlink > 1):
            return True
    return False


def same_file(first: str, second: str) -> bool:
    """Whether two paths name one file: equal once resolved, or the same inode (a hard link)."""
    if Path(first).resolve() == Path(second).resolve():
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist yet
        return False


def refuse_outputs_over_inputs(outputs: Mapping[str, str | None], inputs: Iterable[tuple[str, str | None]]) -> None:
    """InputError (one line) when an output is an input of the run, or two outputs are one file."""
    asked = [(flag, path) for flag, path in outputs.items() if path]
    if not asked:
        return
    for what, path in inputs:
        for flag, output in asked:
            if path and same_file(output, path):
                raise InputError(f"{flag} {output}: refusing to overwrite the input {what} {path}")
    for index, (flag, output) in enumerate(asked):
        for other_flag, other in asked[index + 1:]:
            if same_file(output, other):
                raise InputError(f"{flag} {output} and {other_flag} {other} name the same file")
