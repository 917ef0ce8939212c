"""Every bundled sample gets the diagnosis its name promises, through ONNX and PyTorch routes.

Also checks the static prediction agrees with the measurement within one decade, the written
reports validate against the shipped JSON Schema, and the HTML artefact is written.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import jsonschema
import pytest

from gradaudit.cli import main
from gradaudit.report.json_report import load_schema

# models gradaudit fully supports: a gain or ONNX mapping that fails is a bug, not an unknown node
pytestmark = pytest.mark.usefixtures("strict_static")

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
NAMES = sorted(p.stem for p in SAMPLES.glob("*.py") if p.stem.split("_")[0] in {"healthy", "exploding", "vanishing"})


def test_there_are_at_least_eight_samples():
    assert len(NAMES) >= 8
    assert {n.split("_")[0] for n in NAMES} == {"healthy", "exploding", "vanishing"}


@pytest.mark.parametrize("route", ["onnx", "py"])
@pytest.mark.parametrize("name", NAMES)
def test_sample_diagnosis(name, route, tmp_path, capsys):
    source = str(SAMPLES / f"{name}.onnx") if route == "onnx" else f"{SAMPLES / name}.py:build"
    out = tmp_path / "audit.json"
    code = main(["check", source, "--json", str(out), "--quiet"])
    capsys.readouterr()
    report = json.loads(out.read_text())
    jsonschema.validate(report, load_schema())
    promised = name.split("_")[0]
    assert report["diagnosis"] == promised, report["findings"]
    assert code == (0 if promised == "healthy" else 1)
    static = report["gradient_flow"]["static"]["log10_ratio_first_last"]
    measured = report["gradient_flow"]["dynamic"]["log10_ratio_first_last"]
    if static is not None and measured is not None:
        assert abs(static - measured) <= 1.0, (static, measured)
    if promised != "healthy":
        errors = [f for f in report["findings"] if f["severity"] == "error"]
        assert errors and report["recommendations"]


def _embedded_chart_data(html: str) -> list[dict]:
    """The JSON the page's script draws the chart from (one entry per model)."""
    match = re.search(r'<script type="application/json" class="gradaudit-data">(.*?)</script>', html, re.S)
    assert match, "the report carries no chart data"
    return json.loads(match.group(1))


def test_html_report_of_unhealthy_sample(tmp_path, capsys):
    html, report_json = tmp_path / "audit.html", tmp_path / "audit.json"
    code = main(["check", str(SAMPLES / "exploding_residual_stack.onnx"), "--html", str(html),
                 "--json", str(report_json), "--quiet"])
    capsys.readouterr()
    assert code == 1
    text, report = html.read_text(), json.loads(report_json.read_text())
    # The chart: a host element, the script that draws it, and one point per weight layer whose
    # values are the report's own (predicted and measured log10 grad RMS of the same layers).
    assert 'class="flow-chart" data-report="0"' in text and "function drawFlowChart" in text
    (page,) = _embedded_chart_data(text)
    measured = report["gradient_flow"]["dynamic"]["layers"]
    predicted = report["gradient_flow"]["static"]["layers"]
    assert len(page["layers"]) == report["model"]["weight_layers"] == len(measured) == len(predicted) > 1
    for row, probe, static in zip(page["layers"], measured, predicted):
        assert row["name"] == probe["name"] == static["name"]
        assert row["measured_log10"] == pytest.approx(math.log10(probe["grad_rms"]), abs=1e-6)
        assert row["predicted_log10"] == pytest.approx(static["log10_grad_rms"], abs=1e-6)
    # self-contained: nothing is fetched (links to references are fine, resources are not)
    assert 'src="http' not in text and "<link" not in text and "@import" not in text
