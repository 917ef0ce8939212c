"""GA5xx: how much of the model the analyses covered.

A clean report is only as good as what was analysed: these findings say when the static estimate
passed through ops it has no rule for, and when no real backward pass checked it.
"""

from __future__ import annotations

from gradaudit.graph import output_ancestors, weight_layers
from gradaudit.i18n import _
from gradaudit.rules.rule_registry import Hit, RuleContext, rule

# The first/last gradient ratio compares two distinct weight layers an output depends on.
MIN_FLOW_LAYERS = 2


@rule("GA501", "static-estimate-partial", "warning",
      "The static estimate treated some ops as pass-through (no gain rule) or did not run.",
      "Static estimate is partial: {reason}")
def static_partial(ctx: RuleContext) -> list[Hit]:
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
        return [Hit([], {"reason": _("the static estimate did not run"), "unknown_ops": []})]
    unknown = sorted(set(ctx.static.unknown_ops))
    if not (unknown or ctx.static.partial or graph_reason):
        return []
    missed = [n for n, e in ctx.static.nodes.items() if not e.known and n in ctx.graph]
    nodes = [ctx.graph.nodes[n]["name"] for n in missed]
    # a node that failed (its mapping or its gain raised) says why; the others have no gain rule
    reasons = {ctx.graph.nodes[n]["name"]: ctx.static.nodes[n].reason for n in missed if ctx.static.nodes[n].reason}
    ungained = [n for n in missed if not ctx.static.nodes[n].reason]
    ungained_ops = sorted({ctx.graph.nodes[n]["source"] for n in ungained}) if reasons else unknown
    ungained_names = [ctx.graph.nodes[n]["name"] for n in ungained]
    where = " " + _("(at {nodes})").format(nodes=_listed(ungained_names)) if ungained_names else ""
    parts = [_("no gain rule for {ops}").format(ops=", ".join(ungained_ops)) + where] if ungained_ops else []
    if reasons:
        failed = [f"{name} ({reason})" for name, reason in reasons.items()]
        parts.append(_("could not model {nodes}").format(nodes=_listed(failed)))
    parts += [graph_reason] if graph_reason else []
    evidence = {"reason": "; ".join(parts) or _("some ops were not modelled"), "unknown_ops": unknown, "nodes": nodes,
                "reasons": reasons}
    return [Hit([], evidence, "info" if ctx.probe is not None else "warning")]


NAMED_NODES = 5


def _listed(names: list[str]) -> str:
    """The first NAMED_NODES names, and how many more."""
    shown = ", ".join(names[:NAMED_NODES])
    more = " " + _("and {count} more").format(count=len(names) - NAMED_NODES) if len(names) > NAMED_NODES else ""
    return shown + more


@rule("GA502", "probe-skipped", "warning",
      "No real backward pass checked the prediction.",
      "Dynamic probe skipped: {reason}")
def probe_skipped(ctx: RuleContext) -> list[Hit]:
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
    return [Hit([], {"reason": _("the probe was not requested")}, "info")]


@rule("GA504", "too-few-weight-layers", "error",
      "Fewer than two weight layers were found, so gradient flow could not be assessed.",
      "Gradient flow not assessed: {found} weight layer(s) found that an output depends on, at least 2 needed")
def too_few_weight_layers(ctx: RuleContext) -> list[Hit]:
    """What it detects
    A model in which gradaudit finds no weight layer (a parameter tensor with ndim >= 2, DESIGN.md)
    that an output depends on, or only one. The first/last gradient ratio, and every flow rule
    built on it, then has nothing to compare, and a report without findings would mean nothing.

    Why it matters
    Real networks have many weight layers; finding fewer almost always means the loader lost
    the model's structure (weights computed in a way it does not read, ids disconnected from
    the embedding, one tensor tied to every use), not that the model is fine. A gate that passes
    such a model has not checked it.

    Example
    A GPT-2 whose projections the loader did not recognise: only the tied embedding is found,
    so "first/last" would compare that tensor with itself.

    Fix
    Check that the model and its inputs are the ones intended (`--input-shape`, the factory),
    and report the model's op types if they are; a model that really has a single weight
    layer (a linear probe) can ignore this rule (`ignore = ["GA504"]`).

    References
    DESIGN.md (definitions: weight layer, log10_ratio_first_last).
    """
    # structure, not the gradient at init: the layers behind a zero-initialised head or gate get
    # their gradient from the first step on, and are real weight layers of the model
    outputs_need = output_ancestors(ctx.graph)
    found = sum(layer.node in outputs_need for layer in weight_layers(ctx.graph))
    if found >= MIN_FLOW_LAYERS:
        return []
    return [Hit([], {"found": found, "weight_layers": len(weight_layers(ctx.graph))})]


@rule("GA503", "rule-failed", "warning",
      "A rule raised an error on this model; its check is missing from the report.",
      "Rule {rule} could not run on this model: {error}")
def rule_failed(ctx: RuleContext) -> list[Hit]:
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
