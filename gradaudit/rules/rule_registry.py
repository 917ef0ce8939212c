"""The rule registry: one table of rules, their configuration, and the pass that runs them.

Shaped after ruff: a rule is a code (GA + three digits), a kebab-case name, a default severity,
a one-line summary, a message template filled from the evidence, and a documentation entry with
fixed headings, which is the docstring of its check function (`gradaudit explain GA101`). The
summary, the template and the documentation are the msgids of their translations (gradaudit.i18n;
tools/catalog.py extracts them from this registry), looked up where they are shown. A check
reads a `RuleContext` and returns `Hit`s; the registry turns them into `Finding`s, so the code, the
message and the JSON-safety of the evidence are handled once. A rule whose findings a remedy
answers declares its evidence as a typed record (an `Evidence` dataclass): its hits carry one, the
finding carries its fields as JSON, and the remedy reads the record back (`Rule.read_evidence`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypeVar

import networkx as nx

from gradaudit.i18n import _
from gradaudit.limits import out_of_memory
from gradaudit.model import ModelHandle
from gradaudit.results import Finding, ProbeResult, Severity, StaticResult

DOC_HEADINGS = ("What it detects", "Why it matters", "Example", "Fix", "References")
RULE_FAILED = "GA503"  # the code the registry reports a failing rule under


@dataclass
class RuleConfig:
    """Thresholds and ignores of the rules; loaded from `[tool.gradaudit]` by gradaudit.config.

    Flow thresholds are in decades of the first/last relative update ratio (rules.flow.gate_ratio).
    They apply as given on the exploding side and shifted by gradaudit.rules.flow.HEAD_OFFSET_DECADES
    on the vanishing side, because the head's own gradient is normally ~10x the first layer's
    (DESIGN.md). The defaults (warning past 3, error past 4) are calibrated on
    benchmarks/real_models.py: standard architectures at default init measure between -2.0 and
    +2.3, broken variants that fail to train by their flow -11.6 and below or +10.8 (README,
    "What the numbers mean"). Recurrent through-time ratios have their own levels, the error on
    the vanishing side further out: nn.LSTM and nn.GRU at PyTorch's default init measure 10^-3.9
    and 10^-4.9 over 24 steps and train (benchmarks/train_labels.py), so that reach is worth a
    warning (the forget-gate bias), an error only below -recurrent_vanishing_fail_decades. The
    compounded init mismatch (GA201) has its own levels, without the head offset.
    """

    predicted_warn_decades: float = field(
        default=3.0, metadata={"doc": "predicted flow: warning beyond this many decades"})
    predicted_fail_decades: float = field(
        default=4.0, metadata={"doc": "predicted flow: error beyond this many decades"})
    measured_warn_decades: float = field(
        default=3.0, metadata={"doc": "measured flow: warning beyond this many decades"})
    measured_fail_decades: float = field(
        default=4.0, metadata={"doc": "measured flow: error beyond this many decades"})
    init_warn_decades: float = field(
        default=1.0, metadata={"doc": "compounded init mismatch (GA201): warning beyond this many decades"})
    init_fail_decades: float = field(
        default=2.0, metadata={"doc": "compounded init mismatch (GA201): error beyond this many decades"})
    recurrent_warn_decades: float = field(
        default=1.0, metadata={"doc": "recurrent first/last time-step gradient ratio: warning beyond this many decades"}
    )
    recurrent_fail_decades: float = field(
        default=2.0, metadata={"doc": "recurrent first/last time-step gradient ratio: error beyond this many decades"})
    recurrent_vanishing_fail_decades: float = field(
        default=6.0,
        metadata={"doc": "recurrent first/last time-step gradient ratio: error below minus this many decades"},
    )
    ignore: list[str] = field(default_factory=list, metadata={"doc": "rule codes never reported, e.g. [\"GA301\"]"})
    per_layer_ignores: dict[str, list[str]] = field(
        default_factory=dict,
        metadata={"doc": "layer-name glob -> codes ignored on matching layers ([] or [\"ALL\"]: every code)"},
    )


@dataclass
class RuleContext:
    """What a check reads: the handle, both analyses (either may be None) and the config."""

    handle: ModelHandle
    static: StaticResult | None
    probe: ProbeResult | None
    config: RuleConfig

    @property
    def graph(self) -> nx.DiGraph:
        return self.handle.graph

    def layer_ignored(self, code: str, layer: str) -> bool:
        """Does a per-layer ignore glob cover this layer for this code? Rules that group layers
        into one finding skip such layers themselves; others are dropped when all layers match."""
        return any(
            fnmatch.fnmatchcase(layer, glob) and (not codes or "ALL" in codes or code in codes)
            for glob, codes in self.config.per_layer_ignores.items()
        )


EvidenceT = TypeVar("EvidenceT", bound="Evidence")


@dataclass(frozen=True)
class Evidence:
    """The typed evidence record a rule declares: the numbers its message and its remedies read.

    A finding carries it as the JSON object of its fields, in declaration order (the `evidence`
    of DESIGN.md's contract), so a subclass lists its fields in the order the JSON shows them.
    """

    def fields(self) -> dict[str, Any]:
        """The record as the evidence object of a finding (field order kept)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def read(cls: type[EvidenceT], evidence: Mapping[str, Any]) -> EvidenceT:
        """The record back from a finding's evidence (a TypeError names a missing field)."""
        return cls(**{f.name: evidence[f.name] for f in dataclasses.fields(cls) if f.name in evidence})


@dataclass
class Hit:
    """One occurrence a check found; `severity` None means the rule's default. A rule without
    a declared `Evidence` record (one no remedy answers) gives its evidence as a plain dict."""

    layers: Sequence[str]
    evidence: Evidence | dict[str, Any]
    severity: str | None = None

    def evidence_fields(self) -> dict[str, Any]:
        return self.evidence.fields() if isinstance(self.evidence, Evidence) else self.evidence


Check = Callable[[RuleContext], list[Hit]]


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str
    summary: str  # one line describing the rule
    message: str  # template filled from a hit's evidence
    check: Check
    evidence: type[Evidence] | None = None  # the record its hits carry, which its remedies read

    @property
    def doc(self) -> str:
        """The documentation entry: the check's docstring with its fixed headings."""
        return inspect.getdoc(self.check) or ""

    def read_evidence(self, finding: Finding) -> Evidence:
        """The typed record of one of this rule's findings."""
        if self.evidence is None:
            raise TypeError(f"rule {self.code} declares no evidence record")
        return self.evidence.read(finding.evidence)


_RULES: dict[str, Rule] = {}


def rule(
    code: str, name: str, severity: str, summary: str, message: str, evidence: type[Evidence] | None = None
) -> Callable[[Check], Check]:
    """Register a check function as a rule (with the evidence record its hits carry, if typed)."""

    def register(check: Check) -> Check:
        if code in _RULES:
            raise ValueError(f"duplicate rule code {code}")
        if severity not in Severity.names():
            raise ValueError(f"{code}: unknown severity {severity!r}")
        _RULES[code] = Rule(code, name, severity, summary, message, check, evidence)
        return check

    return register


def get_rule(code: str) -> Rule:
    """The rule with this code; KeyError naming the code when there is none."""
    try:
        return _RULES[code]
    except KeyError:
        raise KeyError(f"unknown rule code {code!r}") from None


def rule_of(check: Check) -> Rule:
    """The rule a check function was registered as (remedies name the rule they answer by its check)."""
    found = [registered for registered in _RULES.values() if registered.check is check]
    if not found:
        raise KeyError(f"{getattr(check, '__name__', check)!r} is not a registered rule")
    return found[0]


def all_rules() -> list[Rule]:
    return [_RULES[code] for code in sorted(_RULES)]


def explanations(codes) -> dict[str, dict[str, str]]:
    """Each code's name, summary and documentation in the active language, as the report
    renderers read them."""
    return {code: {"name": get_rule(code).name, "summary": _(get_rule(code).summary), "doc": _(get_rule(code).doc)}
            for code in codes}


def explain(code: str) -> str:
    """The full documentation of a rule in the active language, headed by its code, name and
    default severity."""
    found = get_rule(code)
    return f"{found.code} {found.name} ({found.severity})\n{_(found.summary)}\n\n{_(found.doc)}\n"


def json_safe(value: Any) -> Any:
    """Evidence as JSON: plain containers, finite floats or None (NaN and inf become None)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


def _ignored(finding: Finding, context: RuleContext) -> bool:
    if finding.code in context.config.ignore:
        return True
    return bool(finding.layers) and all(context.layer_ignored(finding.code, layer) for layer in finding.layers)


def to_finding(found: Rule, hit: Hit) -> Finding:
    """A hit of `found` as a Finding: the rule's code, its message filled in, JSON-safe evidence."""
    evidence = hit.evidence_fields()
    return Finding(
        code=found.code,
        severity=hit.severity or found.severity,
        message=_(found.message).format(**evidence),
        layers=tuple(hit.layers),
        evidence=json_safe(evidence),
    )


def _apply(found: Rule, context: RuleContext) -> list[Finding]:
    """One rule's findings; a rule that fails on an unexpected graph becomes a GA503 finding
    instead of costing the user the rest of the audit."""
    try:
        return [to_finding(found, hit) for hit in found.check(context)]
    except Exception as error:  # noqa: BLE001 - any failure of one rule is reported, not raised
        if out_of_memory(error):
            raise
        failure = Hit([], {"rule": found.code, "error": f"{type(error).__name__}: {error}"})
        return [to_finding(get_rule(RULE_FAILED), failure)]


def run_rules(
    handle: ModelHandle,
    static: StaticResult | None,
    probe: ProbeResult | None,
    config: RuleConfig | None = None,
) -> list[Finding]:
    """Every rule's findings, errors first, then in forward order of their first layer."""
    context = RuleContext(handle, static, probe, config or RuleConfig())
    findings = [f for found in all_rules() if found.code not in context.config.ignore for f in _apply(found, context)]
    order = {data["name"]: data["order"] for _, data in handle.graph.nodes(data=True)}

    def key(finding: Finding) -> tuple[int, int, str]:
        first = min((order.get(layer, len(order)) for layer in finding.layers), default=-1)
        return -Severity.rank(finding.severity), first, finding.code

    return sorted((f for f in findings if not _ignored(f, context)), key=key)
