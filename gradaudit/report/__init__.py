"""Renderers of audits: one module per output format behind one signature.

Every renderer is `render_<fmt>(audits, *, color) -> str` over one or more audits (one per model
checked) and only formats: the numbers, findings and recommendations all come from the `Audit`s.
Several models make one document: concatenated text, a JSON array of reports, one SARIF run or
one JUnit testsuite per model, one HTML page with a section per model. `Format` lists the
formats the CLI offers; a test checks each member has a renderer, so a new format cannot ship
half-wired. Files are written through `write_atomic`, so an interrupted or failed write never
leaves a partial report behind.
"""

from __future__ import annotations

import enum
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from gradaudit.report import html_report, json_report, junit_report, sarif_report, text_report
from gradaudit.results import Audit


class Format(str, enum.Enum):
    """Output formats; the value is the name used on the command line (`--format json`)."""

    TEXT = "text"
    JSON = "json"
    HTML = "html"
    SARIF = "sarif"
    JUNIT = "junit"


Renderer = Callable[..., str]

RENDERERS: dict[Format, Renderer] = {
    Format.TEXT: text_report.render_text,
    Format.JSON: json_report.render_json,
    Format.HTML: html_report.render_html,
    Format.SARIF: sarif_report.render_sarif,
    Format.JUNIT: junit_report.render_junit,
}


def render_all(audits: Sequence[Audit], fmt: Format | str, *, color: bool = False) -> str:
    """Render the audits of one run as one document in `fmt` (a `Format` or its name).

    `color` only affects terminal text. A single audit gives exactly `render(audit, fmt)`.
    """
    try:
        chosen = Format(fmt)
    except ValueError:
        names = ", ".join(f.value for f in Format)
        raise ValueError(f"unknown report format {fmt!r} (choose from {names})") from None
    if not audits:
        raise ValueError("no audit to render")
    return RENDERERS[chosen](list(audits), color=color)


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
