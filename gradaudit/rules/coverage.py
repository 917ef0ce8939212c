"""GA5xx: how much of the model the analyses covered.

A clean report is only as good as what was analysed: these findings say when the static estimate
passed through ops it has no rule for, and when no real backward pass checked it.
"""

from __future__ import annotations

from gradaudit.rules.registry import Context, Hit, rule


@rule("GA501", "static-estimate-partial", "warning",
      "The static estimate treated some ops as pass-through (no gain rule) or did not run.",
      "Static estimate is partial: {reason}")
def static_partial(ctx: Context) -> list[Hit]:
    """What it detects
    Ops the static estimator has no gain rule for (listed by their original op type), parts of
    the model the loader could not represent, or a missing static estimate.

    Why it matters
    Unknown ops are treated as identity, so a prediction through them can be off by their real
    gain; without a probe to check it, a healthy verdict may be wrong. Where the probe ran, the
    gate follows the measurement, so the gap is the tool's, not the model's: a note (info),
    naming the nodes; a warning only when the verdict rests on the estimate alone.

    Example
    A custom CUDA op, or an ONNX op outside the supported vocabulary (e.g. NonMaxSuppression).

    Fix
    Trust the probe's measurement (GA106 shows the gap), or express the op with standard ones.

    References
    DESIGN.md (LayerGraph, partial estimates).
    """
    graph_reason = ctx.graph.graph.get("partial_reason", "") if ctx.graph.graph.get("partial") else ""
    if ctx.static is None:
        return [Hit([], {"reason": "the static estimate did not run", "unknown_ops": []})]
    unknown = sorted(set(ctx.static.unknown_ops))
    if not (unknown or ctx.static.partial or graph_reason):
        return []
    nodes = [ctx.graph.nodes[n]["name"] for n, e in ctx.static.nodes.items() if not e.known and n in ctx.graph]
    where = f" (at {_listed(nodes)})" if nodes else ""
    parts = ([f"no gain rule for {', '.join(unknown)}{where}"] if unknown else []) + ([graph_reason] if graph_reason else [])
    evidence = {"reason": "; ".join(parts) or "some ops were not modelled", "unknown_ops": unknown, "nodes": nodes}
    return [Hit([], evidence, "info" if ctx.probe is not None else "warning")]


NAMED_NODES = 5


def _listed(names: list[str]) -> str:
    """The first NAMED_NODES names, and how many more."""
    shown = ", ".join(names[:NAMED_NODES])
    return shown + (f" and {len(names) - NAMED_NODES} more" if len(names) > NAMED_NODES else "")


@rule("GA502", "probe-skipped", "warning",
      "No real backward pass checked the prediction.",
      "Dynamic probe skipped: {reason}")
def probe_skipped(ctx: Context) -> list[Hit]:
    """What it detects
    The dynamic probe did not run: the model cannot be executed (warning, with the loader's
    reason) or the probe was turned off (info).

    Why it matters
    The verdict then rests on the static prediction alone, which can miss data-dependent
    effects (dead units, saturation, finite-width fluctuations).

    Example
    An ONNX file with an operator the executor does not implement, or `--static-only`.

    Fix
    Provide a runnable model (a factory with example inputs) or implement the missing op.

    References
    DESIGN.md (data flow).
    """
    if ctx.probe is not None:
        return []
    if ctx.handle.probe_unavailable:
        return [Hit([], {"reason": ctx.handle.probe_unavailable})]
    return [Hit([], {"reason": "the probe was not requested"}, "info")]


@rule("GA503", "rule-failed", "warning",
      "A rule raised an error on this model; its check is missing from the report.",
      "Rule {rule} could not run on this model: {error}")
def rule_failed(ctx: Context) -> list[Hit]:
    """What it detects
    A rule that raised an exception on this model's graph or results. The registry reports it
    under this code, naming the rule and the error, and goes on with the other rules; this
    check itself never fires.

    Why it matters
    The audit is missing that rule's verdict: a clean report may be incomplete.

    Example
    A graph shape no rule anticipated (an op with no inputs, an unusual parameter layout).

    Fix
    Report the error with the model's op types (`gradaudit check --debug`); meanwhile the other
    findings stand.

    References
    DESIGN.md (exit codes: internal errors).
    """
    return []
