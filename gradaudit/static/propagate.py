"""The static estimator's two passes over a LayerGraph: moments forward, gradients backward.

Forward in `forward_order`, each node's rule (gain_registry.GAINS) turns its inputs' moments into its
output's; backward in reverse order, gradients arriving from different consumers add
(moments.fork_sum) and the rule's backward map hands them to the producers. The loss seeds the
outputs under the planned loss, `--loss` (gradaudit.loss.output_grad_sq for squared error, with
the part (y - t)/B owes to y itself marked as moments.Grad.aligned); a softmax output under a
label loss receives p - onehot at its input, with its saturation and the part shared by every
row (`_softmax_seed`), as does any output under cross-entropy (its last axis the logits). Weight-gradient
predictions (summed over every node using a weight) and the diagnosis follow.

Values are clamped at float32's overflow point, as the probe's arithmetic would be, and the
estimate then reports non-finite activations or gradients instead of carrying infinities.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from dataclasses import dataclass, replace

import networkx as nx
import numpy as np

from gradaudit.diagnosis import FlowSummary, diagnose, log10_update_ratio
from gradaudit.errors import failure, strict_static
from gradaudit.graph import (
    flow_ends,
    forward_order,
    is_weight_role,
    normalisation_eps,
    ordered_inputs,
    outputs_zero_by_design,
    weight_layers,
    weight_positions,
)
from gradaudit.loss import output_grad_sq
from gradaudit.model import InputSpec
from gradaudit.results import NodeEstimate, StaticResult, WeightEstimate
from gradaudit.static import gains_attention, gains_dense, gains_elementwise, gains_norm, gains_recurrent, gains_shape  # noqa: F401  (register gains)
from gradaudit.static.gain_registry import GAINS, Gain, GainContext, Transfer, rows_per_unit
from gradaudit.static.gains_dense import summed_outer_product
from gradaudit.static.gains_shape import softmax_classes
from gradaudit.static.moments import Grad, Moments, coherent_sum, fork_sum
from gradaudit.static.quadrature import activation_stats, softmax_stats

FLOAT32_MAX = float(np.finfo(np.float32).max)
OVERFLOW_SQ = FLOAT32_MAX * FLOAT32_MAX  # a second moment whose RMS overflows float32
TINY = sys.float_info.min  # floor before taking a logarithm of a vanishing quantity


@dataclass
class _Pass:
    """State shared by the two passes."""

    graph: nx.DiGraph
    batch: int
    transfers: dict[str, Transfer]
    contexts: dict[str, GainContext]
    nonfinite: bool = False  # float32 overflow on the way, or non-finite weights
    loss: str = "auto"  # the planned run's loss (gradaudit.config.LOSSES), as the probe's


def _log10_sqrt(x: float) -> float:
    return 0.5 * math.log10(max(x, TINY))


def _clamp_moments(m: Moments) -> tuple[Moments, bool]:
    q = m.q
    if math.isfinite(q) and q <= OVERFLOW_SQ:
        return m, False
    if not math.isfinite(q):
        return Moments(FLOAT32_MAX, 0.0, 0.0), True
    return m.scaled(math.sqrt(OVERFLOW_SQ / q)), True


def _clamp_grad(g: Grad) -> tuple[Grad, bool]:
    if math.isfinite(g.sq) and g.sq <= OVERFLOW_SQ:
        return g, False
    if not math.isfinite(g.sq):
        return Grad(OVERFLOW_SQ, 0.0), True
    factor_sq = OVERFLOW_SQ / g.sq
    return Grad(OVERFLOW_SQ, g.mean * math.sqrt(factor_sq), g.unit_sq * factor_sq), True


def _unknown(ctx: GainContext, reason: str = "") -> Transfer:
    """No gain: pass the first input through, and say so (known=False makes the estimate partial);
    `reason` says why when it is more than the op having no gain (a loader's own reason, or the
    gain's failure)."""
    return Transfer(ctx.x, lambda g: [g] * len(ctx.inputs), known=False,
                    reason=reason or str(ctx.attrs.get("unknown_reason", "")))


def _apply(gain: Gain, ctx: GainContext) -> Transfer:
    """Run a gain; attributes it cannot read (a loader's odd shape or value) make the node unknown,
    with the error kept as its reason, or raise in strict mode (gradaudit.errors.strict_static)."""
    try:
        return gain(ctx)
    except (ArithmeticError, LookupError, TypeError, ValueError) as error:
        if strict_static():
            raise
        return _unknown(ctx, f"the {ctx.op} gain failed: {failure(error)}")


def _batch(graph: nx.DiGraph, inputs: list[InputSpec]) -> int:
    for spec in inputs:
        if spec.shape:
            return int(spec.shape[0])
    for node in graph.graph.get("inputs", []):
        shape = graph.nodes[node]["out_shape"]
        if shape:
            return int(shape[0])
    return 1


def _forward(state: _Pass, inputs: list[InputSpec]) -> dict[str, Moments]:
    graph = state.graph
    specs = dict(zip(graph.graph.get("inputs", []), inputs))
    moments: dict[str, Moments] = {}
    for node in forward_order(graph):
        data = graph.nodes[node]
        producers = ordered_inputs(graph, node)
        ctx = GainContext(
            node, data["op"], data["fn"], data["attrs"], data["params"], data["out_shape"],
            [moments[p] for p in producers], [graph.nodes[p]["out_shape"] for p in producers],
            producers, state.batch, specs.get(node),
        )
        transfer = _apply(GAINS.get(data["op"], _unknown), ctx)
        state.nonfinite |= any(p.nonfinite for p in data["params"].values())  # NaN/inf weights
        out, clamped = _clamp_moments(transfer.out)
        state.nonfinite |= clamped
        moments[node] = out
        state.transfers[node], state.contexts[node] = transfer, ctx
    return moments


def _softmax_seed(logits: Moments, classes: int, rows: int, batch: int) -> Grad:
    """The negative log-likelihood gradient p - onehot at the logits, for seeded random labels.

    Per element E[(p - onehot)^2] = (1 - 2/C + E[sum p^2]) / C: a saturated softmax hands back
    more than a uniform one. Its batch mean per class is the shared part of p less the label
    frequency: logits whose per-class offsets are common to every row (a collapsed
    representation) give every row the same p, and that part adds up coherently in the head's
    weight gradient; large C averages the within-row fluctuation out of the mean of p.
    """
    total = softmax_stats(logits.var, classes).participation
    shared = softmax_stats(logits.s, classes).participation
    sq = (1.0 - 2.0 / classes + total) / classes
    unit_sq = (shared - 1.0 / classes) / classes + (1.0 - 1.0 / classes) / (classes * rows)
    return Grad(sq / batch**2, 0.0, max(unit_sq, 0.0) / batch**2)


def _labels_on_log_probs_seed(classes: int, rows: int, batch: int) -> Grad:
    """`--loss nll` on an output that is no softmax: dL/dy = -onehot/B for seeded labels, so
    E[g^2] = 1/(C B^2) per element, and a class unit's batch mean is minus its label frequency."""
    return Grad(1.0 / (classes * batch**2), -1.0 / (classes * batch),
                (1.0 / classes**2 + (1.0 - 1.0 / classes) / (classes * rows)) / batch**2)


def _bce_seed(m: Moments, rows: int, batch: int) -> Grad:
    """`--loss bce`: dL/dy = (sigmoid(y) - t)/B with seeded t ~ Bernoulli(1/2) independent of y,
    so E[g^2] = (E[sigmoid^2] - E[sigmoid] + 1/2)/B^2; sigmoid's moments by quadrature."""
    sig = activation_stats("sigmoid", None, m).out
    unit_sq = sig.s + (sig.mu - 0.5) ** 2 + 0.25 / rows
    return Grad((sig.q - sig.mu + 0.5) / batch**2, (sig.mu - 0.5) / batch, unit_sq / batch**2)


def _seeds_the_logits(op: str, loss: str) -> bool:
    """A label loss on a softmax output hands p - onehot to the softmax's input (its logits)."""
    return op == "softmax" and loss in ("auto", "cross-entropy", "nll")


def _loss_seed(state: _Pass, node: str, m: Moments) -> Grad:
    """E[dL/dy^2] and E[dL/dy] at an output under the planned loss (gradaudit.loss): a label loss
    on a softmax output at its logits, cross-entropy on any other output with its last axis as
    the logits, nll and bce by their own gradients, squared error otherwise."""
    graph, batch, loss = state.graph, state.batch, state.loss
    data = graph.nodes[node]
    if _seeds_the_logits(data["op"], loss):
        ctx = state.contexts[node]
        axis = int(data["attrs"].get("axis", -1))
        return _softmax_seed(ctx.x, softmax_classes(ctx), rows_per_unit(data["out_shape"], axis, batch), batch)
    shape = data["out_shape"]
    last_rows = rows_per_unit(shape, -1, batch)
    if loss == "bce":
        return _bce_seed(m, last_rows, batch)
    if loss in ("cross-entropy", "nll") and shape and int(shape[-1]) > 1:
        classes = int(shape[-1])
        if loss == "cross-entropy":
            return _softmax_seed(m, classes, last_rows, batch)
        return _labels_on_log_probs_seed(classes, last_rows, batch)
    sq = output_grad_sq(m.q, shape)
    # dL/dy = (y - t) / B with t ~ N(0, 1): a unit's mean over its n values keeps y's offset,
    # while t averages down to variance 1/n
    per_unit = rows_per_unit(data["out_shape"], 1 if data["op"] == "conv" else -1, batch)
    unit_sq = (m.s + m.mu * m.mu + 1.0 / per_unit) / (batch * batch)
    return Grad(sq, m.mu / batch, unit_sq, aligned=m.q / (batch * batch))  # the y in (y - t) / B


def _backward(state: _Pass, moments: dict[str, Moments]) -> dict[str, Grad]:
    graph = state.graph
    arriving: dict[str, list[Grad]] = {n: [] for n in graph.nodes}
    for node in graph.graph.get("outputs", []):
        arriving[node].append(_loss_seed(state, node, moments[node]))
        if _seeds_the_logits(graph.nodes[node]["op"], state.loss):  # the seed already is the gradient at the logits
            state.transfers[node] = replace(state.transfers[node], backward=lambda g: [g])
    grads: dict[str, Grad] = {}
    for node in reversed(forward_order(graph)):
        grad, clamped = _clamp_grad(fork_sum(arriving[node]))
        state.nonfinite |= clamped
        grads[node] = grad
        producers = state.contexts[node].producers
        if not producers:
            continue
        per_slot = state.transfers[node].backward(grad)
        for producer in dict.fromkeys(producers):
            slots = [g for p, g in zip(producers, per_slot) if p == producer]
            arriving[producer].append(coherent_sum(slots))
    return grads


def _node_gain(state: _Pass, node: str) -> float:
    """log10 of the largest per-input RMS gain for a unit, centred output gradient.

    Nodes fed only by integer inputs (embeddings) pass no gradient on; their gain is left at 0.
    """
    transfer, ctx = state.transfers[node], state.contexts[node]
    if all(_is_integer_source(state, p) for p in ctx.producers):
        return 0.0
    return _log10_sqrt(max(g.sq for g in transfer.backward(Grad(1.0, 0.0))))


def _is_integer_source(state: _Pass, node: str) -> bool:
    spec = state.contexts[node].spec
    return spec is not None and not spec.is_float


def _weight_grad_sq(state: _Pass, node: str, role: str, grad: Grad) -> float:
    transfer, ctx = state.transfers[node], state.contexts[node]
    if transfer.weight_grads is not None:
        predicted = transfer.weight_grads(grad)
        if role in predicted:
            return predicted[role]
    channel_axis = 1 if ctx.op == "conv" else -1
    return summed_outer_product(rows_per_unit(ctx.out_shape, channel_axis, state.batch), grad, ctx.x)


def _weight_uses(graph: nx.DiGraph) -> dict[str, list[tuple[str, str]]]:
    """Every (node, role) holding each weight tensor, keyed by its parameter name."""
    uses: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for node, data in graph.nodes(data=True):
        for role, stats in data["params"].items():
            if is_weight_role(role):
                uses[stats.name].append((node, role))
    return uses


def _shared_weight_grad_sq(state: _Pass, uses: list[tuple[str, str]], grads: dict[str, Grad]) -> float:
    """A weight used at several nodes (tied layers, a module called twice) gets the sum of its
    uses' gradients; the uses see different inputs and gradients, so their mean squares add."""
    return sum(_weight_grad_sq(state, node, role, grads[node]) for node, role in uses)


def _pow10(log10_value: float) -> float:
    return math.inf if log10_value > sys.float_info.max_10_exp else 10.0**log10_value


def estimate(graph: nx.DiGraph, inputs: list[InputSpec], loss: str = "auto") -> StaticResult:
    """Predict every node's moments and gain and every weight layer's gradient RMS (module doc)
    under the planned loss `loss` (gradaudit.config.LOSSES), the one the probe measures."""
    state = _Pass(graph, _batch(graph, inputs), {}, {}, loss=loss)
    moments = _forward(state, inputs)
    grads = _backward(state, moments)
    nodes: dict[str, NodeEstimate] = {}
    unknown: list[str] = []
    for node in forward_order(graph):
        transfer, data = state.transfers[node], graph.nodes[node]
        nodes[node] = NodeEstimate(
            moments[node].q, moments[node].mu, grads[node].sq, _node_gain(state, node), transfer.known,
            transfer.reason,
        )
        if not transfer.known and data["source"] not in unknown:
            unknown.append(data["source"])
    uses = _weight_uses(graph)
    weights = [
        WeightEstimate(
            w.node,
            w.layer,
            w.param,
            w.op,
            nodes[w.node].log10_gain,
            _log10_sqrt(_shared_weight_grad_sq(state, uses[w.param], grads)),
            w.role,
        )
        for w in weight_layers(graph)
    ]
    ends = flow_ends(graph, weights)
    ratio = ends[0].log10_grad_rms - ends[-1].log10_grad_rms if ends else None
    update_ratio = _log10_update_ratio(graph, ends, ratio, nodes)
    outputs = graph.graph.get("outputs", [])
    output_rms = math.sqrt(moments[outputs[0]].q) if outputs else None
    time_ratios = {graph.nodes[n]["name"]: t.time_ratio for n, t in state.transfers.items() if t.time_ratio is not None}
    judged_output = None if outputs_zero_by_design(graph) else output_rms
    flow = FlowSummary(ratio, [_pow10(w.log10_grad_rms) for w in ends], judged_output, state.nonfinite, time_ratios)
    return StaticResult(
        nodes, weights, ratio, output_rms, diagnose(flow), unknown,
        partial=bool(unknown) or bool(graph.graph.get("partial")), recurrent_log10_time_ratio=time_ratios,
        log10_update_ratio_first_last=update_ratio,
    )


def _log10_update_ratio(
    graph: nx.DiGraph, ends: list[WeightEstimate], ratio: float | None, nodes: dict[str, NodeEstimate]
) -> float | None:
    """The predicted first/last relative update ratio (diagnosis.log10_update_ratio); an end
    feeding a normalisation is read with its predicted output RMS."""
    if not ends:
        return None
    first, last = ends[0], ends[-1]
    return log10_update_ratio(
        ratio,
        (graph.nodes[first.node]["params"][first.role].rms, graph.nodes[last.node]["params"][last.role].rms),
        (weight_positions(graph, first.node), weight_positions(graph, last.node)),
        (_normalised(graph, first, nodes), _normalised(graph, last, nodes)),
    )


def _normalised(graph: nx.DiGraph, end: WeightEstimate, nodes: dict[str, NodeEstimate]) -> tuple[float, float] | None:
    """A weight layer's predicted output RMS and the eps of the normalisation it feeds, if it feeds one."""
    eps = normalisation_eps(graph, end.node)
    if eps is None or end.node not in nodes:
        return None
    return math.sqrt(nodes[end.node].q), eps
