"""The loss whose gradients the probe measures: the model's own, or gradaudit's default.

The default loss needs to know what produced each output (a softmax is read as probabilities, a
log-softmax as log-probabilities, anything else gets squared error); that comes from the
LayerGraph's output nodes, so the probe and the static estimator read the same outputs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import networkx as nx
import torch

from gradaudit.errors import InputError
from gradaudit.i18n import N_, _
from gradaudit.loss import default_loss

PROBABILITY_OPS = ("softmax", "log_softmax")
LOSS_LABELS = {
    "squared_error": N_("default: squared error against seeded N(0, 1) targets"),
    "nll": N_("default: negative log-likelihood of seeded random labels"),
}
CHOSEN_LOSS_LABELS = {  # --loss other than auto
    "mse": N_("mse: squared error against seeded N(0, 1) targets"),
    "cross-entropy": N_("cross-entropy: last axis as logits against seeded labels"),
    "bce": N_("bce: every output element as a logit against seeded 0/1 targets"),
    "nll": N_("nll: last axis as log-probabilities of seeded labels"),
}


def output_tensors(outputs: Any) -> list[torch.Tensor]:
    """The model's outputs as a flat list of tensors (a tensor, nested tuples/lists, or a dict)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (tuple, list)):
        return [t for item in outputs for t in output_tensors(item)]
    return []


def _output_kind(graph: nx.DiGraph, node_id: str) -> tuple[str, int]:
    data = graph.nodes[node_id]
    if data["op"] == "softmax":
        op = "log_softmax" if data["fn"] == "log_softmax" else "softmax"
        return op, int(data["attrs"].get("axis", -1))
    return data["op"], -1


@dataclass(frozen=True)
class Objective:
    """A loss callable (outputs, inputs, pass seed, teacher outputs or None) -> scalar, the label
    the report shows, and whether its targets are gradaudit's own (a teacher's outputs can then
    stand in for them; the model's own loss brings its targets)."""

    compute: Callable[..., torch.Tensor]  # (outputs, inputs, seed, teacher=None): the teacher is optional
    label: str
    seeded_targets: bool = True


def objective_for(
    graph: nx.DiGraph, loss_fn: Callable[[Any, Sequence[Any]], Any] | None, loss: str = "auto"
) -> Objective:
    """The model's own loss when the loader found one (it wins over `loss`), else the loss `loss`
    (gradaudit.config.LOSSES) on the graph's outputs."""
    if loss_fn is not None:
        return Objective(
            lambda outputs, inputs, seed, teacher=None: loss_fn(outputs, inputs), "model's own loss", False
        )
    kinds = [_output_kind(graph, node) for node in graph.graph.get("outputs", [])]
    slots = graph.graph.get("output_slots") or list(range(len(kinds)))  # graph output i is model output slots[i]

    def compute(outputs: Any, inputs: Sequence[Any], seed: int, teacher: Any = None) -> torch.Tensor:
        tensors = output_tensors(outputs)
        ops, axes = ["unknown"] * len(tensors), [-1] * len(tensors)
        for slot, (op, axis) in zip(slots, kinds):
            if slot < len(tensors):
                ops[slot], axes[slot] = op, axis
        taught = output_tensors(teacher) if teacher is not None else None
        try:
            return default_loss(tensors, ops, axes, seed, loss, taught)
        except ValueError as exc:
            raise InputError(f"cannot take the default loss: {exc}") from exc

    cut = graph.graph.get("gradient_cut")
    where = f" on {', '.join(cut['used'])} (outputs {', '.join(cut['cut'])} carry no gradient)" if cut else ""
    if loss != "auto":
        return Objective(compute, _(CHOSEN_LOSS_LABELS[loss]) + where)
    used = {"nll" if op in PROBABILITY_OPS else "squared_error" for op, _ in kinds} or {"squared_error"}
    return Objective(compute, " + ".join(_(LOSS_LABELS[k]) for k in sorted(used, reverse=True)) + where)
