"""Hand-built `Audit` objects for the renderer tests: no model is loaded or probed here.

- `unhealthy_audit`: a 24-layer sigmoid MLP whose gradients vanish, with findings of every
  severity, recommendations (one verified), explanations and a non-finite evidence value;
- `healthy_audit`: a small He-initialised ReLU MLP, no findings;
- `probe_skipped_audit`: static estimate only, the probe could not run;
- `hostile_audit`: layer names, messages and snippets that try to break out of HTML, JSON-in-script
  and terminal contexts.
"""

from __future__ import annotations

import dataclasses
import math

from gradaudit.diagnosis import Diagnosis
from gradaudit.report.audit_report import AuditReport
from gradaudit.results import (
    Audit,
    Finding,
    LayerProbe,
    NodeEstimate,
    ProbeResult,
    Recommendation,
    StaticResult,
    WeightEstimate,
)
from gradaudit.rules import explanations, get_rule
from gradaudit.rules.rule_registry import Hit, to_finding

HOSTILE_NAMES = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "</script><script>alert(2)</script>",
    "\x1b[31mred\x1b[0m\x1b]0;pwned\x07layer",
    "bidi\u202eevil\u2028line",
)



def _finding(code: str, layers=(), severity: str | None = None, /, **evidence) -> Finding:
    """A finding as the real rule `code` words it: the registry's message, severity and names."""
    return to_finding(get_rule(code), Hit(list(layers), evidence, severity))


def _mlp(depth: int, log10_step: float, act_fn: str) -> tuple[StaticResult, ProbeResult, list[str]]:
    """A chain of linear layers whose gradient RMS changes by `log10_step` decades per layer."""
    names = [f"layers.{2 * i}" for i in range(depth)]
    weights = []
    probes = []
    for i, name in enumerate(names):
        predicted = -1.0 + log10_step * (depth - 1 - i)
        measured = predicted + 0.1 * ((i % 3) - 1)
        weights.append(WeightEstimate(f"n{i}", name, f"{name}.weight", "linear", log10_step, predicted))
        probes.append(
            LayerProbe(f"n{i}", name, f"{name}.weight", 10.0**measured, 0.05, 0.5 if act_fn == "sigmoid" else 0.0,
                       0.2, 0.0, 0.4 if act_fn == "sigmoid" else 0.0)
        )
    first, last = probes[0].grad_rms, probes[-1].grad_rms
    ratio = math.log10(first / last)
    label = "vanishing" if ratio < -3 else "healthy"
    reasons = (f"first/last gradient ratio 10^{ratio:.1f} < 10^-3",) if label == "vanishing" else ()
    diagnosis = Diagnosis(label, reasons)
    nodes = {f"n{i}": NodeEstimate(1.0, 0.0, 1e-4, log10_step) for i in range(depth)}
    static = StaticResult(nodes, weights, weights[0].log10_grad_rms - weights[-1].log10_grad_rms, 0.3, diagnosis)
    probe = ProbeResult(probes, 3, False, None, 0.3, ratio, diagnosis, loss="mse (default)", grad_norm=0.02)
    return static, probe, names


def unhealthy_audit() -> Audit:
    static, probe, names = _mlp(24, -0.2, "sigmoid")
    ratio = probe.log10_ratio_first_last
    vanishing = _finding("GA104", (names[0], names[-1]), reason=f"first/last ratio 10^{ratio:.1f} < 10^-3",
                         log10_ratio_first_last=ratio, per_layer_log10=-0.2)
    # The registry makes evidence JSON-safe; renderers must still survive a hand-built Finding's NaN/inf.
    vanishing = dataclasses.replace(vanishing, evidence={**vanishing.evidence, "undefined": math.nan,
                                                         "overflow": math.inf})
    findings = [
        vanishing,
        _finding("GA402", names[:3], count=3, worst_layer=names[0], worst=0.38,
                 layers={name: {"saturated_frac": 0.38, "act_std": 0.2} for name in names[:3]}),
        _finding("GA501", (), "info", reason="no gain rule for Erf", unknown_ops=["Erf"]),
    ]
    recommendations = [
        Recommendation("reinitialization", list(names),
                       "re-initialise the Linear layers with Xavier (gain 1) for sigmoid",
                       "for m in model.modules():\n    if isinstance(m, nn.Linear):\n        "
                       "nn.init.xavier_uniform_(m.weight)",
                       finding="GA104", verified={"log10_ratio_before": ratio, "log10_ratio_after": -0.8}),
        Recommendation("normalization", names[:12], "insert LayerNorm before each sigmoid",
                       "nn.Sequential(nn.Linear(256, 256), nn.LayerNorm(256), nn.Sigmoid())", finding="GA104"),
        Recommendation("batch_shift", names[:3], "centre the input batch (subtract the mean 0.5)",
                       "x = x - x.mean(dim=0, keepdim=True)", finding="GA402"),
    ]
    return AuditReport(
        source="samples/deep_sigmoid.onnx", format="onnx", parameters=1_579_520, weight_layers=24, depth=24,
        verdict="fail", diagnosis=probe.diagnosis, static=static, probe=probe, probe_skipped="",
        findings=findings, recommendations=recommendations,
        timing={"load_s": 0.41, "static_s": 0.02, "probe_s": 1.37},
        notes=["BatchNorm runs in training mode during the probe."],
        explanations=explanations(f.code for f in findings),
    )


