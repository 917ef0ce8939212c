"""`gradaudit fix`: write a new model with the verified weight-level changes applied.

The audit runs with verification; the weight-level recommendations that helped (rescale, branch
scaling, re-initialisation, memory-gate bias, bias shift — not pruning, which removes capacity)
are combined greedily, best first (healthy afterwards, then training in the trial of `--verify`,
judged through depth, then the least invasive), each kept only if the combination analyses better than
without it, and never two on the same tensor. With `structural`, the architecture changes that
helped (norms inserted or removed, scaled skips, activations swapped; gradaudit.remedies.structure)
compete too, at most one of them (they are alternatives), its graph rewrites made after the
weight edits. For an ONNX file the edited tensors are written
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

from gradaudit.diagnosis import Diagnosis
from gradaudit.errors import InputError
from gradaudit.model import ModelHandle
from gradaudit.pipeline import AuditOptions, run_audit
from gradaudit.remedies import rewrite_torch
from gradaudit.remedies.edits import Edit, WeightRecommendation, edited
from gradaudit.remedies.rewrite_onnx import edited_onnx, rewritten
from gradaudit.remedies.structure import STRUCTURAL_CHANGES, Rewrite, restructured
from gradaudit.remedies.verify import HEALTHY, analyse, band_distance, benefit, outcome, restructured_handle
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
    definition: str = ""  # a torch model's architecture changes as a patch of its module definition


def _ranked(recommendations: list[Recommendation], structural: bool) -> list[WeightRecommendation]:
    """Recommendations that helped and that `fix` may apply, those reaching a healthy diagnosis first."""
    allowed = FIXABLE_CHANGES + (STRUCTURAL_CHANGES if structural else ())
    helped = [r for r in recommendations if (edited(r) or restructured(r)) and r.change in allowed
              and r.verified and r.verified["helped"]]
    return sorted(helped, key=benefit)


def choose(
    handle: ModelHandle, audit: Audit, options: AuditOptions, structural: bool = False
) -> list[WeightRecommendation]:
    """Greedy combination: add each helpful recommendation (disjoint tensors, at most one
    structural change) while it still helps."""
    ranked = _ranked(audit.recommendations, structural)
    if not ranked:
        return []
    chosen = ranked[:1]  # its own verification is the outcome of applying it alone
    best = (Diagnosis(chosen[0].verified["diagnosis_after"], ()), chosen[0].verified["log10_ratio_after"])
    for rec in ranked[1:]:
        if best[0].label == HEALTHY:
            break
        if {e.param for e in _edits(chosen)} & {e.param for e in rec.edits} or (
            restructured(rec) and _rewrites(chosen)
        ):
            continue
        with restructured_handle(handle, _edits(chosen + [rec]), _rewrites(chosen + [rec]), options.seed) as trial:
            result = outcome(*analyse(trial, passes=options.passes, seed=options.seed, data=options.data,
                                      loss=options.loss))
        if result[0].label == HEALTHY or band_distance(result[1]) < band_distance(best[1]):
            chosen, best = chosen + [rec], result
    return chosen


def _edits(recs: list[WeightRecommendation]) -> tuple[Edit, ...]:
    return tuple(e for rec in recs for e in rec.edits)


def _rewrites(recs: list[WeightRecommendation]) -> tuple[Rewrite, ...]:
    return tuple(r for rec in recs if restructured(rec) for r in rec.rewrites)


def fix_onnx(source: str, output: str, options: AuditOptions, input_shapes=None, batch: int = 8,
             structural: bool = False) -> FixResult:
    """Write `output`: `source` with the chosen verified changes (architecture changes too with
    `structural`); audit the written file."""
    from gradaudit.loaders.onnx_loader import load_onnx

    if Path(output).resolve() == Path(source).resolve():
        raise InputError(f"-o {output}: refusing to overwrite the input model")
    handle = load_onnx(source, input_shapes, batch)
    if handle.module is None:
        raise InputError(f"{source} cannot be executed ({handle.probe_unavailable}), so no change can be verified")
    before = run_audit(handle, _verifying(options))
    chosen = choose(handle, before, options, structural)
    model, skipped = edited_onnx(source, handle, _edits(chosen), options.seed)
    model = rewritten(model, _rewrites(chosen)) if _rewrites(chosen) else model
    write_atomic(output, model.SerializeToString())
    after = run_audit(load_onnx(output, input_shapes, batch), _plain(options))
    return FixResult(before, chosen, after, skipped)


def fix_handle(handle: ModelHandle, options: AuditOptions, structural: bool = False) -> FixResult:
    """For a torch model: choose the changes and audit the edited module (nothing is written)."""
    if handle.module is None:
        raise InputError(f"{handle.source} cannot be executed, so no change can be verified")
    before = run_audit(handle, _verifying(options))
    chosen = choose(handle, before, options, structural)
    with restructured_handle(handle, _edits(chosen), _rewrites(chosen), options.seed) as changed:
        after = run_audit(changed, _plain(options))
    return FixResult(before, chosen, after, [], _definition_patch(handle, chosen))


def _definition_patch(handle: ModelHandle, chosen: list[WeightRecommendation]) -> str:
    """The rewrites as `- old` / `+ new` lines of the module definition (empty without rewrites)."""
    rewrites = _rewrites(chosen)
    if not rewrites:
        return ""
    ranks = {data["name"]: len(data["out_shape"] or ()) for _, data in handle.graph.nodes(data=True)}
    return rewrite_torch.patch(handle.module, rewrites, ranks)


def before_and_after(result: FixResult) -> list[Audit]:
    """The two audits a before/after report compares; a factory's edited module, which keeps its
    source, is told apart by a suffix on the second."""
    after = result.after
    if after.source == result.before.source:
        after = dataclasses.replace(after, source=f"{after.source} (fixed)")
    return [result.before, after]


def patch(result: FixResult) -> str:
    """The chosen changes as one snippet to paste after the model is built (`model = ...`); an
    architecture change also as the patch of the module definition it amounts to (commented)."""
    if not result.applied:
        return "# gradaudit found no verified change to apply\n"
    parts = [f"# gradaudit fix {result.before.source}: paste after the model is built (`model = ...`)\n"]
    if result.definition:
        parts.append("# or change the module definition (patch):\n"
                     + "".join(f"# {line}\n" for line in result.definition.splitlines()))
    for rec in result.applied:
        verified = rec.verified or {}
        parts.append(f"# {rec.remedy} ({rec.change}, answers {rec.finding}): "
                     f"{verified.get('diagnosis_before')} -> {verified.get('diagnosis_after')}\n{rec.snippet}")
    return "\n".join(parts)


def _verifying(options: AuditOptions) -> AuditOptions:
    """The user's options with verification and its trial training: a change that diverges, stalls
    or is unstable in its trial ranks after those that train."""
    return dataclasses.replace(options, verify=True)


def _plain(options: AuditOptions) -> AuditOptions:
    """The user's options (thresholds, ignores, loss) without verification: the fixed model's audit."""
    return dataclasses.replace(options, verify=False)
