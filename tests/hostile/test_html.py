"""`gradaudit check --html` on real hostile ONNX models, opened in headless chromium.

Reuses the browser helper of tests/report: a dialog (alert) would block the page and time the
browser out, an injected element or handler would show in the dumped DOM, and a blocked script
would be logged as a CSP violation. The page is also loaded with its CSP removed, so escaping
alone is shown to keep the strings inert.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from gradaudit.cli import main
from tests.hostile import hostile_names, models
from tests.report.test_browser import CSP_META, assert_no_injected_markup, load

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH"),
]


HOSTILE_MODELS = {
    "names": lambda: hostile_names.probed_model(hostile_names.MARKUP),
    "op-type": lambda: hostile_names.unsupported_op_model(hostile_names.MARKUP[0]),
}


@pytest.fixture(scope="module", params=sorted(HOSTILE_MODELS))
def hostile_html(request, tmp_path_factory) -> str:
    """The HTML report of one hostile model (one model per page: no contents links to confuse
    the injected-markup check)."""
    folder = tmp_path_factory.mktemp("hostile-html")
    model = models.save(HOSTILE_MODELS[request.param](), folder / "model.onnx")
    report = folder / "audit.html"
    assert main(["check", str(model), "--html", str(report), "-q"]) in (0, 1)
    return report.read_text(encoding="utf-8")


def test_inline_json_cannot_close_its_script_element(hostile_html: str):
    assert len(re.findall(r"<script\b", hostile_html)) == len(re.findall(r"</script", hostile_html, re.I))
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in hostile_html  # the name is in the data, escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile_html  # and in the markup, as text


@pytest.mark.parametrize("keep_csp", [True, False], ids=["with-csp", "without-csp"])
def test_no_script_runs_and_no_dialog_opens(hostile_html: str, tmp_path: Path, keep_csp: bool):
    html = hostile_html if keep_csp else CSP_META.sub("", hostile_html)
    dom, console = load(html, tmp_path, "cli-hostile")  # an alert() would block: timeout, test fails
    assert console == []
    assert_no_injected_markup(dom)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # the first layer's name or the op type, as text