def healthy_audit() -> Audit:
    static, probe, _ = _mlp(4, 0.0, "relu")
    return AuditReport(
        source="pkg.models:build_net", format="torch", parameters=200_960, weight_layers=4, depth=4,
        verdict="pass", diagnosis=probe.diagnosis, static=static, probe=probe, probe_skipped="",
        findings=[], recommendations=[], timing={"load_s": 0.2, "static_s": 0.01, "probe_s": 0.3},
    )


def probe_skipped_audit() -> Audit:
    static, _, names = _mlp(6, -0.8, "tanh")
    findings = [_finding("GA102", (names[0], names[-1]), "warning", reason="first/last ratio 10^-4.0 < 10^-3"),
                _finding("GA502", reason="unsupported ONNX operator(s): NonMaxSuppression")]
    return AuditReport(
        source="models/net.onnx", format="onnx", parameters=394_240, weight_layers=6, depth=6,
        verdict="warn", diagnosis=static.diagnosis, static=static, probe=None,
        probe_skipped="unsupported ONNX operator(s): NonMaxSuppression",
        findings=findings, recommendations=[], timing={"load_s": 0.1, "static_s": 0.01}, partial=True,
        explanations=explanations(f.code for f in findings),
    )


def hostile_audit() -> Audit:
    static, probe, _ = _mlp(len(HOSTILE_NAMES), -0.5, "relu")
    for weight, layer, name in zip(static.weights, probe.layers, HOSTILE_NAMES):
        weight.layer = layer.layer = name
        weight.param = layer.param = name + ".weight"
    hostile_code = "GA666</script><script>alert(3)</script>"
    return AuditReport(
        source="<script>alert('source')</script>\x1b[2J.onnx", format="onnx", parameters=10, weight_layers=6, depth=6,
        verdict="fail", diagnosis=Diagnosis("vanishing", ("</script>\x1b[31m reason",)), static=static, probe=probe,
        probe_skipped="", timing={"load_s": 0.0, "static_s": 0.0, "probe_s": 0.0},
        findings=[Finding("GA101", "error", f"layer {n} \x1b[5mblinks", (n,), {"name": n}) for n in HOSTILE_NAMES]
        + [Finding(hostile_code, "error", "code injection", (), {})],
        recommendations=[Recommendation("pruning", list(HOSTILE_NAMES), "</pre><script>alert(4)</script>",
                                        "</code></pre><img src=x onerror=alert(5)>\x1b[31m", verified=None)],
        notes=["\x1b]8;;http://evil.example\x07link\x1b]8;;\x07"],
        explanations={**explanations(["GA101"]),
                      hostile_code: {"name": "<b>bold</b>", "summary": "</script>",
                                     "doc": "<img src=x onerror=alert(6)> javascript:alert(7)"}},
    )


def nonfinite_audit() -> Audit:
    """The probe's gradients overflow from the third layer on: NaN and inf where numbers were."""
    static, probe, names = _mlp(4, 1.5, "relu")
    for layer in probe.layers[2:]:
        layer.grad_rms, layer.act_std, layer.nonfinite = math.nan, math.inf, True
    probe.nonfinite, probe.first_nonfinite, probe.log10_ratio_first_last = True, names[2], None
    diagnosis = Diagnosis("exploding", ("non-finite gradients or activations",))
    probe.diagnosis = diagnosis
    return AuditReport(
        source="nets/exploding.onnx", format="onnx", parameters=1000, weight_layers=4, depth=4, verdict="fail",
        diagnosis=diagnosis, static=static, probe=probe, probe_skipped="", timing={"load_s": 0.1},
        findings=[_finding("GA105", (names[2],), first_layer=names[2])],
        recommendations=[Recommendation("gradient_clipping", [], "clip the global gradient norm at 1.0",
                                        "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)")],
    )
