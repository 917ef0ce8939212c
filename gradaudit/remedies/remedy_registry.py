"""The remedy registry: each remedy is registered beside the rule whose finding it answers.

A module of gradaudit.remedies.answers mirrors a module of gradaudit.rules (answers/flow.py
answers rules/flow.py) and registers, with `@remedy(kind, answers=(check, ...))`, what one remedy
kind does for those rules' findings; it reads the typed evidence record the rule declares
(gradaudit.rules.rule_registry.Evidence), never a finding code. So a rule with its remedy is a rule,
its answer beside it and a test, and `gradaudit explain CODE` lists the remedies with the rule.

`recommend` offers every finding to the remedies answering its rule, in REMEDY_KINDS order,
and deduplicates per remedy kind and change: a recommendation sharing layers with an earlier one
of the same kind and change is dropped (the earlier comes from the more severe finding: findings
arrive errors first). Applying both would otherwise, say, rescale a layer twice; a different
change of the same kind (branch scaling beside a per-layer rescale) is a separate alternative.
A recommendation whose change is LR_AFTER_INIT helps only once the others are applied: it goes last.
"""

from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from gradaudit.i18n import N_, _
from gradaudit.limits import out_of_memory
from gradaudit.model import ModelHandle
from gradaudit.results import Finding, ProbeResult, Recommendation, StaticResult
from gradaudit.rules.rule_registry import Check, RuleConfig, RuleContext, get_rule, rule_of

# The change of a learning-rate recommendation for a model whose initialisation is broken.
LR_AFTER_INIT = "lr_after_init"
# The remedy kinds, in the order they are offered for one finding.
REMEDY_KINDS = ("reinitialization", "normalization", "pruning", "lr_adaptation", "gradient_clipping", "batch_shift")

Remedy = Callable[[Finding, Any, RuleContext], "Recommendation | list[Recommendation | None] | None"]


@dataclass(frozen=True)
class Answer:
    """One remedy kind's answer to one rule's findings."""

    kind: str
    summary: str  # what it recommends, one line (a msgid: `gradaudit explain` shows it translated)
    function: Remedy  # (finding, its rule's evidence record, context) -> recommendation(s) or None


_ANSWERS: dict[str, list[Answer]] = {}


def remedy(kind: str, answers: Sequence[Check], summary: str) -> Callable[[Remedy], Remedy]:
    """Register a function as the `kind` remedy of the rules whose checks are `answers`."""
    if kind not in REMEDY_KINDS:
        raise ValueError(f"unknown remedy kind {kind!r}")

    def register(function: Remedy) -> Remedy:
        for check in answers:
            found = rule_of(check)
            if found.evidence is None:
                raise ValueError(f"{found.code} declares no evidence record for its {kind} remedy to read")
            registered = _ANSWERS.setdefault(found.code, [])
            if any(answer.kind == kind for answer in registered):
                raise ValueError(f"{found.code} already has a {kind} remedy")
            registered.append(Answer(kind, summary, function))
            registered.sort(key=lambda answer: REMEDY_KINDS.index(answer.kind))
        return function

    return register


def answers_for(code: str) -> list[Answer]:
    """The remedies answering a rule's findings, in the order they are offered."""
    return list(_ANSWERS.get(code, ()))


def remedies_for(code: str) -> list[str]:
    """The remedy kinds that answer a finding code, in the order they are offered."""
    return [answer.kind for answer in answers_for(code)]


def explain_remedies(code: str) -> str:
    """The remedies of a rule in the active language, as `gradaudit explain` appends them ('' if none)."""
    answers = answers_for(code)
    if not answers:
        return ""
    lines = [textwrap.fill(f"{answer.kind}: {_(answer.summary)}", width=100, initial_indent="  ",
                           subsequent_indent="    ") for answer in answers]
    return "\n".join([_("Remedies (`gradaudit check` gives the amounts for the model)"), *lines]) + "\n"


# Said once per audit (gradaudit.pipeline adds it to the notes), not after every action.
ONNX_NOTE = N_("ONNX model: recommendation names are ONNX initializers/nodes and snippets apply to "
               "gradaudit's executor module; make the same change in the model that was exported, "
               "or let `gradaudit fix` write the weight-level changes into a new file.")


def recommend(
    findings: list[Finding],
    handle: ModelHandle,
    static: StaticResult | None,
    probe: ProbeResult | None,
    config: RuleConfig | None = None,
) -> list[Recommendation]:
    """Concrete recommendations for the findings, deduplicated by remedy, change and layers.

    `config` is the rules' configuration (a planned run's learning rate travels in it)."""
    ctx = RuleContext(handle, static, probe, config or RuleConfig())
    made: list[Recommendation] = []
    for finding in findings:
        for answer in answers_for(finding.code):
            for recommendation in _offer(answer, finding, ctx):
                recommendation.finding = recommendation.finding or finding.code
                _merge(made, recommendation)
    return sorted(made, key=lambda rec: getattr(rec, "change", "") == LR_AFTER_INIT)  # stable sort


def _offer(answer: Answer, finding: Finding, ctx: RuleContext) -> list[Recommendation]:
    """One remedy's recommendations (it returns one, a list of alternatives, or None) from the
    finding's evidence record; a remedy failing on an unforeseen graph (or on evidence that is not
    its rule's) is skipped with a warning, as the finding itself (and the other remedies) still stand."""
    try:
        made = answer.function(finding, get_rule(finding.code).read_evidence(finding), ctx)
    except Exception as error:  # noqa: BLE001 - one remedy must not cost the whole audit
        if out_of_memory(error):
            raise
        # stacklevel 1: the warning is attributed to gradaudit's own file, which the CLI reports
        warnings.warn(
            f"remedy {answer.kind} failed on {finding.code}: {type(error).__name__}: {error}", RuntimeWarning,
            stacklevel=1,
        )
        return []
    return [r for r in (made if isinstance(made, list) else [made]) if r is not None]


def _merge(made: list[Recommendation], new: Recommendation) -> None:
    """Add `new` unless a recommendation of the same kind and change already acts on one of its layers."""
    if not any(_change(old) == _change(new) and set(new.layers) & set(old.layers) for old in made):
        made.append(new)


def _change(rec: Recommendation) -> tuple[str, str]:
    return rec.remedy, getattr(rec, "change", "")
