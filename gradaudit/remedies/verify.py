"""Verification: re-analyse the model with one recommendation applied and compare before/after.

A recommendation is only a fix when the evidence says so. `verify` applies each weight-changing
recommendation to an in-memory copy of the model (gradaudit.remedies.edits), refreshes the
LayerGraph's statistics of the edited tensors so the static estimate sees the change too, and
runs the same analyses as the audit, with the same seed and batches. The result fills
`Recommendation.verified`; `helped` is false when the change leaves the model unhealthy or moves
it away from the healthy band, and the reports say so instead of presenting it as a fix.

A rescale's factors are first-order: they come from gains measured at the current scale, and a
nonlinearity's gain moves with the scale (sigmoid', tanh saturation). So a rescale that improves
the model without curing it is refined LSUV-style (Mishkin & Matas 2016): re-analyse the edited
copy, take the same remedy's factors there, compose them, and repeat while the first/last ratio
keeps improving, for at most REFINE_ROUNDS rounds. The recommendation then states the composed
factors, and its verification is of those.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from typing import Any, Iterable, Iterator, Sequence

import networkx as nx
import onnx
import torch

from gradaudit.diagnosis import EXPLODING_LOG10_RATIO, VANISHING_LOG10_RATIO, Diagnosis
from gradaudit.errors import GradauditError
from gradaudit.graph import ParamStats
from gradaudit.i18n import _
from gradaudit.model import ModelHandle
from gradaudit.probe.trial import trial_run
from gradaudit.remedies import snippets
from gradaudit.remedies.amounts import Target
from gradaudit.remedies.edits import Edit, WeightRecommendation, apply_edits, edited
from gradaudit.remedies.rewrite_onnx import restructured_onnx_handle
from gradaudit.remedies.rewrite_torch import restructured_torch_handle
from gradaudit.remedies.structure import INVASIVENESS, Rewrite, StructuralRecommendation, restructured
from gradaudit.results import ProbeResult, Recommendation, StaticResult
from gradaudit.weight_stats import param_stats

# The middle of the healthy band of DESIGN.md's diagnosis, in decades of the first/last ratio.
BAND_CENTRE = 0.5 * (EXPLODING_LOG10_RATIO + VANISHING_LOG10_RATIO)
HEALTHY = "healthy"
REFINE_ROUNDS = 5
TRIAL_CANDIDATES = 3  # verified changes trial-trained, best first, until one trains


def _out_axis(stats: ParamStats, tensor: torch.Tensor) -> int:
    """The axis of output units the loader used: the one that reproduces its row_sum_sq."""
    for axis in range(tensor.dim()):
        again = param_stats(stats.name, tensor, axis).row_sum_sq
        if math.isclose(again, stats.row_sum_sq, rel_tol=1e-6, abs_tol=1e-30):
            return axis
    return 0


def refreshed_graph(
    graph: nx.DiGraph, before: torch.nn.Module, after: torch.nn.Module, changed: set[str]
) -> nx.DiGraph:
    """A copy of the LayerGraph whose statistics of the `changed` parameters describe `after`."""
    new = graph.copy()
    old_params = dict(before.named_parameters(remove_duplicate=False))
    new_params = dict(after.named_parameters(remove_duplicate=False))
    for _node, data in new.nodes(data=True):
        if not any(stats.name in changed for stats in data["params"].values()):
            continue
        data["params"] = {
            role: param_stats(stats.name, new_params[stats.name], _out_axis(stats, old_params[stats.name]))
            if stats.name in changed else stats
            for role, stats in data["params"].items()
        }
    return new


def modified_handle(handle: ModelHandle, edits: Sequence[Edit], seed: int = 0) -> ModelHandle:
    """The handle of an edited copy of the model: module and graph statistics both changed."""
    module = apply_edits(handle.module, tuple(edits), seed)
    graph = refreshed_graph(handle.graph, handle.module, module, {e.param for e in edits})
    return dataclasses.replace(handle, module=module, graph=graph)


def analyse(
    handle: ModelHandle, *, passes: int, seed: int, data: tuple | None, probe: bool = True, loss: str = "auto"
) -> tuple[StaticResult, ProbeResult | None]:
    """The audit's two analyses (the probe only when asked for and the model runs)."""
    from gradaudit.probe import run_probe
    from gradaudit.static import estimate

    static = estimate(handle.graph, handle.inputs, loss)
    runnable = probe and handle.module is not None and handle.runner is not None and not handle.probe_unavailable
    probed = run_probe(handle, passes=passes, seed=seed, data=data, loss=loss) if runnable else None
    return static, probed


def outcome(static: StaticResult, probe: ProbeResult | None) -> tuple[Diagnosis, float | None]:
    """The report's diagnosis and first/last ratio: the probe's when it ran, else the static ones."""
    if probe is not None:
        return probe.diagnosis, probe.log10_ratio_first_last
    return static.diagnosis, static.log10_ratio_first_last


