"""Baselines: `gradaudit baseline` records findings, `check --baseline` fails only on new ones."""

from __future__ import annotations

import json

import pytest

from gradaudit.baseline import Baseline, new_findings
from gradaudit.results import Finding
from tests.gate.conftest import EXPLODING, HEALTHY, VANISHING_SIGMOID


def test_same_model_passes_against_its_own_baseline(cli, clean_environment):
    model = clean_environment / "model.onnx"
    model.write_bytes(EXPLODING.read_bytes())
    code, _, err = cli("baseline", model, "-o", "base.json")
    assert code == 0 and "recorded" in err
    recorded = json.loads((clean_environment / "base.json").read_text())
    assert recorded["schema"] == "gradaudit.baseline/1" and {e["model"] for e in recorded["findings"]} == {"model.onnx"}
    assert cli("check", model)[0] == 1
    assert cli("check", model, "--baseline", "base.json")[0] == 0


def test_a_new_finding_fails_against_the_baseline(cli, clean_environment):
    """Baseline the healthy network, then the model file (same name, same key) turns exploding."""
    model = clean_environment / "model.onnx"
    model.write_bytes(HEALTHY.read_bytes())
    assert cli("baseline", model, "-o", "base.json")[0] == 0
    assert json.loads((clean_environment / "base.json").read_text())["findings"] == []
    assert cli("check", model, "--baseline", "base.json")[0] == 0
    model.write_bytes(EXPLODING.read_bytes())
    code, out, _ = cli("check", model, "--baseline", "base.json", "--format", "json")
    assert code == 1 and json.loads(out)["findings"]  # the report still lists every finding


def test_baseline_survives_seed_jitter(cli, clean_environment):
    """The sigmoid stack's measured finding lists different layers at seeds 0 and 1."""
    model = clean_environment / "model.onnx"
    model.write_bytes(VANISHING_SIGMOID.read_bytes())
    assert cli("baseline", model, "-o", "base.json", "--seed", "0")[0] == 0
    layers = {seed: {tuple(f["layers"]) for f in json.loads(cli("check", model, "--seed", seed, "--format", "json")[1])
                     ["findings"] if f["code"] == "GA104"} for seed in (0, 1)}
    assert layers[0] != layers[1]  # the jitter this test is about
    assert cli("check", model, "--seed", "1", "--baseline", "base.json")[0] == 0


def test_baseline_of_several_models_keys_each_by_file_name(cli, clean_environment):
    assert cli("baseline", EXPLODING, HEALTHY, "-o", "base.json")[0] == 0
    models = {e["model"] for e in json.loads((clean_environment / "base.json").read_text())["findings"]}
    assert models == {EXPLODING.name}
    assert cli("check", EXPLODING, HEALTHY, "--baseline", "base.json")[0] == 0


@pytest.mark.parametrize(
    "text", ["not json", "[]", '{"schema": "other"}', '{"schema": "gradaudit.baseline/1", "findings": [{"code": 1}]}'])
def test_unreadable_baselines_are_input_errors(cli, clean_environment, text):
    (clean_environment / "base.json").write_text(text)
    code, _, err = cli("check", HEALTHY, "--static-only", "--baseline", "base.json")
    assert code == 2 and "base.json" in err and "Traceback" not in err


class _Audit:
    """The two fields new_findings reads."""

    def __init__(self, source: str, findings: list[Finding]):
        self.source, self.findings = source, findings


def test_matching_by_code_and_overlapping_layers():
    known = Baseline()
    known.add("net.onnx", "GA104", ["/2/Gemm", "/4/Gemm", "/6/Gemm"])
    known.add("net.onnx", "GA303", [])
    found = [
        Finding("GA104", "error", "numbers changed", ("/4/Gemm", "/6/Gemm", "/8/Gemm")),  # shares layers: known
        Finding("GA104", "error", "", ("/20/Gemm",)),  # same code, elsewhere: new
        Finding("GA101", "error", "", ("/2/Gemm",)),  # another code on a known layer: new
        Finding("GA303", "warning", "", ()),  # model-wide, recorded: known
    ]
    fresh = new_findings(_Audit("models/net.onnx", found), known)
    assert [(f.code, f.layers) for f in fresh] == [("GA104", ("/20/Gemm",)), ("GA101", ("/2/Gemm",))]
    assert new_findings(_Audit("other.onnx", found[:1]), known) == found[:1]  # another model
    assert new_findings(_Audit("net.onnx", found), None) == found  # no baseline: all are new
