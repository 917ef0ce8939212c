"""The remedy registry: one function per remedy kind, each naming the finding codes it answers.

`recommend` offers every finding to the remedies that answer its code, in registration order,
and deduplicates per remedy kind and change: a recommendation sharing layers with an earlier one
of the same kind and change is dropped (the earlier comes from the more severe finding: findings
arrive errors first). Applying both would otherwise, say, rescale a layer twice; a different
change of the same kind (branch scaling beside a per-layer rescale) is a separate alternative.
A recommendation whose change is LR_AFTER_INIT helps only once the others are applied: it goes last.
"""

from __future__ import annotations

import warnings
from typing import Callable

from gradaudit.i18n import N_
from gradaudit.limits import out_of_memory
from gradaudit.model import ModelHandle
from gradaudit.results import Finding, ProbeResult, Recommendation, StaticResult
from gradaudit.rules.registry import Context, RuleConfig

# The flow findings (predicted and measured, exploding and vanishing) most remedies answer.
FLOW_CODES = {"GA101", "GA102", "GA103", "GA104"}
# The change of a learning-rate recommendation for a model whose initialisation is broken.
LR_AFTER_INIT = "lr_after_init"
REMEDY_KINDS = ("pruning", "normalization", "lr_adaptation", "batch_shift", "reinitialization", "gradient_clipping")

Remedy = Callable[[Finding, Context], "Recommendation | list[Recommendation | None] | None"]
_REMEDIES: dict[str, tuple[Remedy, frozenset[str]]] = {}


def remedy(kind: str, answers: set[str]) -> Callable[[Remedy], Remedy]:
    """Register the function of one remedy kind and the finding codes it can answer."""
    if kind not in REMEDY_KINDS:
        raise ValueError(f"unknown remedy kind {kind!r}")

    def register(function: Remedy) -> Remedy:
        _REMEDIES[kind] = (function, frozenset(answers))
        return function

    return register


def remedies_for(code: str) -> list[str]:
    """The remedy kinds that answer a finding code, in the order they are offered."""
    return [kind for kind, (_, codes) in _REMEDIES.items() if code in codes]


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
    ctx = Context(handle, static, probe, config or RuleConfig())
    made: list[Recommendation] = []
    for finding in findings:
        for kind in remedies_for(finding.code):
            for recommendation in _offer(kind, finding, ctx):
                recommendation.finding = recommendation.finding or finding.code
                _merge(made, recommendation)
    return sorted(made, key=lambda rec: getattr(rec, "change", "") == LR_AFTER_INIT)  # stable sort


def _offer(kind: str, finding: Finding, ctx: Context) -> list[Recommendation]:
    """One remedy's answers (a remedy returns one recommendation, a list of alternatives, or None);
    a remedy failing on an unforeseen graph is skipped with a warning, as the finding itself (and
    the other remedies) still stand."""
    try:
        answer = _REMEDIES[kind][0](finding, ctx)
    except Exception as error:  # noqa: BLE001 - one remedy must not cost the whole audit
        if out_of_memory(error):
            raise
        # stacklevel 1: the warning is attributed to gradaudit's own file, which the CLI reports
        warnings.warn(
            f"remedy {kind} failed on {finding.code}: {type(error).__name__}: {error}", RuntimeWarning, stacklevel=1
        )
        return []
    return [r for r in (answer if isinstance(answer, list) else [answer]) if r is not None]


def _merge(made: list[Recommendation], new: Recommendation) -> None:
    """Add `new` unless a recommendation of the same kind and change already acts on one of its layers."""
    if not any(_change(old) == _change(new) and set(new.layers) & set(old.layers) for old in made):
        made.append(new)


def _change(rec: Recommendation) -> tuple[str, str]:
    return rec.remedy, getattr(rec, "change", "")
