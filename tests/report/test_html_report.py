"""The HTML report: self-contained, escaped, its data blob intact, its CSP matching its inlines."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from gradaudit.report import Format, render
from gradaudit.report.common import clean, flow_band, layer_rows, recommendation_order, worst_layers
from gradaudit.report.html_report import (
    HEADLINE_CHARS,
    SCRIPT,
    STYLESHEET,
    content_security_policy,
    render_html_fragment,
    script_json,
    template_text,
)
from gradaudit.report.json_report import to_dict
from tests.report import fixtures

# the JSON data blob, the words the chart script draws, and the chart script itself
OUR_SCRIPTS = ['<script type="application/json" class="gradaudit-data">',
               '<script type="application/json" class="gradaudit-words">', "<script>"]
DATA_BLOB = re.compile(r'<script type="application/json" class="gradaudit-data">(.*?)</script>', re.S)


def _blob(html: str) -> list:
    return json.loads(DATA_BLOB.search(html).group(1))


def test_script_json_cannot_close_a_script_element():
    text = script_json({"name": "</script><!-- & \u2028\u2029"})
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == {"name": "</script><!-- & \u2028\u2029"}


def test_hostile_strings_never_become_markup():
    html = render(fixtures.hostile_audit(), Format.HTML)
    assert html.count("<script") == 3  # the JSON data blob, the script's words and our chart script
    assert re.findall(r"<script[^>]*>", html) == OUR_SCRIPTS
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
    for needle in (
        'class="banner verdict-fail"',
        'class="flow-chart" data-report="0"',
        'class="layer-table"',
        "measured-vanishing-gradients",
        "Real backward passes show gradients shrinking toward the input.",
        "<pre><code>for m in model.modules():",
        "<strong>10^-4.8</strong> before, <strong>10^-0.8</strong> after",
        "Pruning / weight cutting",
        "Normalization",
        "Learning-rate adaptation",
        "Batch shift",
        "chain rule",
        "Why gradients explode or vanish",
    ):
        assert needle in html, needle
    assert html.index("severity-error") < html.index("severity-warning") < html.index("severity-info")


def test_summary_comes_first_and_details_are_folded():
    html = render(fixtures.unhealthy_audit(), Format.HTML)
    order = ['class="banner verdict-fail"', "<h2>What to do</h2>", 'class="flow-chart"', "<h2>Findings (3)</h2>",
             '<details class="layer-details">', 'class="layer-table"', "<h2>Model and run</h2>"]
    positions = [html.index(needle) for needle in order]
    assert positions == sorted(positions)
    assert "<details open" not in html  # the layer table and long lists start folded


def test_recommendations_in_order_of_verified_benefit():
    audit = fixtures.unhealthy_audit()
    first = audit.recommendations[0]
    recs = [
        dataclasses.replace(first, action="failed fix", verified={"log10_ratio_before": -4.8, "log10_ratio_after": -4.7,
                                                                  "helped": False}),
        dataclasses.replace(first, action="unverified fix", verified=None),
        dataclasses.replace(first, action="small fix", verified={"log10_ratio_before": -4.8, "log10_ratio_after": -3.5,
                                                                 "helped": True}),
        dataclasses.replace(first, action="big fix", verified={"log10_ratio_before": -4.8, "log10_ratio_after": 0.2,
                                                               "helped": True}),
    ]
    assert recommendation_order(recs) == [3, 2, 1, 0]
    html = render(dataclasses.replace(audit, recommendations=recs), Format.HTML)
    shown = [
        html.index(f'<div class="action">{action}')
        for action in ("big fix", "small fix", "unverified fix", "failed fix")
    ]
    assert shown == sorted(shown)
    assert html.index("verified: helps") < html.index("not verified") < html.index("did not help")
    text = render(dataclasses.replace(audit, recommendations=recs), Format.TEXT)
    assert [text.index(action) for action in ("big fix", "small fix", "unverified fix", "failed fix")] == sorted(
        text.index(action) for action in ("big fix", "small fix", "unverified fix", "failed fix"))
    assert text.index("Recommendations (4)") < text.index("Gradient flow")


def test_long_layer_lists_show_the_first_names_and_fold_the_rest():
    audit = fixtures.unhealthy_audit()
    html = render(audit, Format.HTML)
    names = [clean(name) for name in audit.recommendations[0].layers]
    folded = (
        f'layers: {", ".join(names[:3])} <details class="more"><summary>and {len(names) - 3} more</summary>'
        f'<p>{", ".join(names[3:])}</p></details>'
    )
    assert folded in html


def test_long_actions_show_their_start_and_fold_the_whole():
    audit = fixtures.unhealthy_audit()
    action = "scale " + ", ".join(f"layers.{i} x0.5" for i in range(60))
    html = render(
        dataclasses.replace(audit, recommendations=[dataclasses.replace(audit.recommendations[0], action=action)]),
        Format.HTML,
    )
    shown = html.split('<div class="action">', 1)[1].split(" <details", 1)[0]
    assert shown.endswith(" …") and len(shown) <= HEADLINE_CHARS + 2 and action.startswith(shown[:-2])
    assert f"<summary>full text</summary><p>{action}</p>" in html


def test_chart_band_and_worst_layers_come_from_the_diagnosis_thresholds():
    audit = fixtures.unhealthy_audit()  # measured values fall from ~-5.6 at the first layer to ~-1 at the last
    rows = layer_rows(audit)
    low, high = flow_band(rows)
    last = rows[-1].measured_log10
    assert low == pytest.approx(last - 3.0) and high == pytest.approx(last + 2.0)
    worst = worst_layers(rows, (low, high))
    assert worst == [0, 1, 2]  # the first layers, where the gradient has vanished furthest
    page = _blob(render(audit, Format.HTML))[0]
    assert page["band"] == pytest.approx([low, high]) and page["worst"] == worst
    exploding = [dataclasses.replace(row, measured_log10=10.0 + index) for index, row in enumerate(rows)]
    assert flow_band(exploding) == pytest.approx((-1.0, 4.0))  # never above the 10^4 absolute limit
    assert worst_layers(exploding, flow_band(exploding)) == [21, 22, 23]
    assert worst_layers(rows, (-10.0, 10.0)) == []  # nothing outside: nothing labelled


def test_stylesheet_is_scoped_to_the_report():
    css = re.sub(r"/\*.*?\*/", "", template_text(STYLESHEET), flags=re.S)
    selectors = [sel.strip() for block in re.findall(r"([^{}]+)\{[^{}]*\}", css)
                 for sel in block.split(",") if not sel.strip().startswith("@")]
    assert selectors and all(sel.startswith(".gradaudit-report") for sel in selectors), selectors
    print_css = css[css.index("@media print"):]
    assert "details::details-content" in print_css  # printing shows folded parts


def test_fragment_is_the_same_report_in_one_scoped_wrapper():
    audit = fixtures.unhealthy_audit()
    fragment = render_html_fragment([audit])
    page = render(audit, Format.HTML)
    assert fragment.startswith('<div class="gradaudit-report">') and fragment.rstrip().endswith("</div>")
    assert not re.search(r"<(html|head|body|meta|title|link)\b", fragment)
    body = page.split('<main class="gradaudit-report">\n', 1)[1].split("</main>", 1)[0]
    assert body in fragment  # the same summary-first report
    assert template_text(STYLESHEET) in fragment
    assert not re.search(r"""(src|href)\s*=\s*["']?(?!#)|@import|url\(""", fragment)  # no request of any kind
    hostile = render_html_fragment([fixtures.hostile_audit()])  # no CSP in a notebook: escaping alone holds
    assert not re.search(r"<(img|b|iframe)\b", hostile) and "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile
    assert re.findall(r"<script[^>]*>", hostile) == OUR_SCRIPTS


def test_healthy_and_skipped_reports_say_so():
    healthy = render(fixtures.healthy_audit(), Format.HTML)
    assert 'verdict-pass' in healthy and "No findings" in healthy
    skipped = render(fixtures.probe_skipped_audit(), Format.HTML)
    assert "skipped: unsupported ONNX operator(s): NonMaxSuppression" in skipped
    assert _blob(skipped)[0]["report"]["gradient_flow"]["dynamic"] is None


def test_the_best_change_shows_its_trial_training_before_and_after():
    from tests.report.test_text_report import TRIAL

    audit = fixtures.unhealthy_audit()
    audit.recommendations[0].verified = dict(audit.recommendations[0].verified, trial=TRIAL)
    page = re.sub(r"\s+", " ", render(audit, Format.HTML))
    assert ("trial training (momentum, lr 0.01, 50 steps): loss <strong>2.5e+09 → —</strong> (diverges at step 3) "
            "before, <strong>1.7 → 1.1</strong> (trains) after") in page
