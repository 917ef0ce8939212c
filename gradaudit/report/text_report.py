"""Terminal report: verdict first, then why, what to change, and where gradients go wrong.

Reads top-down in the order a user acts on it: verdict and diagnosis (with the reasons that
fired), a one-line model summary, the worst findings (errors first), one line per recommendation
(verified fixes that helped first, those that did not help last),
and a compact per-layer table of predicted vs measured gradient scale with a bar. Long tables
keep their first and last layers, where exploding and vanishing show. ANSI colour is opt-in;
every model-supplied string goes through `clean`, so a layer name cannot drive the terminal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from gradaudit.i18n import _, ngettext
from gradaudit.report.common import (
    DIAGNOSIS_WORDS,
    REMEDY_TITLES,
    SEVERITY_WORDS,
    VERDICT_WORDS,
    LayerRow,
    clean,
    layer_rows,
    recommendation_order,
    severity_rank,
    tool_version,
    word,
)
from gradaudit.report.formats import report_format
from gradaudit.results import Audit, Finding, Recommendation

MAX_FINDINGS = 8
MAX_RECOMMENDATIONS = 8
ACTION_WIDTH = 140  # a recommendation stays one line; the HTML and JSON reports carry it whole
TABLE_EDGE_ROWS = 8  # rows kept at each end of a long layer table
BAR_WIDTH = 24
# The bar axis spans at least this many decades, so a flat network shows flat bars instead of its
# jitter stretched over the full width (two decades is where DESIGN.md calls a ratio exploding).
MIN_BAR_DECADES = 2.0
NAME_WIDTH = 32

_ANSI = {"red": "31", "yellow": "33", "green": "32", "blue": "34", "bold": "1", "dim": "2"}
VERDICT_COLOR = {"pass": "green", "warn": "yellow", "fail": "red"}
SEVERITY_COLOR = {"error": "red", "warning": "yellow", "info": "blue"}


@dataclass(frozen=True)
class Painter:
    """Wraps text in ANSI SGR codes when colour is on, and is the identity otherwise."""

    enabled: bool

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles:
            return text
        codes = ";".join(_ANSI[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def _fmt_log(value: float | None) -> str:
    return f"{value:+.2f}" if value is not None else "—"


def _fmt_ratio(value: float | None) -> str:
    return f"10^{value:+.1f}" if value is not None else "n/a"


def _short(name: str, width: int = NAME_WIDTH) -> str:
    """`name` cut to `width` in the middle: layer paths differ most at their ends."""
    if len(name) <= width:
        return name
    head = (width - 1) // 3
    return name[:head] + "…" + name[len(name) - (width - 1 - head):]


def _layer_list(layers: list[str] | tuple[str, ...], shown: int = 3) -> str:
    names = [clean(n) for n in layers]
    extra = f" (+{len(names) - shown})" if len(names) > shown else ""
    return ", ".join(_short(n, 24) for n in names[:shown]) + extra


def _headline(audit: Audit, paint: Painter) -> list[str]:
    verdict = paint(word(VERDICT_WORDS, audit.verdict).upper(), "bold", VERDICT_COLOR.get(audit.verdict, "bold"))
    lines = [f"gradaudit {tool_version()} — {clean(audit.source)}",
             _("{verdict}  gradient flow: {diagnosis}").format(verdict=verdict,
                                                             diagnosis=word(DIAGNOSIS_WORDS, audit.diagnosis.label))]
    lines += [_("  why: {reason}").format(reason=clean(reason)) for reason in audit.diagnosis.reasons]
    if audit.probe and audit.probe.nonfinite:
        first = clean(audit.probe.first_nonfinite or "?")
        lines.append(paint(_("  non-finite values first in {layer}").format(layer=first), "red"))
    return lines


def _model_summary(audit: Audit) -> list[str]:
    probe = audit.probe
    probe_part = (
        _("probe: {passes} passes, loss {loss}").format(passes=probe.passes, loss=clean(probe.loss) or _("default"))
        if probe
        else _("probe skipped: {reason}").format(reason=clean(audit.probe_skipped) or _("not run"))
    )
    total = sum(v for v in audit.timing.values() if isinstance(v, (int, float)))
    lines = [
        _("model: {format}, {parameters:,} parameters, {weight_layers} weight layers, depth {depth}; "
          "{probe}; {seconds:.2f}s").format(format=audit.format, parameters=audit.parameters,
                                            weight_layers=audit.weight_layers, depth=audit.depth, probe=probe_part,
                                            seconds=total)
    ]
    if audit.static and audit.static.partial:
        unknown = ", ".join(clean(op) for op in audit.static.unknown_ops) or _("unrepresented parts")
        lines.append(_("static estimate partial: no gain rule for {ops}").format(ops=unknown))
    lines += [_("note: {note}").format(note=clean(note)) for note in audit.notes]
    return lines


def _findings(findings: list[Finding], paint: Painter) -> list[str]:
    if not findings:
        return [_("No findings.")]
    ordered = sorted(findings, key=lambda f: severity_rank(f.severity))
    lines = [paint(_("Findings ({count})").format(count=len(findings)), "bold")]
    for f in ordered[:MAX_FINDINGS]:
        severity = paint(f"{word(SEVERITY_WORDS, f.severity):<7}", SEVERITY_COLOR.get(f.severity, "dim"))
        where = f"  [{_layer_list(f.layers)}]" if f.layers else ""
        lines.append(f"  {severity} {clean(f.code)}  {clean(f.message)}{where}")
    if len(ordered) > MAX_FINDINGS:
        lines.append(_more(len(ordered) - MAX_FINDINGS))
    return lines


def _recommendation_line(rec: Recommendation) -> str:
    action = clean(rec.action)
    if len(action) > ACTION_WIDTH:
        action = action[: ACTION_WIDTH - 1] + "…"
    line = f"  {word(REMEDY_TITLES, rec.remedy)}: {action}"
    if rec.layers:
        line += f"  [{_layer_list(rec.layers)}]"
    if rec.verified:
        before = rec.verified.get("log10_ratio_before")
        after = rec.verified.get("log10_ratio_after")
        if isinstance(before, (int, float)) or isinstance(after, (int, float)):  # n/a: no gradient reached a layer
            line += "  (" + _("verified: first/last {before} → {after}").format(before=_fmt_ratio(before),
                                                                               after=_fmt_ratio(after))
            if "diagnosis_after" in rec.verified:
                line += (f", {word(DIAGNOSIS_WORDS, str(rec.verified.get('diagnosis_before')))} → "
                         f"{word(DIAGNOSIS_WORDS, str(rec.verified['diagnosis_after']))}")
            line += ")" if rec.verified.get("helped", True) else "; " + _("did not help") + ")"
        trial = rec.verified.get("trial")
        if trial:
            line += f"\n    {_trial_line(trial)}"
    return line


def _trial_line(trial: dict) -> str:
    """The trial training of the original and of the changed copy, as loss first -> last and outcome."""
    def run(record: dict) -> str:
        return (
            f"{_fmt_loss(record.get('first_loss'))} → {_fmt_loss(record.get('last_loss'))} ({clean(record['outcome'])})"
        )

    return _("trial training ({optimizer}, lr {lr}, {steps} steps): loss {before} before, {after} after").format(
        optimizer=clean(trial["optimizer"]), lr=f"{trial['lr']:.3g}", steps=trial["steps"],
        before=run(trial["before"]), after=run(trial["after"]))


def _fmt_loss(value: float | None) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) and math.isfinite(value) else _("non-finite")


def _more(count: int) -> str:
    """The line standing for the entries a capped list leaves out."""
    return "  " + _("+{count} more (see --json or --html)").format(count=count)


def _recommendations(recs: list[Recommendation], paint: Painter) -> list[str]:
    if not recs:
        return []
    ordered = [recs[index] for index in recommendation_order(recs)]
    lines = [paint(_("Recommendations ({count})").format(count=len(recs)), "bold")]
    lines += [_recommendation_line(r) for r in ordered[:MAX_RECOMMENDATIONS]]
    if len(recs) > MAX_RECOMMENDATIONS:
        lines.append(_more(len(recs) - MAX_RECOMMENDATIONS))
    return lines


def _bar(value: float | None, low: float, high: float) -> str:
    """A bar whose length places `value` on the table's log10 range (longer = larger gradient)."""
    if value is None:
        return ""
    span = max(high - low, MIN_BAR_DECADES)
    fraction = (value - (high - span)) / span
    return "█" * max(1, round(fraction * BAR_WIDTH))


