"""An `Audit` in a notebook: it renders itself, converts to HTML and JSON, saves atomically, and the
example notebook under docs/ runs from top to bottom in a real Jupyter kernel."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from gradaudit.report import Format, render
from gradaudit.report.html_report import render_html_fragment
from gradaudit.report.json_report import to_dict
from tests.report import fixtures

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "notebook.ipynb"
EXTERNAL_REFERENCE = re.compile(r"""(src|href)\s*=\s*["']?(?!#)|@import|url\(""")


def test_audit_renders_itself_for_jupyter_as_the_scoped_report():
    audit = fixtures.unhealthy_audit()
    shown = audit._repr_html_()
    assert shown == render_html_fragment([audit])
    assert shown.startswith('<div class="gradaudit-report">')
    assert "<h2>What to do</h2>" in shown and not EXTERNAL_REFERENCE.search(shown)


def test_audit_converts_to_the_html_page_and_the_json_report():
    audit = fixtures.unhealthy_audit()
    assert audit.to_html() == render(audit, Format.HTML)
    assert json.loads(audit.to_json()) == to_dict(audit)


def test_save_html_writes_the_page_and_nothing_partial_on_failure(tmp_path: Path):
    audit = fixtures.unhealthy_audit()
    target = tmp_path / "audit.html"
    audit.save_html(target)
    assert target.read_text(encoding="utf-8") == audit.to_html()
    with pytest.raises(IsADirectoryError):
        audit.save_html(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.html"]


@pytest.mark.slow
def test_example_notebook_runs_and_shows_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is a test dependency: pip install -e '.[test]'")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is a test dependency: pip install -e '.[test]'")
    # The kernel is a new process: make it import this checkout, whatever is installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    shown = [output.data["text/html"] for output in outputs if "text/html" in output.get("data", {})]
    assert len(shown) == 1
    assert shown[0].startswith('<div class="gradaudit-report">') and "verdict-fail" in shown[0]
    assert not EXTERNAL_REFERENCE.search(shown[0])
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "fail vanishing" in printed
    saved = (tmp_path / "audit.html").read_text(encoding="utf-8")
    assert saved.startswith("<!DOCTYPE html>") and 'http-equiv="Content-Security-Policy"' in saved
