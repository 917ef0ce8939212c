"""Self-contained HTML report: one file, no external request of any kind.

The page is summary first: the verdict, then what to do (recommendations ordered by verified
benefit, each with its before/after figures and snippet), the gradient-flow chart, the findings
with long layer lists folded, and the per-layer table folded by default. Everything but the chart
reads without JavaScript; the script only draws the chart and enhances (table sort and filter,
copy buttons, opening folded parts for print).

`render_html_fragment` renders the same report inside one `<div class="gradaudit-report">` for a
notebook cell: every CSS selector is scoped under that class, so the report cannot restyle the
notebook around it, and the script only touches elements inside such a wrapper.

jinja2 with autoescape renders the page; the CSS and JS live as real files in `templates/` and are
inlined here. The data travels as one JSON blob in `<script type="application/json">`, escaped so
no string can close the script element, and the chart is drawn from it by vanilla JS as inline
SVG (no chart library: one line chart does not justify shipping one inside every report). A
Content-Security-Policy of `default-src 'none'` with the inline style and script allowed by hash
means that even a string that slipped through escaping could neither run nor fetch anything.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import jinja2
from markupsafe import Markup

from gradaudit.i18n import N_, _, current_language, ngettext
from gradaudit.report.common import (
    DIAGNOSIS_WORDS,
    DID_NOT_HELP,
    NOT_VERIFIED,
    REMEDY_TITLES,
    SEVERITY_WORDS,
    VERDICT_WORDS,
    VERIFIED_HELPED,
    LayerRow,
    finite_or_none,
    flow_band,
    layer_rows,
    recommendation_order,
    severity_rank,
    tool_version,
    verification_group,
    word,
    worst_layers,
)
from gradaudit.report.formats import report_format
from gradaudit.report.json_report import SCHEMA_ID, to_dict
from gradaudit.results import Audit

TEMPLATE = "report.html.j2"
STYLESHEET = "report.css"
SCRIPT = "report.js"
PROBE_COLUMNS = ("weight_rms", "act_mean", "act_std", "dead_frac", "saturated_frac")
# Each verification group's CSS class suffix and badge text.
GROUPS = {VERIFIED_HELPED: ("helps", N_("verified: helps")), NOT_VERIFIED: ("unverified", N_("not verified")),
          DID_NOT_HELP: ("no-help", N_("did not help"))}
# The words report.js writes into the page (chart labels, buttons), in the reader's language.
SCRIPT_WORDS = {
    "axis": N_("weight grad RMS (log scale)"),
    "flow_title": N_("Per-layer weight gradient RMS, predicted and measured"),
    "compare_title": N_("Weight gradient RMS of each model against relative depth"),
    "first_layer": N_("first weight layer"),
    "last_layer": N_("last weight layer"),
    "predicted": N_("predicted"),
    "measured": N_("measured"),
    "non_finite": N_("non-finite"),
    "filter": N_("filter layers"),
    "filter_hint": N_("filter layers by name or op"),
    "weight_layers": N_("{count} weight layers"),
    "copy": N_("copy"),
    "copied": N_("copied"),
    "selected": N_("selected"),
}
HEADLINE_CHARS = 240  # a longer action shows its start; the whole text is one click away
# Characters that could end a <script> element or a JS string when JSON sits inside HTML.
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def template_text(name: str) -> str:
    """A file from the templates folder: the checkout's when this package runs from a source
    checkout, else the installed `gradaudit.templates`.

    The checkout goes first because an editable install maps `gradaudit.templates` to the folder
    it was installed from, which for a second checkout (a git worktree) is not this one.
    """
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "templates" / name).is_file():
        return (root / "templates" / name).read_text(encoding="utf-8")
    return resources.files("gradaudit.templates").joinpath(name).read_text(encoding="utf-8")


def script_json(data: Any) -> str:
    """JSON safe to embed in a `<script>` element: `<`, `>`, `&`, U+2028/9 become \\u escapes."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return "".join(_SCRIPT_ESCAPES.get(ch, ch) for ch in text)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(css: str, js: str) -> str:
    """Block every fetch and every script or style except the two we inline (allowed by hash)."""
    return (
        f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )


