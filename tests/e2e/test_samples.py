"""Every bundled sample gets the diagnosis its name promises, through ONNX and PyTorch routes.

Also checks the static prediction agrees with the measurement within one decade, the written
reports validate against the shipped JSON Schema, and the HTML artefact is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from gradaudit.cli import main
from gradaudit.report.json_report import load_schema

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


def test_html_report_of_unhealthy_sample(tmp_path, capsys):
    html = tmp_path / "audit.html"
    code = main(["check", str(SAMPLES / "exploding_residual_stack.onnx"), "--html", str(html), "--quiet"])
    capsys.readouterr()
    assert code == 1
    text = html.read_text()
    assert "<svg" in text or "chart" in text
    # self-contained: nothing is fetched (links to references are fine, resources are not)
    assert 'src="http' not in text and "<link" not in text and "@import" not in text