def _table_row(index: int, row: LayerRow, low: float, high: float, paint: Painter) -> str:
    shown = row.measured_log10 if row.measured_log10 is not None else row.predicted_log10
    bar = paint(_("non-finite"), "red") if row.nonfinite else _bar(shown, low, high)
    predicted, measured = _fmt_log(row.predicted_log10), _fmt_log(row.measured_log10)
    return (
        f"  {index:>4}  {_short(row.name):<{NAME_WIDTH}}  {_short(row.op, 10):<10}  "
        f"{predicted:>9}  {measured:>9}  {bar}"
    )


def _elided(rows: list[LayerRow]) -> list[tuple[int, LayerRow] | int]:
    """Indexed rows, with the middle of a long table replaced by the count of rows left out."""
    indexed: list[tuple[int, LayerRow] | int] = list(enumerate(rows))
    if len(rows) <= 2 * TABLE_EDGE_ROWS + 1:
        return indexed
    hidden = len(rows) - 2 * TABLE_EDGE_ROWS
    return [*indexed[:TABLE_EDGE_ROWS], hidden, *indexed[-TABLE_EDGE_ROWS:]]


def _flow_table(audit: Audit, paint: Painter) -> list[str]:
    rows = layer_rows(audit)
    if not rows:
        return []
    static_ratio = audit.static.log10_ratio_first_last if audit.static else None
    probe_ratio = audit.probe.log10_ratio_first_last if audit.probe else None
    values = [v for r in rows for v in (r.predicted_log10, r.measured_log10) if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    lines = [
        paint(_("Gradient flow"), "bold") + " "
        + _("(log10 grad RMS per weight layer; first/last predicted {predicted}, measured {measured})").format(
            predicted=_fmt_ratio(static_ratio), measured=_fmt_ratio(probe_ratio)),
        f"  {'#':>4}  {_('layer'):<{NAME_WIDTH}}  {_('op'):<10}  {_('predicted'):>9}  {_('measured'):>9}",
    ]
    for item in _elided(rows):
        if isinstance(item, int):
            hidden = ngettext("({count} layer not shown)", "({count} layers not shown)", item).format(count=item)
            lines.append(paint(f"  {'…':>4}  {hidden}", "dim"))
        else:
            lines.append(_table_row(item[0], item[1], low, high, paint))
    return lines


@report_format("text")
def render_text(audits: Sequence[Audit], *, color: bool = False) -> str:
    """The terminal report of each audit, one after the other; ANSI colour only when `color`."""
    return "\n".join(_render_one(audit, color) for audit in audits)


def _render_one(audit: Audit, color: bool) -> str:
    paint = Painter(color)
    sections = [
        _headline(audit, paint) + _model_summary(audit),
        _findings(audit.findings, paint),
        _recommendations(audit.recommendations, paint),
        _flow_table(audit, paint),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"
