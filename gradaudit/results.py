"""Results that flow one way through the pipeline: static -> probe -> findings -> audit.

Plain dataclasses, no behaviour beyond small derived properties: the analyses fill them, the rules
read them, the renderers print them (`gradaudit.report.audit_report.AuditReport` is the `Audit` that
renders itself, in Jupyter, as HTML, as JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from gradaudit.diagnosis import Diagnosis


@dataclass
class NodeEstimate:
    """Static signal-propagation state at one node's output (per element, under the planned loss)."""

    q: float  # second moment E[y^2] of the output
    mean: float  # mean E[y] of the output
    grad_sq: float  # E[dL/dy^2]: squared gradient arriving at the output
    log10_gain: float  # log10 sqrt(E[grad at input^2] / E[grad at output^2]): this op's backward gain
    known: bool = True  # False when no gain rule applied (treated as pass-through, estimate partial)
    reason: str = ""  # why not known, beyond the op having no gain (a mapping or a gain that failed)


@dataclass
class WeightEstimate:
    """Predicted gradient scale of one weight layer."""

    node: str
    layer: str  # display name
    param: str
    op: str
    log10_gain: float  # backward gain of the node holding the weight
    log10_grad_rms: float  # predicted log10 of the weight's gradient RMS
    role: str = "weight"  # the parameter's role in its node (weight_hh, in_proj_weight, ...)


@dataclass
class StaticResult:
    nodes: dict[str, NodeEstimate]
    weights: list[WeightEstimate]
    log10_ratio_first_last: float | None
    output_rms: float | None
    diagnosis: Diagnosis
    unknown_ops: list[str] = field(default_factory=list)  # op types no gain rule covered
    partial: bool = False
    recurrent_log10_time_ratio: dict[str, float] = field(default_factory=dict)
    log10_update_ratio_first_last: float | None = None  # relative updates |g|/|w|, first over last


@dataclass
class LayerProbe:
    """Measured statistics of one weight layer, averaged over the probe's passes."""

    node: str
    layer: str  # display name
    param: str
    grad_rms: float
    weight_rms: float
    act_mean: float | None  # of the layer's output (pre-activation)
    act_std: float | None
    dead_frac: float | None  # units of the following activation inactive on the whole batch
    saturated_frac: float | None  # activation inputs where the derivative is < 5% of its peak
    nonfinite: bool = False


@dataclass
class ProbeResult:
    layers: list[LayerProbe]
    passes: int
    nonfinite: bool
    first_nonfinite: str | None  # display name of the first layer (forward order) going non-finite
    output_rms: float | None
    log10_ratio_first_last: float | None
    diagnosis: Diagnosis
    recurrent_log10_time_ratio: dict[str, float] = field(default_factory=dict)
    input_mean: float | None = None  # of the float inputs used
    input_std: float | None = None
    loss: str = ""  # which loss produced the gradients
    grad_norm: float | None = None  # global gradient norm (clipping threshold evidence)
    sharpness: float | None = None  # largest Hessian eigenvalue estimate, when asked for
    seconds: float = 0.0
    log10_update_ratio_first_last: float | None = None  # relative updates |g|/|w|, first over last


class Severity(IntEnum):
    """A finding's severity, ordered: the gate compares ranks, reports list the larger first.
    Findings and the JSON contract carry the lowercase name ("error")."""

    INFO = 0
    WARNING = 1
    ERROR = 2

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Lowercase names, most severe first (the order reports list findings in)."""
        return tuple(s.name.lower() for s in sorted(cls, reverse=True))

    @classmethod
    def rank(cls, name: str) -> int:
        """The rank of a severity name; an unknown name ranks below a note (-1)."""
        member = cls.__members__.get(name.upper()) if isinstance(name, str) else None
        return -1 if member is None else int(member)


@dataclass(frozen=True)
class Finding:
    code: str  # "GA101"
    severity: str  # "error" | "warning" | "info"
    message: str
    layers: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Identity for baselines: code + layers, never the numbers (they jitter)."""
        return self.code + ":" + ",".join(self.layers)


@dataclass
class Recommendation:
    remedy: str  # pruning | normalization | lr_adaptation | batch_shift | reinitialization | gradient_clipping
    layers: list[str]
    action: str
    snippet: str
    finding: str = ""  # code of the finding it answers
    verified: dict[str, Any] | None = None  # {"log10_ratio_before", "log10_ratio_after", ...}


@dataclass
class Audit:
    """Everything a renderer needs; renderers never compute anything beyond formatting."""

    source: str
    format: str
    parameters: int
    weight_layers: int
    depth: int
    verdict: str  # pass | warn | fail
    diagnosis: Diagnosis
    static: StaticResult | None
    probe: ProbeResult | None
    probe_skipped: str  # reason the dynamic probe did not run ("" when it ran)
    findings: list[Finding]
    recommendations: list[Recommendation]
    timing: dict[str, float]
    partial: bool = False
    notes: list[str] = field(default_factory=list)
    # code -> {"name", "summary", "doc"} for every code among the findings, filled by the
    # orchestrator from the rule registry so renderers need not import the rules.
    explanations: dict[str, dict[str, str]] = field(default_factory=dict)
    # layer -> {"uri": source file, "line": int} for the findings' layers of a PyTorch model whose
    # defining line was found (gradaudit.loaders.torch_locations); SARIF points at it.
    locations: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the language its messages were worded in (gradaudit.i18n); its reports render in it too
    language: str = "en"
