"""The HTML report: self-contained, escaped, its data blob intact, its CSP matching its inlines."""

from __future__ import annotations

import json
import re

from gradaudit.report import Format, render
from gradaudit.report.common import clean
from gradaudit.report.html_report import SCRIPT, STYLESHEET, content_security_policy, script_json, template_text
from gradaudit.report.json_report import to_dict
from tests.report import fixtures

DATA_BLOB = re.compile(r'<script type="application/json" id="gradaudit-data">(.*?)</script>', re.S)


def _blob(html: str) -> list:
    return json.loads(DATA_BLOB.search(html).group(1))


def test_script_json_cannot_close_a_script_element():
    text = script_json({"name": "</script><!-- & \u2028\u2029"})
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == {"name": "</script><!-- & \u2028\u2029"}


def test_hostile_strings_never_become_markup():
    html = render(fixtures.hostile_audit(), Format.HTML)
    assert html.count("<script") == 2  # the JSON data blob and our chart script
    assert re.findall(r"<script[^>]*>", html) == ['<script type="application/json" id="gradaudit-data">', "<script>"]
    assert not re.search(r"<(img|b|iframe)\b", html)
    assert 'href="javascript:' not in html and "\x1b" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_data_blob_round_trips_to_the_json_report():
    audit = fixtures.hostile_audit()
    blob = _blob(render(audit, Format.HTML))
    assert blob[0]["report"] == to_dict(audit)
    assert [row["name"] for row in blob[0]["layers"]] == [clean(name) for name in fixtures.HOSTILE_NAMES]
    assert blob[0]["layers"][0]["name"] == "<script>alert(1)</script>"  # intact as data, inert as markup


def test_self_contained_with_no_external_reference():
    html = render(fixtures.unhealthy_audit(), Format.HTML)
    assert not re.search(r"""(src|href)\s*=|@import|url\(|https?://(?!www\.w3\.org/2000/svg)""", html)
    assert template_text(STYLESHEET) in html and template_text(SCRIPT) in html


def test_csp_blocks_everything_but_our_inline_style_and_script():
    html = render(fixtures.unhealthy_audit(), Format.HTML)
    csp = content_security_policy(template_text(STYLESHEET), template_text(SCRIPT))
    assert csp.startswith("default-src 'none';")
    assert csp.replace("'", "&#39;") in html


def test_contents_a_reader_needs():
    html = render(fixtures.unhealthy_audit(), Format.HTML)
    for needle in ('class="banner verdict-fail"', 'class="flow-chart" data-report="0"', 'class="layer-table"',
                   "measured-vanishing-gradients",
                   "Real backward passes show gradients shrinking toward the input.", "<pre><code>for m in model.modules():",
                   "10^-4.8 before, 10^-0.8 after", "Pruning / weight cutting", "Normalization",
                   "Learning-rate adaptation", "Batch shift", "chain rule", "Why gradients explode or vanish"):
        assert needle in html, needle
    assert html.index("severity-error") < html.index("severity-warning") < html.index("severity-info")


def test_healthy_and_skipped_reports_say_so():
    healthy = render(fixtures.healthy_audit(), Format.HTML)
    assert 'verdict-pass' in healthy and "No findings" in healthy
    skipped = render(fixtures.probe_skipped_audit(), Format.HTML)
    assert "skipped: unsupported ONNX operator(s): NonMaxSuppression" in skipped
    assert _blob(skipped)[0]["report"]["gradient_flow"]["dynamic"] is None
