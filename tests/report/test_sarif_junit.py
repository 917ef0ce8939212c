"""SARIF 2.1.0 and JUnit XML: one result per finding, one testcase per rule code."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from gradaudit.report import Format, render
from gradaudit.report.sarif_report import artifact_uri
from gradaudit.rules import get_rule
from tests.report import fixtures


def test_sarif_has_one_result_per_finding_and_a_rule_per_code():
    audit = fixtures.unhealthy_audit()
    log = json.loads(render(audit, Format.SARIF))
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert [r["ruleId"] for r in results] == [f.code for f in audit.findings]
    assert {r["id"] for r in rules} == {f.code for f in audit.findings}
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "samples/deep_sigmoid.onnx"
    levels = {r["ruleId"]: r["level"] for r in results}
    assert levels == {"GA104": "error", "GA402": "warning", "GA501": "note"}
    ga104 = next(r for r in rules if r["id"] == "GA104")
    assert ga104["help"]["text"] == get_rule("GA104").doc
    assert ga104["shortDescription"]["text"] == get_rule("GA104").summary


@pytest.mark.parametrize(
    ("source", "uri"),
    [("pkg.models:build_net", "pkg/models.py"), ("nets/file.py:factory", "nets/file.py"),
     ("model.onnx", "model.onnx"), ("/abs/my net.onnx", "file:///abs/my%20net.onnx")],
)
def test_sarif_artifact_uri(source: str, uri: str):
    assert artifact_uri(source) == uri


def test_junit_fails_the_verdict_and_each_code_with_an_error():
    root = ET.fromstring(render(fixtures.unhealthy_audit(), Format.JUNIT).split("\n", 1)[1])
    suite = root.find("testsuite")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {"verdict", "GA104 measured-vanishing-gradients", "GA402 saturated-units",
                          "GA501 static-estimate-partial"}
    assert cases["verdict"].find("failure") is not None
    assert cases["GA104 measured-vanishing-gradients"].find("failure") is not None
    assert cases["GA402 saturated-units"].find("failure") is None
    assert "38% of its activation inputs" in cases["GA402 saturated-units"].find("system-out").text
    assert suite.get("tests") == "4" and suite.get("failures") == "2"


def test_junit_passes_a_healthy_model():
    root = ET.fromstring(render(fixtures.healthy_audit(), Format.JUNIT).split("\n", 1)[1])
    assert root.get("failures") == "0" and root.get("tests") == "1"


def test_junit_and_sarif_stay_well_formed_with_hostile_strings():
    audit = fixtures.hostile_audit()
    root = ET.fromstring(render(audit, Format.JUNIT).split("\n", 1)[1])
    assert root.find("testsuite").get("name") == "<script>alert('source')</script>.onnx"
    log = json.loads(render(audit, Format.SARIF))
    assert len(log["runs"][0]["results"]) == len(audit.findings)
