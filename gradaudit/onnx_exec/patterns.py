"""Multi-node ONNX patterns that are one layer to the static estimator.

Exporters before opset 17 write LayerNorm as ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps)
-> Sqrt -> Div. Node by node that is a chain of ops without gain rules (a quotient of two
activations); recognised, it is one `norm` node of fn "layer", whose gain the estimator knows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from gradaudit.onnx_exec.executor import Step

ConstantLookup = Callable[[str], torch.Tensor | None]


@dataclass(frozen=True)
class FusedNorm:
    """A decomposed LayerNorm ending at one Div node."""

    source: str  # the normalised tensor
    absorbed: frozenset[str]  # node ids of the steps inside the pattern (not graph nodes)
    attrs: dict[str, Any]


def _axes(step: Step, constant: ConstantLookup) -> tuple[int, ...] | None:
    if len(step.inputs) > 1 and step.inputs[1]:
        value = constant(step.inputs[1])
        return tuple(int(a) for a in value.tolist()) if value is not None else None
    axes = step.attrs.get("axes")
    return tuple(axes) if axes else None


def _is_square_of(step: Step | None, tensor: str, constant: ConstantLookup) -> bool:
    if step is None:
        return False
    if step.op_type == "Mul":
        return list(step.inputs) == [tensor, tensor]
    if step.op_type == "Pow" and step.inputs[0] == tensor:
        exponent = constant(step.inputs[1])
        return exponent is not None and exponent.numel() == 1 and float(exponent) == 2.0
    return False


def _match(div: Step, producer: dict[str, Step], constant: ConstantLookup) -> FusedNorm | None:
    """The decomposed LayerNorm ending at `div`, or None."""
    centred, std = div.inputs[0], div.inputs[1]
    sub, sqrt = producer.get(centred), producer.get(std)
    if sub is None or sqrt is None or sub.op_type != "Sub" or sqrt.op_type != "Sqrt":
        return None
    source, mean_name = sub.inputs
    mean, add = producer.get(mean_name), producer.get(sqrt.inputs[0])
    if mean is None or mean.op_type != "ReduceMean" or mean.inputs[0] != source or add is None or add.op_type != "Add":
        return None
    eps_values = [constant(n) for n in add.inputs]
    var_names = [n for n, v in zip(add.inputs, eps_values) if v is None]
    if len(var_names) != 1:
        return None
    var = producer.get(var_names[0])
    if var is None or var.op_type != "ReduceMean" or _axes(var, constant) != _axes(mean, constant):
        return None
    square = producer.get(var.inputs[0])
    if not _is_square_of(square, centred, constant):
        return None
    axes = _axes(mean, constant) or (-1,)
    eps = float(next(v for v in eps_values if v is not None).reshape(-1)[0])
    absorbed = frozenset(s.node_id for s in (mean, sub, square, var, add, sqrt))
    return FusedNorm(source, absorbed, {"axis": min(axes), "eps": eps})


def decomposed_layer_norms(steps: Sequence[Step], constant: ConstantLookup) -> dict[str, FusedNorm]:
    """Div node id -> the LayerNorm it completes, when no tensor inside the pattern leaks out."""
    producer = {name: step for step in steps for name in step.outputs if name}
    readers: dict[str, set[str]] = defaultdict(set)
    for step in steps:
        for name in step.inputs:
            if name:
                readers[name].add(step.node_id)
    fused: dict[str, FusedNorm] = {}
    for step in steps:
        norm = _match(step, producer, constant) if step.op_type == "Div" else None
        if norm is not None and all(readers[n] <= norm.absorbed | {step.node_id} for n in norm.absorbed):
            fused[step.node_id] = norm
    return fused
