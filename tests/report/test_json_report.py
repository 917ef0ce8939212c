"""The JSON report honours the `gradaudit.report/1` contract and its schema, with no NaN."""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import numpy as np
import pytest
import torch

from gradaudit.report import Format, render
from gradaudit.report.json_report import SCHEMA_ID, load_schema, to_dict
from gradaudit.results import Finding
from tests.report import fixtures

ALL_AUDITS = [fixtures.unhealthy_audit, fixtures.healthy_audit, fixtures.probe_skipped_audit, fixtures.hostile_audit,
              fixtures.nonfinite_audit]


def _strict_loads(text: str):
    def reject(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def test_schema_is_a_valid_draft_2020_12_schema():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"]["const"] == SCHEMA_ID


@pytest.mark.parametrize("make_audit", ALL_AUDITS)
def test_rendered_json_is_strict_and_validates(make_audit):
    data = _strict_loads(render(make_audit(), Format.JSON))
    jsonschema.Draft202012Validator(load_schema()).validate(data)
    assert data["schema"] == SCHEMA_ID


def test_schema_rejects_a_report_missing_a_contract_field():
    data = to_dict(fixtures.unhealthy_audit())
    del data["gradient_flow"]["dynamic"]["layers"][0]["dead_frac"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, load_schema())


def test_contract_fields_and_values():
    audit = fixtures.unhealthy_audit()
    data = to_dict(audit)
    assert data["verdict"] == "fail" and data["diagnosis"] == "vanishing"
    assert data["model"] == {"source": "samples/deep_sigmoid.onnx", "format": "onnx", "parameters": 1_579_520,
                             "weight_layers": 24, "depth": 24, "partial": False}
    static = data["gradient_flow"]["static"]
    assert [layer["name"] for layer in static["layers"]] == [w.layer for w in audit.static.weights]
    assert set(static["layers"][0]) >= {"name", "op", "log10_gain", "log10_grad_rms"}
    dynamic = data["gradient_flow"]["dynamic"]
    assert dynamic["passes"] == 3 and len(dynamic["layers"]) == 24
    assert dynamic["layers"][0]["grad_rms"] == pytest.approx(audit.probe.layers[0].grad_rms)
    assert data["recommendations"][0]["verified"] == {
        "log10_ratio_before": pytest.approx(audit.probe.log10_ratio_first_last),
        "log10_ratio_after": -0.8,
    }
    assert data["recommendations"][1]["verified"] is None
    assert set(data["timing"]) >= {"load_s", "static_s", "probe_s"}


def test_non_finite_evidence_becomes_null():
    evidence = to_dict(fixtures.unhealthy_audit())["findings"][0]["evidence"]
    assert evidence["undefined"] is None and evidence["overflow"] is None
    assert evidence["per_layer_log10"] == -0.2  # exact: the fixture's literal, passed through


def test_skipped_probe_gives_null_dynamic_and_null_timing():
    data = to_dict(fixtures.probe_skipped_audit())
    assert data["gradient_flow"]["dynamic"] is None
    assert "NonMaxSuppression" in data["gradient_flow"]["dynamic_skipped"]
    assert data["timing"]["probe_s"] is None


def test_model_strings_lose_control_characters():
    text = render(fixtures.hostile_audit(), Format.JSON)
    assert "\x1b" not in text and "\\u001b" not in text and "\u202e" not in text


def test_numpy_and_torch_evidence_become_plain_json():
    audit = fixtures.healthy_audit()
    evidence = {"np": np.float32(0.5), "arr": np.array([1.0, np.nan]), "t": torch.tensor([2.0, float("inf")]),
                "flag": np.bool_(True)}
    audit = dataclasses.replace(audit, findings=[Finding("GA102", "info", "m", ("a",), evidence)])
    data = _strict_loads(render(audit, Format.JSON))
    assert data["findings"][0]["evidence"] == {"np": 0.5, "arr": [1.0, None], "t": [2.0, None], "flag": True}


def test_non_finite_measurements_become_null():
    dynamic = to_dict(fixtures.nonfinite_audit())["gradient_flow"]["dynamic"]
    assert dynamic["first_nonfinite"] == "layers.4" and dynamic["log10_ratio_first_last"] is None
    assert [layer["grad_rms"] is None for layer in dynamic["layers"]] == [False, False, True, True]
    assert dynamic["layers"][3]["act_std"] is None and dynamic["layers"][3]["nonfinite"] is True
