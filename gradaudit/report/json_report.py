"""The `gradaudit.report/1` JSON contract of DESIGN.md, and its JSON Schema.

`to_dict` is the one place an `Audit` becomes plain data: the JSON, HTML (its embedded data blob)
and SARIF renderers all start from it. Fields may be added to the contract, never renamed or
dropped without a new `SCHEMA_ID`. JSON has no NaN or Infinity, so every non-finite float becomes
null and `json.dumps(..., allow_nan=False)` guards the output.
"""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from typing import Any, Sequence

from gradaudit.report.common import clean, finite_or_none, tool_version
from gradaudit.report.formats import report_format
from gradaudit.results import Audit, LayerProbe, ProbeResult, StaticResult

SCHEMA_ID = "gradaudit.report/1"
SCHEMA_FILE = "report.schema.json"
TIMING_KEYS = ("load_s", "static_s", "probe_s")  # always present, null when a stage did not run


def jsonable(value: Any) -> Any:
    """Plain JSON data from evidence-like values: non-finite floats -> None, tuples -> lists.

    Strings are cleaned of control characters; unknown objects become their cleaned `str`.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return clean(value, multiline=True)
    if isinstance(value, dict):
        return {clean(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if callable(getattr(value, "tolist", None)):  # numpy / torch scalars and arrays
        return jsonable(value.tolist())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return clean(value)


def _static_dict(static: StaticResult | None) -> dict[str, Any] | None:
    if static is None:
        return None
    return {
        "log10_ratio_first_last": finite_or_none(static.log10_ratio_first_last),
        "log10_update_ratio_first_last": finite_or_none(static.log10_update_ratio_first_last),
        "diagnosis": static.diagnosis.label,
        "output_rms": finite_or_none(static.output_rms),
        "partial": static.partial,
        "unknown_ops": [clean(op) for op in static.unknown_ops],
        "recurrent_log10_time_ratio": jsonable(static.recurrent_log10_time_ratio),
        "layers": [
            {
                "name": clean(w.layer),
                "param": clean(w.param),
                "op": clean(w.op),
                "log10_gain": finite_or_none(w.log10_gain),
                "log10_grad_rms": finite_or_none(w.log10_grad_rms),
            }
            for w in static.weights
        ],
    }


def _probe_layer_dict(layer: LayerProbe) -> dict[str, Any]:
    return {
        "name": clean(layer.layer),
        "param": clean(layer.param),
        "grad_rms": finite_or_none(layer.grad_rms),
        "weight_rms": finite_or_none(layer.weight_rms),
        "act_mean": finite_or_none(layer.act_mean),
        "act_std": finite_or_none(layer.act_std),
        "dead_frac": finite_or_none(layer.dead_frac),
        "saturated_frac": finite_or_none(layer.saturated_frac),
        "nonfinite": layer.nonfinite,
    }


def _dynamic_dict(probe: ProbeResult | None) -> dict[str, Any] | None:
    if probe is None:
        return None
    return {
        "log10_ratio_first_last": finite_or_none(probe.log10_ratio_first_last),
        "log10_update_ratio_first_last": finite_or_none(probe.log10_update_ratio_first_last),
        "nonfinite": probe.nonfinite,
        "first_nonfinite": clean(probe.first_nonfinite) if probe.first_nonfinite is not None else None,
        "passes": probe.passes,
        "diagnosis": probe.diagnosis.label,
        "output_rms": finite_or_none(probe.output_rms),
        "loss": clean(probe.loss),
        "grad_norm": finite_or_none(probe.grad_norm),
        "sharpness": finite_or_none(probe.sharpness),
        "recurrent_log10_time_ratio": jsonable(probe.recurrent_log10_time_ratio),
        "layers": [_probe_layer_dict(layer) for layer in probe.layers],
    }


def to_dict(audit: Audit) -> dict[str, Any]:
    """The audit as `gradaudit.report/1` data (strictly JSON-serialisable, no NaN)."""
    return {
        "schema": SCHEMA_ID,
        "tool": {"name": "gradaudit", "version": tool_version()},
        "model": {
            "source": clean(audit.source),
            "format": audit.format,
            "parameters": audit.parameters,
            "weight_layers": audit.weight_layers,
            "depth": audit.depth,
            "partial": audit.partial,
        },
        "verdict": audit.verdict,
        "diagnosis": audit.diagnosis.label,
        "diagnosis_reasons": [clean(r) for r in audit.diagnosis.reasons],
        "gradient_flow": {
            "static": _static_dict(audit.static),
            "dynamic": _dynamic_dict(audit.probe),
            "dynamic_skipped": clean(audit.probe_skipped),
        },
        "findings": [
            {
                "code": clean(f.code),
                "severity": f.severity,
                "message": clean(f.message),
                "layers": [clean(name) for name in f.layers],
                "evidence": jsonable(f.evidence),
                "fingerprint": clean(f.fingerprint()),
            }
            for f in audit.findings
        ],
        "recommendations": [
            {
                "remedy": r.remedy,
                "layers": [clean(name) for name in r.layers],
                "action": clean(r.action),
                "snippet": clean(r.snippet, multiline=True),
                "finding": clean(r.finding),
                "change": clean(getattr(r, "change", "")),
                "rewrites": jsonable([dataclasses.asdict(w) for w in getattr(r, "rewrites", ())]),
                "verified": jsonable(r.verified) if r.verified is not None else None,
            }
            for r in audit.recommendations
        ],
        "timing": dict.fromkeys(TIMING_KEYS) | {clean(k): finite_or_none(v) for k, v in audit.timing.items()},
        "notes": [clean(n, multiline=True) for n in audit.notes],
        "explanations": jsonable(audit.explanations),
    }


@report_format("json", also_write="--json", also_write_help="Also write the JSON report here.")
def render_json(audits: Sequence[Audit], *, color: bool = False) -> str:
    """The JSON report (an array of reports for several models), indented; `color` is ignored."""
    reports = [to_dict(audit) for audit in audits]
    data = reports[0] if len(reports) == 1 else reports
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `gradaudit.report/1`, shipped as package data."""
    return json.loads(resources.files("gradaudit.schema").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))
