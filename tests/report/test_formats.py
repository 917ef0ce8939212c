"""Every format is registered and reaches the CLI from its declaration alone; reports are written atomically."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from gradaudit.cli import main
from gradaudit.report import Format, render, render_all, report_formats, write_atomic
from gradaudit.report.formats import REPORT_FORMATS, report_format
from gradaudit.report.json_report import load_schema
from tests.report import fixtures

ALL_AUDITS = [fixtures.unhealthy_audit, fixtures.healthy_audit, fixtures.probe_skipped_audit, fixtures.hostile_audit,
              fixtures.nonfinite_audit]


SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "vanishing_relu_default_init.onnx"


def test_every_built_in_format_is_registered_in_order():
    assert [declared.name for declared in report_formats()] == [member.value for member in Format]


@pytest.fixture
def csv_format():
    """A format declared the way a renderer module declares one, removed afterwards."""

    @report_format("csv", also_write="--csv", also_write_help="Also write one CSV line per model here.")
    def render_csv(audits, *, color=False):
        return "".join(f"{audit.source},{audit.verdict}\n" for audit in audits)

    yield
    del REPORT_FORMATS["csv"]


def test_a_registered_format_reaches_the_cli_without_editing_it(csv_format, tmp_path, capsys):
    assert main(["check", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "[text|json|html|sarif|junit|csv]" in shown and "Also write one CSV line per model here." in shown
    written, report = tmp_path / "audit.csv", tmp_path / "audit.json"
    args = ["check", str(SAMPLE), "--static-only", "--format", "csv", "--csv", str(written), "--json", str(report)]
    assert main(args) in (0, 1)
    printed = capsys.readouterr().out
    assert printed == f"{SAMPLE},{json.loads(report.read_text())['verdict']}\n"
    assert written.read_text() == printed


def test_a_format_cannot_be_declared_twice():
    with pytest.raises(ValueError, match="'json' is declared twice"):
        report_format("json")(lambda audits, *, color=False: "")


@pytest.mark.parametrize("fmt", list(Format))
@pytest.mark.parametrize("make_audit", ALL_AUDITS)
def test_every_format_renders_every_fixture(fmt, make_audit):
    text = render(make_audit(), fmt)
    assert isinstance(text, str) and text.endswith("\n")


def test_render_accepts_the_format_name_and_rejects_unknown_ones():
    assert render(fixtures.healthy_audit(), "json") == render(fixtures.healthy_audit(), Format.JSON)
    with pytest.raises(ValueError, match="unknown report format 'pdf'"):
        render(fixtures.healthy_audit(), "pdf")


def test_write_atomic_replaces_the_file_whole(tmp_path: Path):
    target = tmp_path / "audit.json"
    target.write_text("old")
    write_atomic(target, "new report\n")
    assert target.read_text() == "new report\n"
    assert os.listdir(tmp_path) == ["audit.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_write_atomic_leaves_nothing_partial_on_error(tmp_path: Path):
    target = tmp_path / "audit.txt"
    target.write_text("previous")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "half written \udcff")  # a lone surrogate cannot be encoded
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["audit.txt"]


def test_write_atomic_refuses_a_directory(tmp_path: Path):
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path, "report")
    assert os.listdir(tmp_path) == []


def test_several_audits_make_one_document_per_format():
    audits = [fixtures.unhealthy_audit(), fixtures.healthy_audit()]
    text = render_all(audits, Format.TEXT)
    assert text.index("FAIL") < text.index("PASS")
    reports = json.loads(render_all(audits, Format.JSON))
    assert [r["verdict"] for r in reports] == ["fail", "pass"]
    for report in reports:
        jsonschema.validate(report, load_schema())
    assert len(json.loads(render_all(audits, Format.SARIF))["runs"]) == 2
    junit = ET.fromstring(render_all(audits, Format.JUNIT).split("\n", 1)[1])
    assert [s.get("name") for s in junit.findall("testsuite")] == [a.source for a in audits]
    assert junit.get("tests") == "5" and junit.get("failures") == "2"
    html = render_all(audits, Format.HTML)
    assert html.count('class="model-report"') == 2 and 'data-report="1"' in html
    assert re.findall(r'href="([^"]*)"', html) == ["#report-0", "#report-1"]


def test_render_of_one_audit_is_render_all_of_a_list_of_one():
    audit = fixtures.unhealthy_audit()
    for fmt in Format:
        assert render(audit, fmt) == render_all([audit], fmt)
    with pytest.raises(ValueError, match="no audit"):
        render_all([], Format.TEXT)
