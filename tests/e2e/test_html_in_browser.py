"""The HTML audit of a real unhealthy sample, opened in headless chromium.

Issue 2's acceptance check: the chart and the findings show, the console stays empty (no script
error, no CSP-blocked request) and the page holds no external resource.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from gradaudit.cli import main
from tests.report.test_browser import assert_no_injected_markup, load

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="chromium is not on PATH (.ci/run installs Debian's chromium where apt-get can)"),
]


@pytest.mark.parametrize("sample", ["exploding_residual_stack.onnx", "vanishing_sigmoid_mlp.py:build"])
def test_unhealthy_sample_report_renders_offline(sample, tmp_path, capsys):
    report = tmp_path / "audit.html"
    source = str(SAMPLES / sample.split(":")[0]) + (":build" if sample.endswith(":build") else "")
    assert main(["check", source, "--html", str(report), "--quiet"]) == 1
    capsys.readouterr()
    dom, console = load(report.read_text(encoding="utf-8"), tmp_path, "sample")
    assert console == []
    assert 'class="flow-svg"' in dom and re.search(r'class="dot-measured hit"', dom)
    assert "GA10" in dom  # the flow findings are listed with their codes
    assert_no_injected_markup(dom)
