"""Remedies sit beside their rules: one answers module per rule module, typed evidence, no code switches."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from gradaudit.cli import main
from gradaudit.remedies import explain_remedies, remedies_for
from gradaudit.remedies.remedy_registry import _ANSWERS, remedy
from gradaudit.rules import all_rules, get_rule, run_rules
from gradaudit.rules.flow import disagreement, predicted_exploding
from gradaudit.rules.rule_registry import json_safe
from tests.remedies.test_recommend import _scenarios

REMEDIES = Path(__file__).resolve().parents[2] / "gradaudit" / "remedies"
CODE_LITERAL = re.compile(r"GA\d{3}")


def test_each_answer_sits_in_the_module_named_like_its_rule_module():
    assert _ANSWERS, "no remedy is registered"
    for code, answers in _ANSWERS.items():
        rule_module = get_rule(code).check.__module__.rpartition(".")[2]
        for answer in answers:
            assert answer.function.__module__ == f"gradaudit.remedies.answers.{rule_module}", (code, answer.kind)


def test_every_rule_answered_declares_the_evidence_its_remedies_read():
    answered = {rule.code for rule in all_rules() if remedies_for(rule.code)}
    assert answered >= {"GA101", "GA105", "GA201", "GA302", "GA401", "GA601", "GA603"}
    assert all(get_rule(code).evidence is not None for code in answered)


@pytest.mark.parametrize("path", sorted(p.relative_to(REMEDIES).as_posix() for p in REMEDIES.rglob("*.py")))
def test_remedies_never_switch_on_a_finding_code(path):
    """Only the registry reads `.code` (to look a finding's rule up); no module names a code."""
    tree = ast.parse((REMEDIES / path).read_text(encoding="utf-8"))
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and CODE_LITERAL.fullmatch(n.value)]
    reads = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "code"]
    assert not literals
    assert not reads or path == "remedy_registry.py"


def test_evidence_records_read_back_to_the_json_the_findings_carry():
    seen = set()
    for handle, static, probe in _scenarios():
        for finding in run_rules(handle, static, probe):
            found = get_rule(finding.code)
            if found.evidence is None:
                continue
            record = found.read_evidence(finding)
            assert isinstance(record, found.evidence)
            assert list(json_safe(record.fields())) == list(finding.evidence)  # same keys, same order
            assert json_safe(record.fields()) == finding.evidence  # a pure copy of the same values
            seen.add(finding.code)
    assert seen >= {"GA101", "GA103", "GA105", "GA107", "GA108", "GA201", "GA202", "GA203", "GA302", "GA401", "GA402"}


def test_a_remedy_must_answer_a_rule_with_an_evidence_record():
    def answer(finding, evidence, ctx):
        return None

    with pytest.raises(ValueError, match="GA106 declares no evidence record"):
        remedy("normalization", answers=(disagreement,), summary="s")(answer)
    with pytest.raises(ValueError, match="GA101 already has a pruning remedy"):
        remedy("pruning", answers=(predicted_exploding,), summary="s")(answer)
    with pytest.raises(KeyError, match="is not a registered rule"):
        remedy("pruning", answers=(answer,), summary="s")(answer)
    assert remedies_for("GA106") == [] and explain_remedies("GA106") == ""


def test_explain_lists_the_remedies_of_a_rule_in_the_language_asked(capsys):
    assert main(["explain", "GA302"]) == 0
    english = capsys.readouterr().out
    doc, _, remedies = english.partition("Remedies (`gradaudit check` gives the amounts for the model)\n")
    assert "What it detects" in doc
    assert [line.split(":")[0].strip() for line in remedies.splitlines() if line.startswith("  ") and
            not line.startswith("    ")] == ["reinitialization", "normalization"]
    assert main(["explain", "GA302", "--lang", "zh"]) == 0
    chinese = capsys.readouterr().out
    assert "补救措施" in chinese and "在每个残差分支的最后一个权重层之后插入归一化层" in chinese
    assert main(["explain", "GA106"]) == 0
    assert "Remedies" not in capsys.readouterr().out
