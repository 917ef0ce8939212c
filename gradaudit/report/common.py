"""Formatting helpers the renderers share: string sanitising, the tool version, layer rows.

Model-supplied strings (layer names, sources, messages) reach terminals, HTML and XML. A crafted
ONNX node name can carry ANSI escapes that rewrite a terminal, or bidirectional overrides that
make text read differently than it is; `clean` removes both before any renderer sees the string,
and shows the bytes of a file name that is not valid UTF-8 as escapes (`printable`).
"""

from __future__ import annotations

import dataclasses

import math
import re
from dataclasses import dataclass

from gradaudit.results import Audit

# ESC-introduced sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), and two-byte escapes.
_ANSI_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
# C0 and C1 controls, DEL, and the Unicode bidirectional controls (Trojan Source, CVE-2021-42574).
_CONTROL = "\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL_ONE_LINE = re.compile(f"[{_CONTROL}\t\n\u2028\u2029]")
_CONTROL_MULTILINE = re.compile(f"[{_CONTROL}]")


def printable(text: str) -> str:
    """`text` encodable as UTF-8: a file name that is not valid UTF-8 reaches Python with its
    bad bytes as lone surrogates (os.fsdecode), which no UTF-8 writer takes; they are shown as
    `\\xff` escapes (any other lone surrogate as U+FFFD)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def clean(text: object, *, multiline: bool = False) -> str:
    """`text` as a string without escape sequences or control characters.

    One-line strings (names, messages) lose tabs and line breaks too; `multiline` keeps tabs and
    newlines for code snippets and documentation.
    """
    stripped = _ANSI_SEQUENCE.sub("", printable(str(text)))
    return (_CONTROL_MULTILINE if multiline else _CONTROL_ONE_LINE).sub("", stripped)


def tool_version() -> str:
    """The version reported in every artefact: the package's single `__version__`."""
    import gradaudit

    return gradaudit.__version__


def finite_or_none(value: object) -> float | None:
    """A float for JSON and charts: None for missing or non-finite values (JSON has no NaN)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def log10_or_none(value: float | None) -> float | None:
    """log10 of a positive finite value, else None (a zero gradient has no place on a log axis)."""
    number = finite_or_none(value)
    return math.log10(number) if number is not None and number > 0 else None


SEVERITY_ORDER = ("error", "warning", "info")


def severity_rank(severity: str) -> int:
    """Sort key putting errors first, then warnings, then notes (unknown severities last)."""
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


@dataclass(frozen=True)
class LayerRow:
    """One weight layer with its predicted and measured gradient scale, for tables and charts."""

    name: str
    param: str
    op: str
    role: str
    predicted_log10: float | None  # static log10 grad RMS
    measured_log10: float | None  # log10 of the probe's grad RMS
    nonfinite: bool


def layer_rows(audit: Audit) -> list[LayerRow]:
    """Join static weight estimates and probe layers by parameter, in forward order.

    Static order leads (it covers every weight layer); probe-only layers follow in probe order.
    """
    static = audit.static.weights if audit.static else []
    probed = {layer.param: layer for layer in (audit.probe.layers if audit.probe else [])}
    rows: list[LayerRow] = []
    for weight in static:
        probe = probed.pop(weight.param, None)
        rows.append(
            LayerRow(
                name=clean(weight.layer),
                param=clean(weight.param),
                op=clean(weight.op),
                role=clean(weight.role),
                predicted_log10=finite_or_none(weight.log10_grad_rms),
                measured_log10=log10_or_none(probe.grad_rms) if probe else None,
                nonfinite=bool(probe and (probe.nonfinite or not math.isfinite(probe.grad_rms))),
            )
        )
    for probe in probed.values():
        rows.append(
            LayerRow(
                name=clean(probe.layer),
                param=clean(probe.param),
                op="",
                role="",
                predicted_log10=None,
                measured_log10=log10_or_none(probe.grad_rms),
                nonfinite=probe.nonfinite or not math.isfinite(probe.grad_rms),
            )
        )
    return _disambiguated(rows)


def _disambiguated(rows: list[LayerRow]) -> list[LayerRow]:
    """A layer holding several weights (RNN, attention) shows each with its role (or parameter)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.name] = counts.get(row.name, 0) + 1
    return [
        dataclasses.replace(row, name=f"{row.name} · {row.role or row.param.rsplit('.', 1)[-1]}") if counts[row.name] > 1 else row
        for row in rows
    ]