def helped(before: tuple[Diagnosis, float | None], after: tuple[Diagnosis, float | None]) -> bool:
    """Healthy afterwards, and, when it already was, closer to the middle of the healthy band."""
    (label_before, ratio_before), (label_after, ratio_after) = (before[0].label, before[1]), (after[0].label, after[1])
    if label_after != HEALTHY:
        return False
    if label_before != HEALTHY:
        return True
    return band_distance(ratio_after) < band_distance(ratio_before)


def verification(before: tuple[Diagnosis, float | None], after: tuple[Diagnosis, float | None]) -> dict[str, Any]:
    """The `verified` record of a recommendation (keys of the JSON contract plus diagnoses)."""
    return {
        "log10_ratio_before": before[1],
        "log10_ratio_after": after[1],
        "diagnosis_before": before[0].label,
        "diagnosis_after": after[0].label,
        "helped": helped(before, after),
    }


def verify(
    handle: ModelHandle,
    static: StaticResult,
    probe: ProbeResult | None,
    recommendations: Iterable[Recommendation],
    *,
    passes: int = 3,
    seed: int = 0,
    data: tuple | None = None,
    loss: str = "auto",
) -> None:
    """Fill `verified` on every weight-changing recommendation by re-analysing an edited copy
    with the analyses the audit ran (no probe after a static-only audit), under the same loss."""
    if handle.module is None:
        return
    before = outcome(static, probe)
    for rec in recommendations:
        if restructured(rec):
            analysis = {"passes": passes, "seed": seed, "data": data, "probe": probe is not None, "loss": loss}
            rec.verified = _verified_rewrite(handle, rec, before, analysis)
        elif edited(rec, handle.module):
            after, rounds = _refined(handle, rec, before, passes=passes, seed=seed, data=data, probe=probe is not None,
                                     loss=loss)
            rec.verified = verification(before, after) | {"rounds": rounds}


@contextlib.contextmanager
def restructured_handle(handle: ModelHandle, edits: Sequence[Edit], rewrites: Sequence[Rewrite],
                        seed: int = 0) -> Iterator[ModelHandle]:
    """The handle of a copy with the weight edits and then the rewrites applied (ONNX: a rewritten
    copy of the file, loaded afresh; torch: module surgery on a deep copy, traced afresh). Without
    rewrites it is `modified_handle`'s in-memory copy."""
    if not rewrites:
        yield modified_handle(handle, edits, seed)
    elif handle.format == "onnx":
        with restructured_onnx_handle(handle, tuple(edits), tuple(rewrites), seed) as changed:
            yield changed
    else:
        yield restructured_torch_handle(handle, tuple(edits), tuple(rewrites), seed)


def _verified_rewrite(handle: ModelHandle, rec: StructuralRecommendation, before: tuple[Diagnosis, float | None],
                      analysis: dict[str, Any]) -> dict[str, Any] | None:
    """The `verified` record of a structural change; None (not verified) when the copy cannot be
    made (a rewrite that needs a module where the model calls a function, say)."""
    try:
        with restructured_handle(handle, rec.edits, rec.rewrites, analysis["seed"]) as changed:
            after = outcome(*analyse(changed, **analysis))
    except (GradauditError, onnx.checker.ValidationError) as problem:
        # stacklevel 1: the warning is attributed to gradaudit's own file, which the CLI reports
        warnings.warn(f"{rec.change} could not be verified: {problem}", RuntimeWarning, stacklevel=1)
        return None
    return verification(before, after)


def benefit(rec: Recommendation) -> tuple[bool, bool, int, float]:
    """Sort key of a verified recommendation that helped: healthy afterwards first, then those
    whose trial training (if it ran) did not diverge, then the least invasive
    (structure.INVASIVENESS), then the nearest to the middle of the healthy band."""
    invasiveness = INVASIVENESS.get(rec.change, 0) if restructured(rec) else 0
    trial = rec.verified.get("trial") or {}
    diverged = trial.get("after", {}).get("outcome", "").startswith("diverges")
    return (rec.verified["diagnosis_after"] != HEALTHY, diverged, invasiveness,
            band_distance(rec.verified["log10_ratio_after"]))


def ranked_verified(recommendations: Iterable[Recommendation]) -> list[WeightRecommendation]:
    """The verified changes that helped (weight-level or structural), best first (`benefit`)."""
    helped = [r for r in recommendations if (edited(r) or restructured(r)) and r.verified and r.verified.get("helped")]
    return sorted(helped, key=benefit)


