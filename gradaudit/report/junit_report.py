"""JUnit XML output, for CI systems that display test results (GitLab, Jenkins, Azure).

One testsuite per model; one testcase `verdict` that fails when the gate fails, and one testcase
per rule code among the findings, failing when that code raised an error (warnings and notes are
listed in the test's output instead). Built with the standard library's ElementTree, which
escapes text and attributes; model strings are already free of XML-invalid control characters.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Sequence

from gradaudit.report.formats import report_format
from gradaudit.report.json_report import to_dict
from gradaudit.results import Audit


def _finding_lines(findings: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{f['severity']}: {f['message']}" + (f" [{', '.join(f['layers'])}]" if f["layers"] else "") for f in findings
    )


def _verdict_case(suite: ET.Element, report: dict[str, Any]) -> bool:
    case = ET.SubElement(suite, "testcase", classname="gradaudit", name="verdict")
    reasons = "; ".join(report["diagnosis_reasons"])
    summary = f"verdict {report['verdict']}, gradient flow {report['diagnosis']}" + (f": {reasons}" if reasons else "")
    if report["verdict"] == "fail":
        ET.SubElement(case, "failure", message=summary, type="gradaudit.verdict").text = summary
        return True
    ET.SubElement(case, "system-out").text = summary
    return False


def _code_case(suite: ET.Element, code: str, findings: list[dict[str, Any]], name: str) -> bool:
    case = ET.SubElement(suite, "testcase", classname="gradaudit.rules", name=f"{code} {name}".strip())
    errors = [f for f in findings if f["severity"] == "error"]
    if errors:
        failure = ET.SubElement(case, "failure", message=errors[0]["message"], type=code)
        failure.text = _finding_lines(errors)
    others = [f for f in findings if f["severity"] != "error"]
    if others:
        ET.SubElement(case, "system-out").text = _finding_lines(others)
    return bool(errors)


def _suite(root: ET.Element, audit: Audit) -> tuple[int, int, float]:
    """Add the testsuite of one model; return its test count, failure count and seconds."""
    report = to_dict(audit)
    by_code: dict[str, list[dict[str, Any]]] = {}
    for finding in report["findings"]:
        by_code.setdefault(finding["code"], []).append(finding)
    suite = ET.SubElement(root, "testsuite", name=report["model"]["source"])
    properties = ET.SubElement(suite, "properties")
    for key in ("verdict", "diagnosis"):
        ET.SubElement(properties, "property", name=key, value=report[key])
    failures = int(_verdict_case(suite, report))
    for code, findings in by_code.items():
        failures += _code_case(suite, code, findings, report["explanations"].get(code, {}).get("name", ""))
    seconds = sum(v for v in report["timing"].values() if v is not None)
    _set_counts(suite, 1 + len(by_code), failures, seconds)
    return 1 + len(by_code), failures, seconds


def _set_counts(element: ET.Element, tests: int, failures: int, seconds: float) -> None:
    element.set("tests", str(tests))
    element.set("failures", str(failures))
    element.set("errors", "0")
    element.set("time", f"{seconds:.3f}")


@report_format("junit", also_write="--junit", also_write_help="Also write a JUnit XML report here.")
def render_junit(audits: Sequence[Audit], *, color: bool = False) -> str:
    """The JUnit XML document, one testsuite per model; `color` is ignored."""
    root = ET.Element("testsuites", name="gradaudit")
    totals = [_suite(root, audit) for audit in audits]
    _set_counts(root, *(sum(column) for column in zip(*totals)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
