"""The registry: codes, docs, explain, ordering, ignores, JSON-safe evidence."""

import dataclasses
import json
import math
import re

import pytest

from gradaudit.graph import weight_layers
from gradaudit.rules import RuleConfig, all_rules, explain, get_rule, rule_registry, run_rules
from gradaudit.rules.rule_registry import DOC_HEADINGS, json_safe
from tests.rules.fixtures import chain_static, flow_static, mlp, probe_result, sequential_handle


def test_codes_are_unique_and_well_formed():
    codes = [r.code for r in all_rules()]
    assert len(codes) == len(set(codes)) >= 18
    assert all(re.fullmatch(r"GA\d{3}", c) for c in codes)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.name) for r in all_rules())
    assert {r.severity for r in all_rules()} <= {"error", "warning", "info"}


@pytest.mark.parametrize("code", [r.code for r in all_rules()])
def test_every_rule_is_documented_and_explained(code):
    rule = get_rule(code)
    lines = rule.doc.splitlines()
    assert [line for line in lines if line in DOC_HEADINGS] == list(DOC_HEADINGS), code
    text = explain(code)
    assert code in text and rule.name in text and all(h in text for h in DOC_HEADINGS)
    assert "\n" not in rule.summary


def test_explain_unknown_code_raises():
    with pytest.raises(KeyError, match="GA999"):
        explain("GA999")


def test_findings_sorted_errors_first_then_forward_order():
    handle = sequential_handle(mlp(64, 12))  # default init: vanishing (error) + coverage (info)
    static = chain_static(handle)
    count = len(weight_layers(handle.graph))  # measured vanishing too: a prediction alone is a note
    grads = [10.0 ** (-8 + 6 * i / (count - 1)) for i in range(count)]
    probe = probe_result(handle, grads, **{"4": {"act_mean": 3.0}, "2": {"saturated_frac": 0.3}})
    findings = run_rules(handle, static, probe)
    ranks = [("error", "warning", "info").index(f.severity) for f in findings]
    assert ranks == sorted(ranks) and ranks[0] == 0
    warnings = [f.code for f in findings if f.severity == "warning" and f.code in ("GA402", "GA403")]
    assert warnings == ["GA402", "GA403"]  # layer "2" comes before layer "4"


def test_ignore_codes_and_per_layer_globs():
    handle = sequential_handle(mlp(16, 3))
    probe = probe_result(handle, **{"0": {"act_mean": 3.0}, "4": {"act_mean": 3.0}})
    codes = lambda cfg: [(f.code, f.layers) for f in run_rules(handle, None, probe, cfg)]  # noqa: E731
    assert ("GA403", ("0", "4")) in codes(None)
    assert not any(c == "GA403" for c, _ in codes(RuleConfig(ignore=["GA403"])))
    assert ("GA403", ("4",)) in codes(RuleConfig(per_layer_ignores={"0": ["GA403"]}))
    assert ("GA403", ("0", "4")) in codes(RuleConfig(per_layer_ignores={"0": ["GA401"]}))
    assert not any(c == "GA403" for c, _ in codes(RuleConfig(per_layer_ignores={"*": []})))
    assert any(c == "GA501" for c, _ in codes(RuleConfig(per_layer_ignores={"*": []})))  # no layers: kept


def test_rule_config_is_a_documented_dataclass():
    for field in dataclasses.fields(RuleConfig):
        assert field.metadata.get("doc"), field.name
    # a default setting, calibrated on benchmarks/real_models.py (README)
    assert RuleConfig().measured_fail_decades == 4.0  # exact: a default setting


def test_evidence_is_json_with_finite_numbers():
    handle = sequential_handle(mlp(16, 3, std=1.0))
    static = flow_static(handle, math.inf, {"0": math.nan})
    probe = probe_result(handle, **{"0": {"act_mean": math.inf, "act_std": 1.0}})
    findings = run_rules(handle, chain_static(handle), probe)
    findings += run_rules(handle, static, None)
    for finding in findings:
        json.dumps(finding.evidence, allow_nan=False)
    assert json_safe({"a": (1, math.nan), "b": float("-inf")}) == {"a": [1, None], "b": None}


def test_a_failing_rule_becomes_a_ga503_finding(monkeypatch):
    def broken(ctx):
        raise ZeroDivisionError("no layers")

    monkeypatch.setitem(rule_registry._RULES, "GA301", dataclasses.replace(get_rule("GA301"), check=broken))
    handle = sequential_handle(mlp(16, 2))
    (finding,) = [f for f in run_rules(handle, chain_static(handle), None) if f.code == "GA503"]
    assert finding.evidence == {"rule": "GA301", "error": "ZeroDivisionError: no layers"}
    assert not get_rule("GA503").check(None)