def trial_comparison(
    handle: ModelHandle,
    recommendations: Iterable[Recommendation],
    *,
    lr: float,
    optimizer: str,
    steps: int,
    seed: int = 0,
    data: tuple | None = None,
    loss: str = "auto",
    deadline: float | None = None,
) -> None:
    """Train the original and copies with the verified changes, best first, for `steps` steps each
    (gradaudit.probe.trial: same optimizer, seeded batches and targets) until one trains, at most
    TRIAL_CANDIDATES of them; each tried change's `verified["trial"]` holds both loss curves, so
    "verified" also says whether it trains (a ratio in the healthy band does not guarantee it: a
    sigmoid stack rescaled into range can diverge at a rate its original survives)."""
    candidates = ranked_verified(recommendations)[:TRIAL_CANDIDATES]
    run = {"steps": steps, "seed": seed, "data": data, "loss": loss, "deadline": deadline}
    original = trial_run(handle, lr, optimizer, **run) if candidates else None
    if original is None:
        return
    for rec in candidates:
        with restructured_handle(handle, rec.edits, rec.rewrites if restructured(rec) else (), seed) as changed:
            fixed = trial_run(changed, lr, optimizer, **run)
        if fixed is None:
            return
        rec.verified["trial"] = {"lr": lr, "optimizer": optimizer, "steps": steps,
                                 "before": original.record() | {"losses": list(original.losses)},
                                 "after": fixed.record() | {"losses": list(fixed.losses)}}
        if fixed.trains:
            return


def band_distance(ratio: float | None) -> float:
    """How far a first/last ratio is from the middle of the healthy band (infinite when undefined)."""
    return abs(ratio - BAND_CENTRE) if ratio is not None and math.isfinite(ratio) else math.inf


def _distance(result: tuple[Diagnosis, float | None]) -> float:
    return band_distance(result[1])


def _refined(
    handle: ModelHandle, rec: WeightRecommendation, before: tuple[Diagnosis, float | None], **analysis: Any
) -> tuple[tuple[Diagnosis, float | None], int]:
    """Apply `rec` and, for a rescale, refine its factors while they keep helping; the outcome of
    the final edits (stored back in `rec`) and the number of rounds they took."""
    changed = modified_handle(handle, rec.edits, analysis["seed"])
    results = analyse(changed, **analysis)
    after = outcome(*results)
    rounds = 1
    while rounds < REFINE_ROUNDS and after[0].label != HEALTHY and _distance(after) < _distance(before):
        further = _same_change(changed, results, rec)
        if further is None:
            break
        composed = _compose(rec.edits, further.edits)
        trial = modified_handle(handle, composed, analysis["seed"])
        trial_results = analyse(trial, **analysis)
        if _distance(outcome(*trial_results)) >= _distance(after) and outcome(*trial_results)[0].label != HEALTHY:
            break
        rec.edits, changed, results, rounds = composed, trial, trial_results, rounds + 1
        after = outcome(*results)
    if rounds > 1:
        _restate(rec, rounds)
    return after, rounds


def _same_change(
    changed: ModelHandle, results: tuple[StaticResult, ProbeResult | None], rec: WeightRecommendation
) -> WeightRecommendation | None:
    """The edited model's own recommendation of the same rescale on the same tensors, if any."""
    from gradaudit.remedies.remedy_registry import recommend
    from gradaudit.rules import run_rules

    if any(e.how != "scale" for e in rec.edits):
        return None
    static, probe = results
    params = {e.param for e in rec.edits}
    for candidate in recommend(run_rules(changed, static, probe), changed, static, probe):
        same = isinstance(candidate, WeightRecommendation) and candidate.change == rec.change
        if same and candidate.edits and all(e.how == "scale" and e.param in params for e in candidate.edits):
            return candidate
    return None


def _compose(first: Sequence[Edit], then: Sequence[Edit]) -> tuple[Edit, ...]:
    """Two rescales of the same tensors as one: the factors multiply."""
    extra = {e.param: e.value for e in then}
    return tuple(dataclasses.replace(e, value=e.value * extra.get(e.param, 1.0)) for e in first)


def _restate(rec: WeightRecommendation, rounds: int) -> None:
    """Make the action and snippet state the refined factors."""
    layer_of = dict(zip((e.param for e in rec.edits), rec.layers))
    listing = ", ".join(f"{layer_of.get(e.param, e.param)} x{e.value:.3g}" for e in rec.edits)
    head, _colon, rest = rec.action.partition(": ")  # every rescale action reads "<what>: <listing>"
    note = rest[rest.find(" ("):] if " (" in rest else ""
    rec.action = _("{head}, refined over {rounds} re-measured rounds (LSUV-style): {listing}{note}").format(
        head=head, rounds=rounds, listing=listing, note=note)
    rec.snippet = snippets.rescale([Target(layer_of.get(e.param, ""), e.param, e.value) for e in rec.edits])
