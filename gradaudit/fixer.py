"""`gradaudit fix`: write a new model with the verified weight-level changes applied.

The audit runs with verification; the weight-level recommendations that helped (rescale, branch
scaling, re-initialisation, memory-gate bias, bias shift — not pruning, which removes capacity)
are combined greedily, best first, each kept only if the combination analyses better than
without it, and never two on the same tensor. For an ONNX file the edited tensors are written
back into the initializers of a new file (the input is never touched; the write is atomic, through
gradaudit.report.write_atomic), which
must pass `onnx.checker` and is then audited afresh: that audit is the verdict. For a torch
factory the same edits are printed as a patch-style snippet, and the verdict is the audit of the
edited module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper

from gradaudit.pipeline import AuditOptions, run_audit
from gradaudit.diagnosis import Diagnosis
from gradaudit.errors import InputError
from gradaudit.model import ModelHandle
from gradaudit.remedies.edits import Edit, WeightRecommendation, apply_edits, edited
from gradaudit.remedies.verify import HEALTHY, analyse, band_distance, modified_handle, outcome
from gradaudit.report import write_atomic
from gradaudit.results import Audit, Recommendation

FIXABLE_CHANGES = ("rescale", "branch_scale", "redraw", "gate_bias", "bias_shift")


@dataclass
class FixResult:
    """What `fix` did: the audit before, the recommendations applied, the audit of the result."""

    before: Audit
    applied: list[WeightRecommendation]
    after: Audit
    skipped: list[str]  # parameters that could not be written back, with the reason


def _ranked(recommendations: list[Recommendation]) -> list[WeightRecommendation]:
    """Weight-level recommendations that helped, those reaching a healthy diagnosis first."""
    helped = [r for r in recommendations if edited(r) and r.change in FIXABLE_CHANGES and r.verified and r.verified["helped"]]
    return sorted(helped, key=lambda r: (r.verified["diagnosis_after"] != HEALTHY, band_distance(r.verified["log10_ratio_after"])))


def choose(handle: ModelHandle, audit: Audit, options: AuditOptions) -> list[WeightRecommendation]:
    """Greedy combination: add each helpful recommendation (disjoint tensors) while it still helps."""
    ranked = _ranked(audit.recommendations)
    if not ranked:
        return []
    chosen = ranked[:1]  # its own verification is the outcome of applying it alone
    best = (Diagnosis(chosen[0].verified["diagnosis_after"], ()), chosen[0].verified["log10_ratio_after"])
    for rec in ranked[1:]:
        if best[0].label == HEALTHY:
            break
        if {e.param for e in _edits(chosen)} & {e.param for e in rec.edits}:
            continue
        trial = modified_handle(handle, _edits(chosen + [rec]), options.seed)
        result = outcome(*analyse(trial, passes=options.passes, seed=options.seed, data=options.data))
        if result[0].label == HEALTHY or band_distance(result[1]) < band_distance(best[1]):
            chosen, best = chosen + [rec], result
    return chosen


def _edits(recs: list[WeightRecommendation]) -> tuple[Edit, ...]:
    return tuple(e for rec in recs for e in rec.edits)


def edited_onnx(source: str, handle: ModelHandle, edits: tuple[Edit, ...], seed: int) -> tuple[onnx.ModelProto, list[str]]:
    """The ONNX model with the edited executor parameters written into its initializers; its
    external data is read as the loader reads it, from inside the model's folder only."""
    from gradaudit.loaders.onnx_external import load_confined

    model = load_confined(source)
    module = apply_edits(handle.module, edits, seed)
    onnx_name = {attr: name for name, attr in handle.module.param_names.items()}
    params = dict(module.named_parameters())
    initializers = {t.name: t for t in model.graph.initializer}
    skipped = []
    for param in dict.fromkeys(e.param for e in edits):
        name = onnx_name.get(param)
        if name not in initializers:
            skipped.append(f"{param}: not an ONNX initializer (computed or shared), left unchanged")
            continue
        old = initializers[name]
        value = params[param].detach().cpu()
        value = value.float() if value.dtype == torch.bfloat16 else value  # numpy has no bfloat16; exact in float32
        array = value.numpy().astype(numpy_helper.to_array(old).dtype)  # back to the stored type (ml_dtypes for bf16/float8)
        old.CopyFrom(numpy_helper.from_array(array, name))
    onnx.checker.check_model(model)
    return model, skipped


def fix_onnx(source: str, output: str, options: AuditOptions, input_shapes=None, batch: int = 8) -> FixResult:
    """Write `output`: `source` with the chosen verified changes; audit the written file."""
    from gradaudit.loaders.onnx_loader import load_onnx

    if Path(output).resolve() == Path(source).resolve():
        raise InputError(f"-o {output}: refusing to overwrite the input model")
    handle = load_onnx(source, input_shapes, batch)
    if handle.module is None:
        raise InputError(f"{source} cannot be executed ({handle.probe_unavailable}), so no change can be verified")
    before = run_audit(handle, _verifying(options))
    chosen = choose(handle, before, options)
    model, skipped = edited_onnx(source, handle, _edits(chosen), options.seed)
    write_atomic(output, model.SerializeToString())
    after = run_audit(load_onnx(output, input_shapes, batch), _plain(options))
    return FixResult(before, chosen, after, skipped)


def fix_handle(handle: ModelHandle, options: AuditOptions) -> FixResult:
    """For a torch model: choose the changes and audit the edited module (nothing is written)."""
    if handle.module is None:
        raise InputError(f"{handle.source} cannot be executed, so no change can be verified")
    before = run_audit(handle, _verifying(options))
    chosen = choose(handle, before, options)
    after = run_audit(modified_handle(handle, _edits(chosen), options.seed), _plain(options))
    return FixResult(before, chosen, after, [])


def before_and_after(result: FixResult) -> list[Audit]:
    """The two audits a before/after report compares; a factory's edited module, which keeps its
    source, is told apart by a suffix on the second."""
    after = result.after
    if after.source == result.before.source:
        after = dataclasses.replace(after, source=f"{after.source} (fixed)")
    return [result.before, after]


def patch(result: FixResult) -> str:
    """The chosen changes as one snippet to paste after the model is built (`model = ...`)."""
    if not result.applied:
        return "# gradaudit found no verified weight-level change to apply\n"
    parts = [f"# gradaudit fix {result.before.source}: paste after the model is built (`model = ...`)\n"]
    for rec in result.applied:
        verified = rec.verified or {}
        parts.append(f"# {rec.remedy} ({rec.change}, answers {rec.finding}): "
                     f"{verified.get('diagnosis_before')} -> {verified.get('diagnosis_after')}\n{rec.snippet}")
    return "\n".join(parts)


def _verifying(options: AuditOptions) -> AuditOptions:
    return AuditOptions(passes=options.passes, seed=options.seed, data=options.data, rule_config=options.rule_config,
                        timeout=options.timeout, verify=True)


def _plain(options: AuditOptions) -> AuditOptions:
    return AuditOptions(passes=options.passes, seed=options.seed, data=options.data, rule_config=options.rule_config,
                        timeout=options.timeout)