def _table_rows(rows: list[LayerRow], report: dict[str, Any]) -> list[dict[str, Any]]:
    """Layer rows (predicted vs measured) with the probe's activation statistics joined in."""
    dynamic = report["gradient_flow"]["dynamic"] or {"layers": []}
    probed = {layer["param"]: layer for layer in dynamic["layers"]}
    return [
        dataclasses.asdict(row) | {key: probed.get(row.param, {}).get(key) for key in PROBE_COLUMNS} for row in rows
    ]


def headline(text: str) -> str:
    """The start of a long text, cut after the last separator before HEADLINE_CHARS."""
    if len(text) <= HEADLINE_CHARS:
        return text
    cut = text.rfind(", ", 0, HEADLINE_CHARS)
    return text[: cut if cut > 0 else HEADLINE_CHARS] + " …"


def _fmt(spec: str, suffix: str = "", scale: float = 1.0) -> Callable[[Any], str]:
    """A template formatter: `value` per `spec`, or a dash where it is missing or non-finite."""

    def format_value(value: Any) -> str:
        number = finite_or_none(value)
        return "—" if number is None else format(number * scale, spec) + suffix

    return format_value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.i18n"])
    env.policies["ext.i18n.trimmed"] = True  # {% trans %} blocks are one message however they wrap
    # new-style gettext: `_()` escapes its arguments and formats after translating
    env.install_gettext_callables(_, ngettext, newstyle=True)
    env.globals.update(
        word=word,
        verdict_words=VERDICT_WORDS,
        diagnosis_words=DIAGNOSIS_WORDS,
        severity_words=SEVERITY_WORDS,
        num=_fmt("+.2f"),
        sci=_fmt(".3g"),
        pct=_fmt(".0f", "%", 100.0),
        seconds=_fmt(".2f", " s"),
        ratio=lambda value: "n/a" if finite_or_none(value) is None else f"10^{value:+.1f}",
        remedy_titles=REMEDY_TITLES,
        groups=GROUPS,
        headline=headline,
    )
    return env


def _page(audit: Audit) -> dict[str, Any]:
    """What the template shows of one model: its report data, recommendations in the order to act
    on them (each with its verification group), findings worst first, layer rows, and the chart's
    healthy band and worst layers."""
    report = to_dict(audit)
    findings = sorted(report["findings"], key=lambda f: severity_rank(f["severity"]))
    recommendations = [
        report["recommendations"][index] | {"group": verification_group(audit.recommendations[index].verified)}
        for index in recommendation_order(audit.recommendations)
    ]
    rows = layer_rows(audit)
    band = flow_band(rows)
    return {"report": report, "layers": _table_rows(rows, report), "findings": findings,
            "recommendations": recommendations, "band": list(band), "worst": worst_layers(rows, band)}


def _title(pages: list[dict[str, Any]]) -> str:
    if len(pages) == 1:
        report = pages[0]["report"]
        return f"gradaudit: {word(VERDICT_WORDS, report['verdict'])} — {report['model']['source']}"
    return "gradaudit: " + ngettext("{count} model", "{count} models", len(pages)).format(count=len(pages))


@report_format("html", also_write="--html", also_write_help="Also write the HTML report here.")
def render_html(audits: Sequence[Audit], *, color: bool = False) -> str:
    """The HTML report as one self-contained page, a section per model; `color` is ignored."""
    return _render(audits, fragment=False)


def render_html_fragment(audits: Sequence[Audit]) -> str:
    """The same report as one `<div class="gradaudit-report">` to embed in a notebook cell."""
    return _render(audits, fragment=True)


def _render(audits: Sequence[Audit], *, fragment: bool) -> str:
    pages = [_page(audit) for audit in audits]
    css, js = template_text(STYLESHEET), template_text(SCRIPT)
    template = _environment().from_string(template_text(TEMPLATE))
    return template.render(
        fragment=fragment,
        pages=pages,
        title=_title(pages),
        lang=current_language(),
        version=tool_version(),
        schema_id=SCHEMA_ID,
        css=Markup(css),
        js=Markup(js),
        csp=content_security_policy(css, js),
        data_json=Markup(script_json([{key: p[key] for key in ("report", "layers", "band", "worst")} for p in pages])),
        words_json=Markup(script_json({key: _(text) for key, text in SCRIPT_WORDS.items()})),
    )
