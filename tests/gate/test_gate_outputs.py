"""Artefacts and runs: several outputs and several models in one call, rules, explain, --quiet."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import jsonschema

import gradaudit
from gradaudit.report.json_report import load_schema
from gradaudit.rules.rule_registry import DOC_HEADINGS
from tests.gate.conftest import EXPLODING, HEALTHY, SAMPLES, VANISHING_RELU
from tests.gate.sarif_schema import sarif_errors


def test_every_output_in_one_run_is_written_and_valid(cli, clean_environment):
    paths = {flag: clean_environment / f"audit.{flag}" for flag in ("html", "sarif", "json", "junit")}
    code, out, _ = cli("check", VANISHING_RELU, *(arg for flag, path in paths.items() for arg in (f"--{flag}", path)))
    assert code == 1 and "vanishing" in out  # the text report still goes to stdout
    report = json.loads(paths["json"].read_text())
    jsonschema.validate(report, load_schema())
    assert report["diagnosis"] == "vanishing"
    assert sarif_errors(json.loads(paths["sarif"].read_text())) == []
    suites = ET.parse(paths["junit"]).getroot()
    cases = suites.findall("testsuite/testcase")
    assert len(cases) == 1 + len({f["code"] for f in report["findings"]})  # verdict + one per rule
    assert int(suites.get("failures")) >= 1
    html = paths["html"].read_text()
    assert html.lstrip().lower().startswith("<!doctype html>") and "vanishing" in html


def test_several_models_in_one_call_give_one_exit_code(cli, clean_environment):
    folder = clean_environment / "models"
    folder.mkdir()
    for sample in (HEALTHY, EXPLODING):
        (folder / sample.name).write_bytes(sample.read_bytes())
    code, out, _ = cli("check", HEALTHY, folder, "--static-only", "--quiet")
    assert code == 1  # the worst model's code
    assert [line.split(":")[0] for line in out.splitlines()] == ["pass", "fail", "pass"]  # folder: sorted
    assert cli("check", HEALTHY, folder / HEALTHY.name, "--static-only", "--quiet")[0] == 0
    code, _, err = cli("check", HEALTHY, folder / "missing.onnx", "--static-only")
    assert code == 2 and "missing.onnx" in err  # an unusable model is an input error, not a gate verdict


def test_several_models_in_every_format(cli, clean_environment):
    sarif, junit, as_json = (clean_environment / name for name in ("a.sarif", "a.xml", "a.json"))
    code, _, _ = cli("check", HEALTHY, EXPLODING, "--static-only",
                     "--sarif", sarif, "--junit", junit, "--json", as_json)
    assert code == 1
    log = json.loads(sarif.read_text())
    assert sarif_errors(log) == [] and len(log["runs"]) == 2
    assert [s.get("name") for s in ET.parse(junit).getroot().findall("testsuite")] == [str(HEALTHY), str(EXPLODING)]
    assert [r["verdict"] for r in json.loads(as_json.read_text())] == ["pass", "fail"]


def test_an_empty_folder_is_an_input_error(cli, clean_environment):
    code, _, err = cli("check", clean_environment)
    assert code == 2 and "no model files" in err


def test_rules_lists_every_rule_and_explain_prints_its_documentation(cli):
    code, out, _ = cli("rules")
    assert code == 0
    rows = [line.split(None, 2) for line in out.splitlines()]
    assert len({code for code, _, _ in rows}) == len(rows) >= 10
    assert {severity for _, severity, _ in rows} <= {"error", "warning", "info"}
    for code, _, _ in rows:
        status, doc, _ = cli("explain", code.lower())
        assert status == 0 and doc.startswith(code)
        assert all(heading in doc for heading in DOC_HEADINGS), code


def test_quiet_prints_one_verdict_line_per_model(cli):
    code, out, err = cli("check", EXPLODING, "--quiet")
    assert code == 1 and err == ""
    assert out == f"fail: exploding ({EXPLODING})\n"


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.split()[-1] == gradaudit.__version__


def test_usage_errors_exit_2(cli):
    assert cli("check")[0] == 2  # no model
    assert cli("check", HEALTHY, "--fail-on", "sometimes")[0] == 2
    assert cli("check", HEALTHY, "--passes", "0")[0] == 2
    assert cli("frobnicate")[0] == 2


def test_internal_errors_exit_3(cli, monkeypatch):
    import gradaudit.pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(gradaudit.pipeline, "run_audit", broken)
    code, _, err = cli("check", SAMPLES / "healthy_mlp_kaiming.onnx")
    assert code == 3 and "internal error" in err and "Traceback" not in err
