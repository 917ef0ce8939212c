"""Formatting helpers the renderers share: string sanitising, the tool version, layer rows, the
order recommendations are shown in, and the healthy band a gradient-flow chart shades.

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

from gradaudit.diagnosis import (
    EXPLODING_ABS_SCALE,
    EXPLODING_LOG10_RATIO,
    VANISHING_ALL_GRAD_RMS,
    VANISHING_LOG10_RATIO,
)
from gradaudit.i18n import N_, _
from gradaudit.results import Audit, Recommendation, Severity
from gradaudit.version import __version__

# The words of the JSON contract a person reads in the reports, marked for translation: the JSON
# itself keeps the English values.
VERDICT_WORDS = {"pass": N_("pass"), "warn": N_("warn"), "fail": N_("fail")}
DIAGNOSIS_WORDS = {"exploding": N_("exploding"), "vanishing": N_("vanishing"), "healthy": N_("healthy")}
SEVERITY_WORDS = {"error": N_("error"), "warning": N_("warning"), "info": N_("info")}
# The four remedies under the names the method uses, and the two honest extras.
REMEDY_TITLES = {
    "pruning": N_("Pruning / weight cutting"),
    "normalization": N_("Normalization"),
    "lr_adaptation": N_("Learning-rate adaptation"),
    "batch_shift": N_("Batch shift (re-centering)"),
    "reinitialization": N_("Re-initialisation"),
    "gradient_clipping": N_("Gradient clipping"),
}


def word(table: dict[str, str], value: str) -> str:
    """A contract value (verdict, diagnosis, severity, remedy) as the reader's language names it;
    a value the table lacks is shown as it is."""
    return _(table[value]) if value in table else value

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
    return __version__


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


def severity_rank(severity: str) -> int:
    """Sort key putting errors first, then warnings, then notes (unknown severities last)."""
    return -Severity.rank(severity)


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
        dataclasses.replace(row, name=f"{row.name} · {row.role or row.param.rsplit('.', 1)[-1]}")
        if counts[row.name] > 1
        else row
        for row in rows
    ]


# Groups of `recommendation_order`: verified and helped, not verified, verified and did not help.
VERIFIED_HELPED, NOT_VERIFIED, DID_NOT_HELP = 0, 1, 2


def verification_group(verified: dict | None) -> int:
    """Which group a recommendation's verification puts it in (see `recommendation_order`)."""
    if not verified:
        return NOT_VERIFIED
    return DID_NOT_HELP if verified.get("helped") is False else VERIFIED_HELPED


def verified_gain(verified: dict | None) -> float:
    """Decades by which the fix brought the first/last gradient ratio toward 1: the reduction of
    |log10 ratio| from before to after, 0 where either figure is missing."""
    before = finite_or_none((verified or {}).get("log10_ratio_before"))
    after = finite_or_none((verified or {}).get("log10_ratio_after"))
    return abs(before) - abs(after) if before is not None and after is not None else 0.0


def recommendation_order(recommendations: list[Recommendation]) -> list[int]:
    """Indices of `recommendations` in the order a reader should act on them.

    Verified fixes that helped come first, the largest `verified_gain` first; then fixes not
    verified, in the order the remedies produced them; then verified fixes that did not help.
    The sort is stable, so equal keys keep their original order.
    """

    def key(index: int) -> tuple[int, float]:
        verified = recommendations[index].verified
        group = verification_group(verified)
        return group, -verified_gain(verified) if group == VERIFIED_HELPED else 0.0

    return sorted(range(len(recommendations)), key=key)


def flow_band(rows: list[LayerRow]) -> tuple[float, float]:
    """The healthy band of a gradient-flow chart in log10 grad RMS, from the diagnosis thresholds.

    A first layer within 10^VANISHING_LOG10_RATIO..10^EXPLODING_LOG10_RATIO of the last layer's
    gradient is not diagnosed exploding or vanishing by ratio, and no gradient may exceed
    EXPLODING_ABS_SCALE. The band is anchored at the last layer's gradient (measured, else
    predicted), kept inside the absolute limits so it never claims a scale the diagnosis rejects.
    """
    lowest = math.log10(VANISHING_ALL_GRAD_RMS)
    highest = math.log10(EXPLODING_ABS_SCALE)
    values = [row.measured_log10 if row.measured_log10 is not None else row.predicted_log10 for row in rows]
    known = [value for value in values if value is not None]
    last = known[-1] if known else 0.0
    anchor = min(max(last, lowest - VANISHING_LOG10_RATIO), highest - EXPLODING_LOG10_RATIO)
    return anchor + VANISHING_LOG10_RATIO, anchor + EXPLODING_LOG10_RATIO


def worst_layers(rows: list[LayerRow], band: tuple[float, float], count: int = 3) -> list[int]:
    """Indices of up to `count` layers furthest outside `band` (non-finite ones first), in
    forward order, for the chart to label; none when every layer lies inside."""
    low, high = band

    def distance(row: LayerRow) -> float:
        if row.nonfinite:
            return math.inf
        value = row.measured_log10 if row.measured_log10 is not None else row.predicted_log10
        return 0.0 if value is None else max(low - value, value - high, 0.0)

    outside = [(distance(row), index) for index, row in enumerate(rows) if distance(row) > 0]
    return sorted(index for _, index in sorted(outside, key=lambda item: -item[0])[:count])
