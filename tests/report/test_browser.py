"""The HTML report in a real browser: the chart renders, nothing errors, runs, pops up or fetches.

Headless chromium loads each report from file:// and dumps the DOM after scripts ran; with
`--enable-logging=stderr` every console message (script errors, CSP violations, blocked requests)
appears on stderr as a CONSOLE line. The hostile report is also loaded with its CSP removed, so
escaping alone is shown to keep hostile strings inert: an alert() would block the page and time
the browser out, an injected element would show in the DOM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from gradaudit.report import Format, render, render_all
from tests.report import fixtures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="chromium is not on PATH (.ci/run installs Debian's chromium where apt-get can)"),
]

BROWSER_TIMEOUT_S = 15
CSP_META = re.compile(r'<meta http-equiv="Content-Security-Policy"[^>]*>')


def load(html: str, tmp_path: Path, name: str) -> tuple[str, list[str]]:
    """Render `html` in headless chromium; return the DOM after scripts ran and console lines."""
    page = tmp_path / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    profile = tmp_path / f"profile-{name}"
    profile.mkdir()
    command = [
        shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom",
        page.as_uri(),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as browser:
        try:
            dom, log = browser.communicate(timeout=BROWSER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(browser.pid, signal.SIGKILL)  # the browser and the helpers it spawned
            browser.communicate()
            pytest.fail(f"chromium timed out on {name}: a dialog (alert) or a hung script blocked the page")
    return dom, [line for line in log.splitlines() if "CONSOLE" in line]


def assert_no_injected_markup(dom: str) -> None:
    """Only our three scripts (data, the words the chart draws, the chart), no injected element, no
    tag with a source, link or event handler."""
    assert len(re.findall(r"<script\b", dom)) == 3
    markup = re.sub(r"(<script[^>]*>).*?</script>", r"\1", dom, flags=re.S)
    assert not re.search(r"<(img|iframe|b)\b", markup)
    assert not re.search(r"<[a-zA-Z][^>]*\s(src|href|on[a-z]+)\s*=", markup)


def test_unhealthy_report_draws_its_chart_quietly(tmp_path: Path):
    audit = fixtures.unhealthy_audit()
    others = [fixtures.healthy_audit(), fixtures.nonfinite_audit()]
    dom, console = load(render_all([audit, *others], Format.HTML), tmp_path, "unhealthy")
    assert console == []
    assert dom.count('<svg viewBox="0 0 900 400" role="img" class="flow-svg"') == 3  # one chart per model
    assert dom.count('class="dot-nonfinite hit"') == 2  # the non-finite model's two overflowing layers
    first_chart = dom.split('data-report="1"')[0]
    assert len(re.findall(r'class="dot-predicted hit"', first_chart)) == len(audit.static.weights)
    assert len(re.findall(r'class="dot-measured hit"', first_chart)) == len(audit.probe.layers)
    assert first_chart.count('class="predicted series"') == 1 and first_chart.count('class="measured series"') == 1
    assert "<title>layers.0 (linear)" in dom
    comparison = dom.split('class="compare-chart"')[1].split("</svg>")[0]  # all three models on one chart
    assert comparison.count('class="model-curve"') == 3
    assert [f"{source} — " in comparison for source in (audit.source, *(a.source for a in others))] == [True] * 3


def test_hostile_report_runs_nothing_and_fetches_nothing(tmp_path: Path):
    html = render(fixtures.hostile_audit(), Format.HTML)
    dom, console = load(html, tmp_path, "hostile")
    assert console == []  # any blocked script, handler or request would be logged as a CSP violation
    assert 'class="flow-svg"' in dom
    assert_no_injected_markup(dom)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # the name is shown, as text


def test_hostile_report_is_inert_even_without_its_csp(tmp_path: Path):
    html, removed = CSP_META.subn("", render(fixtures.hostile_audit(), Format.HTML))
    assert removed == 1
    dom, console = load(html, tmp_path, "hostile-no-csp")  # an alert() dialog would hang: timeout
    assert console == []
    assert 'class="flow-svg"' in dom
    assert_no_injected_markup(dom)
