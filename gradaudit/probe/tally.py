"""Combining the probe's passes into one ProbeResult.

Each pass yields a `PassRecord`; gradient scales combine as a root-mean-square over passes (the
scale a training step would see on average), unit statistics and log-ratios as plain means, and
any non-finite value in any pass marks the result non-finite, the first such pass naming the layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import fmean

from gradaudit.diagnosis import FlowSummary, diagnose, log10_ratio, log10_update_ratio
from gradaudit.graph import WeightLayer
from gradaudit.probe.plan import CapturePlan
from gradaudit.results import LayerProbe, ProbeResult


@dataclass
class NodeStats:
    """Statistics of one weight node's output (and the activation it feeds) in one pass."""

    act_mean: float
    act_std: float
    finite: bool
    dead_frac: float | None = None
    saturated_frac: float | None = None


@dataclass
class PassRecord:
    grad_ms: dict[str, float]  # parameter name -> mean square of its gradient
    nodes: dict[str, NodeStats]
    output_ms: float | None
    nonfinite: bool
    first_nonfinite: str | None
    grad_norm_sq: float
    input_moments: tuple[float, float] | None
    recurrent: dict[str, float] = field(default_factory=dict)
    sharpness: float | None = None


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def _root_mean(values: list[float | None]) -> float | None:
    mean = _mean(values)
    return math.sqrt(mean) if mean is not None else None


def _layer(plan_layer: WeightLayer, records: list[PassRecord], weight_rms: float) -> LayerProbe:
    stats = [r.nodes.get(plan_layer.node) for r in records]
    present = [s for s in stats if s is not None]
    grad_rms = math.sqrt(fmean(r.grad_ms[plan_layer.param] for r in records))
    return LayerProbe(
        node=plan_layer.node,
        layer=plan_layer.layer,
        param=plan_layer.param,
        grad_rms=grad_rms,
        weight_rms=weight_rms,
        act_mean=_mean([s.act_mean for s in present]),
        act_std=_mean([s.act_std for s in present]),
        dead_frac=_mean([s.dead_frac for s in present]),
        saturated_frac=_mean([s.saturated_frac for s in present]),
        nonfinite=not math.isfinite(grad_rms) or any(not s.finite for s in present),
    )


def _normalised(layer: LayerProbe, norm_eps: dict[str, float]) -> tuple[float, float] | None:
    """A weight layer's measured output std and the eps of the normalisation it feeds, if it feeds one."""
    if layer.node not in norm_eps or layer.act_std is None:
        return None
    return layer.act_std, norm_eps[layer.node]


def combine(plan: CapturePlan, records: list[PassRecord], weight_rms: dict[str, float], loss: str, seconds: float,
            positions: dict[str, int], norm_eps: dict[str, float] | None = None) -> ProbeResult:
    """One ProbeResult from the passes that ran (at least one); `positions` maps a weight node to
    graph.weight_positions, `norm_eps` a weight node whose output goes only into a normalisation
    to that norm's eps (graph.normalisation_eps)."""
    layers = [_layer(w, records, weight_rms[w.param]) for w in plan.weights]
    ends = [layer for layer in layers if layer.node in plan.flow_nodes]
    ratio = log10_ratio(ends[0].grad_rms, ends[-1].grad_rms) if ends else None
    update_ratio = log10_update_ratio(
        ratio, (ends[0].weight_rms, ends[-1].weight_rms), (positions[ends[0].node], positions[ends[-1].node]),
        (_normalised(ends[0], norm_eps or {}), _normalised(ends[-1], norm_eps or {})),
    ) if ends else None
    recurrent = {
        site.name: fmean(values)
        for site in plan.recurrent
        if (values := [r.recurrent[site.name] for r in records if site.name in r.recurrent])
    }
    nonfinite = any(r.nonfinite for r in records)
    output_rms = _root_mean([r.output_ms for r in records])
    moments = [r.input_moments for r in records if r.input_moments is not None]
    judged_output = None if plan.zero_output else output_rms
    flow = FlowSummary(ratio, [layer.grad_rms for layer in ends], judged_output, nonfinite, recurrent)
    return ProbeResult(
        layers=layers,
        passes=len(records),
        nonfinite=nonfinite,
        first_nonfinite=next((r.first_nonfinite for r in records if r.nonfinite), None),
        output_rms=output_rms,
        log10_ratio_first_last=ratio,
        diagnosis=diagnose(flow),
        recurrent_log10_time_ratio=recurrent,
        input_mean=fmean(m[0] for m in moments) if moments else None,
        input_std=fmean(m[1] for m in moments) if moments else None,
        loss=loss,
        grad_norm=math.sqrt(fmean(r.grad_norm_sq for r in records)),
        sharpness=records[0].sharpness,
        seconds=seconds,
        log10_update_ratio_first_last=update_ratio,
    )
