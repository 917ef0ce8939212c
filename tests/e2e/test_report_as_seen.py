"""What a person sees in the HTML report of the bundled unhealthy sample, in a real browser.

The README's sample (`samples/exploding_residual_stack.onnx`, checked with `--verify`) is opened in
headless Chromium at 1400x900, driven over the DevTools protocol (tests/report/browser.py): the
verdict and the first recommendation stand above the fold, the chart has one point per weight
layer, folded lists open on a click, the table sorts and filters, a narrow screen needs no
horizontal scrolling, print shows what is folded, and nothing errors or fetches. The `--lang zh`
report reads the same in Chinese, the words its script draws included.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from gradaudit.cli import main
from gradaudit.report.common import REMEDY_TITLES, recommendation_order
from gradaudit.report.html_report import headline
from tests.report.browser import Page

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "exploding_residual_stack.onnx"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="chromium is not on PATH (.ci/run installs Debian's chromium where apt-get can)"),
]


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("sample-report")
    report, data = folder / "audit.html", folder / "audit.json"
    assert main(["check", str(SAMPLE), "--verify", "--html", str(report), "--json", str(data), "--quiet"]) == 1
    return report, json.loads(data.read_text(encoding="utf-8"))


def _count(page: Page, selector: str) -> int:
    return page.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length")


def _shown(page: Page, selector: str) -> bool:
    """Whether the element is rendered: not folded away in a closed <details>, not hidden."""
    return page.evaluate(f"document.querySelector({json.dumps(selector)}).checkVisibility()")


def _visible_rows(page: Page) -> int:
    return page.evaluate("Array.from(document.querySelectorAll('.layer-table tbody tr'))"
                         ".filter(function (r) { return r.checkVisibility(); }).length")


def test_verdict_and_first_recommendation_above_the_fold(sample_report, tmp_path: Path):
    report, data = sample_report
    recs = data["recommendations"]
    first = recs[recommendation_order([SimpleNamespace(verified=r["verified"]) for r in recs])[0]]
    assert first["verified"] and first["verified"]["helped"]  # --verify found a fix that helps: it leads
    with Page(tmp_path / "profile") as page:
        page.open(report.as_uri())
        banner = page.rect(".banner")
        assert banner["top"] >= 0 and banner["bottom"] <= page.height
        assert page.evaluate("document.querySelector('.banner .verdict').innerText") == "FAIL"
        for part in (".recommendation h3", ".recommendation .figures", ".recommendation .action"):
            assert page.rect(part)["bottom"] <= page.height, part
        assert REMEDY_TITLES[first["remedy"]] in page.evaluate("document.querySelector('.recommendation h3').innerText")
        action = page.evaluate("document.querySelector('.recommendation .action').innerText")
        assert action.startswith(headline(first["action"]).removesuffix(" …"))
        assert page.problems() == [] and page.requests() == [report.as_uri()]


def test_chart_has_one_point_per_weight_layer(sample_report, tmp_path: Path):
    report, data = sample_report
    with Page(tmp_path / "profile") as page:
        page.open(report.as_uri())
        assert _count(page, ".flow-chart g.point") == data["model"]["weight_layers"]
        assert _count(page, ".flow-chart .dot-predicted") == len(data["gradient_flow"]["static"]["layers"])
        assert _count(page, ".flow-chart .dot-measured") == len(data["gradient_flow"]["dynamic"]["layers"])
        assert _count(page, ".flow-chart rect.band") == 1
        assert _count(page, ".flow-chart .worst-label") == 3  # every layer's gradient lies far above the band
        assert page.problems() == []


def test_folded_parts_open_on_click_and_the_table_sorts_and_filters(sample_report, tmp_path: Path):
    report, data = sample_report
    layers = data["model"]["weight_layers"]
    with Page(tmp_path / "profile") as page:
        page.open(report.as_uri())
        folded = ".findings details.more"
        assert not page.evaluate(f"document.querySelector('{folded}').open") and not _shown(page, f"{folded} > p")
        page.click(f"{folded} > summary")
        assert page.evaluate(f"document.querySelector('{folded}').open") and _shown(page, f"{folded} > p")
        hidden_names = page.evaluate(f"document.querySelector('{folded} > p').innerText").split(", ")
        assert hidden_names[0] == sorted(data["findings"], key=lambda f: f["severity"] != "error")[0]["layers"][3]

        assert _visible_rows(page) == 0  # the per-layer table starts folded
        page.click(".layer-details > summary")
        assert _visible_rows(page) == layers
        measured = ".layer-table tbody tr:first-child td:nth-child(5)"
        page.click(".layer-table th:nth-child(5) button")
        smallest = float(page.evaluate(f"document.querySelector('{measured}').innerText"))
        page.click(".layer-table th:nth-child(5) button")
        largest = float(page.evaluate(f"document.querySelector('{measured}').innerText"))
        values = [layer["grad_rms"] for layer in data["gradient_flow"]["dynamic"]["layers"]]
        assert smallest == pytest.approx(math.log10(min(values)), abs=0.006)  # the table shows 2 decimals
        assert largest == pytest.approx(math.log10(max(values)), abs=0.006)
        page.type_text(".table-filter", "head")
        assert _visible_rows(page) == 1
        assert page.problems() == [] and page.requests() == [report.as_uri()]


def test_narrow_screen_and_print(sample_report, tmp_path: Path):
    report, _ = sample_report
    with Page(tmp_path / "profile", width=390, height=844) as page:
        page.open(report.as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing forces sideways scrolling
        assert page.rect(".banner")["bottom"] <= 844
        page.send("Emulation.setEmulatedMedia", media="print")
        assert _shown(page, ".layer-table") and _shown(page, ".findings details.more > p")  # print shows folds
        assert page.problems() == []


def test_two_models_share_one_gradient_flow_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    report = tmp_path / "compare.html"
    healthy, vanishing = SAMPLE.parent / "healthy_mlp_kaiming.onnx", SAMPLE.parent / "vanishing_sigmoid_mlp.onnx"
    assert main(["check", str(healthy), str(vanishing), "--html", str(report), "--quiet"]) == 1
    capsys.readouterr()
    with Page(tmp_path / "profile") as page:
        page.open(report.as_uri())
        assert _count(page, ".compare-chart svg .model-curve") == 2
        legend = page.evaluate("Array.from(document.querySelectorAll('.compare-legend')).map(function (e) {"
                               " return e.textContent; })")
        assert [entry.split(" — ")[0] for entry in legend] == [str(healthy), str(vanishing)]
        assert _count(page, ".flow-chart svg") == 2  # and each model keeps its own chart
        assert page.problems() == []


def test_chinese_report_reads_in_chinese_in_the_browser(tmp_path: Path):
    report = tmp_path / "zh.html"
    assert main(["check", str(SAMPLE), "--lang", "zh", "--html", str(report), "--quiet"]) == 1
    with Page(tmp_path / "profile") as page:
        page.open(report.as_uri())
        assert page.evaluate("document.documentElement.lang") == "zh"
        assert page.evaluate("document.querySelector('.banner .verdict').innerText") == "失败"
        assert page.rect(".recommendation h3")["bottom"] <= page.height
        assert page.evaluate("document.querySelector('.recommendations h2').innerText") == "怎么做"
        assert page.evaluate("document.querySelector('.snippet button.copy').innerText") == "复制"
        assert "权重梯度 RMS" in page.evaluate("document.querySelector('.flow-chart svg').textContent")
        assert page.problems() == [] and page.requests() == [report.as_uri()]
