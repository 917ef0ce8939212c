"""Self-contained HTML report: one file, no external request of any kind.

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

from gradaudit.report.common import finite_or_none, layer_rows, severity_rank, tool_version
from gradaudit.report.json_report import SCHEMA_ID, to_dict
from gradaudit.results import Audit

TEMPLATE = "report.html.j2"
STYLESHEET = "report.css"
SCRIPT = "report.js"
PROBE_COLUMNS = ("weight_rms", "act_mean", "act_std", "dead_frac", "saturated_frac")
REMEDY_TITLES = {
    "pruning": "Pruning / weight cutting",
    "normalization": "Normalization",
    "lr_adaptation": "Learning-rate adaptation",
    "batch_shift": "Batch shift (re-centering)",
    "reinitialization": "Re-initialisation",
    "gradient_clipping": "Gradient clipping",
}
# Characters that could end a <script> element or a JS string when JSON sits inside HTML.
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def template_text(name: str) -> str:
    """A file from the templates folder: the installed `gradaudit.templates`, else the checkout's."""
    try:
        return resources.files("gradaudit.templates").joinpath(name).read_text(encoding="utf-8")
    except ModuleNotFoundError:
        return (Path(__file__).resolve().parents[2] / "templates" / name).read_text(encoding="utf-8")


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


def _table_rows(audit: Audit, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Layer rows (predicted vs measured) with the probe's activation statistics joined in."""
    dynamic = report["gradient_flow"]["dynamic"] or {"layers": []}
    probed = {layer["param"]: layer for layer in dynamic["layers"]}
    rows = []
    for row in layer_rows(audit):
        stats = probed.get(row.param, {})
        rows.append(dataclasses.asdict(row) | {key: stats.get(key) for key in PROBE_COLUMNS})
    return rows


def _fmt(spec: str, suffix: str = "", scale: float = 1.0) -> Callable[[Any], str]:
    """A template formatter: `value` per `spec`, or a dash where it is missing or non-finite."""

    def format_value(value: Any) -> str:
        number = finite_or_none(value)
        return "—" if number is None else format(number * scale, spec) + suffix

    return format_value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.globals.update(
        num=_fmt("+.2f"),
        sci=_fmt(".3g"),
        pct=_fmt(".0f", "%", 100.0),
        seconds=_fmt(".2f", " s"),
        ratio=lambda value: "n/a" if finite_or_none(value) is None else f"10^{value:+.1f}",
        remedy_titles=REMEDY_TITLES,
    )
    return env


def _page(audit: Audit) -> dict[str, Any]:
    """What the template shows of one model: its report data, layer rows, findings worst first."""
    report = to_dict(audit)
    findings = sorted(report["findings"], key=lambda f: severity_rank(f["severity"]))
    return {"report": report, "layers": _table_rows(audit, report), "findings": findings}


def _title(pages: list[dict[str, Any]]) -> str:
    if len(pages) == 1:
        report = pages[0]["report"]
        return f"gradaudit: {report['verdict']} — {report['model']['source']}"
    return f"gradaudit: {len(pages)} models"


def render_html(audits: Sequence[Audit], *, color: bool = False) -> str:
    """The HTML report as one self-contained page, a section per model; `color` is ignored."""
    pages = [_page(audit) for audit in audits]
    css, js = template_text(STYLESHEET), template_text(SCRIPT)
    template = _environment().from_string(template_text(TEMPLATE))
    return template.render(
        pages=pages,
        title=_title(pages),
        version=tool_version(),
        schema_id=SCHEMA_ID,
        css=Markup(css),
        js=Markup(js),
        csp=content_security_policy(css, js),
        data_json=Markup(script_json([{"report": p["report"], "layers": p["layers"]} for p in pages])),
    )
