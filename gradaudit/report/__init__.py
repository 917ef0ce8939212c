"""Renderers of audits: one module per output format behind one signature.

Every renderer is `render_<fmt>(audits, *, color) -> str` over one or more audits (one per model
checked) and only formats: the numbers, findings and recommendations all come from the `Audit`s.
Several models make one document: concatenated text, a JSON array of reports, one SARIF run or
one JUnit testsuite per model, one HTML page with a section per model. Each renderer module
(`*_report.py`, found here by name) declares its format with `@report_format`
(gradaudit.report.formats), which is all the CLI reads. Files are written through
`write_atomic`, so an interrupted or failed write never leaves a partial report behind.
"""

from __future__ import annotations

import enum
import importlib
import os
import pkgutil
import tempfile
from pathlib import Path
from typing import Sequence

from gradaudit.report.formats import REPORT_FORMATS, ReportFormat
from gradaudit.results import Audit


class Format(str, enum.Enum):
    """The built-in formats, in the order the CLI lists them; the value is the name used on the
    command line (`--format json`). A format registered elsewhere is named by its string."""

    TEXT = "text"
    JSON = "json"
    HTML = "html"
    SARIF = "sarif"
    JUNIT = "junit"


def report_formats() -> list[ReportFormat]:
    """Every registered format: the built-in ones in `Format` order, then the others as registered."""
    built_in = [member.value for member in Format]
    return sorted(REPORT_FORMATS.values(),
                  key=lambda declared: built_in.index(declared.name) if declared.name in built_in else len(built_in))


def render_all(audits: Sequence[Audit], fmt: Format | str, *, color: bool = False) -> str:
    """Render the audits of one run as one document in `fmt` (a `Format` or its name).

    `color` only affects terminal text. A single audit gives exactly `render(audit, fmt)`.
    """
    name = fmt.value if isinstance(fmt, Format) else fmt
    if name not in REPORT_FORMATS:
        names = ", ".join(declared.name for declared in report_formats())
        raise ValueError(f"unknown report format {fmt!r} (choose from {names})")
    if not audits:
        raise ValueError("no audit to render")
    return REPORT_FORMATS[name].render(list(audits), color=color)


def render(audit: Audit, fmt: Format | str, *, color: bool = False) -> str:
    """Render one audit in `fmt` (a `Format` or its name); `color` only affects terminal text."""
    return render_all([audit], fmt, color=color)


def write_atomic(path: str | os.PathLike[str], text: str | bytes) -> None:
    """Write `text` (or bytes: a fixed model) to `path` via a temporary file in the same folder
    and `os.replace`.

    Readers see either the old file or the complete new one; on any error the temporary file is
    removed, so nothing partial remains.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"cannot write a report to a directory: {target}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        binary = isinstance(text, bytes)
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            os.fchmod(handle.fileno(), _default_file_mode())
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _default_file_mode() -> int:
    """The mode `open()` would give a new file: mkstemp's private 0o600 is wrong for a report."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


for _renderer in pkgutil.iter_modules(__path__):
    if _renderer.name.endswith("_report"):  # importing a renderer module registers its format
        importlib.import_module(f"{__name__}.{_renderer.name}")
