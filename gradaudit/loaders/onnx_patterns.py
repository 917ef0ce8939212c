"""Multi-node ONNX patterns that are one layer to the static estimator.

Exporters before opset 17 write LayerNorm as ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps)
-> Sqrt -> Div, and a hand-written RMSNorm (`x * torch.rsqrt(x.pow(2).mean(-1) + eps)`, Llama's)
as Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Reciprocal (or Div(1, .)) -> Mul(x, .). Node by
node those are chains of ops without gain rules (a quotient of two activations); recognised,
each is one `norm` node of fn "layer" or "rms", whose gain the estimator knows. GroupNorm
exports as an InstanceNormalization between two Reshapes (fn "group"), and SiLU before opset
22 as Mul(x, Sigmoid(x)): a product of two correlated activations, whose mean is not the product
of their means (activation "silu"); GPT-2's tanh-approximated GELU written out is activation
"gelu", and so is the exact one, x (1 + erf(x / sqrt 2)) / 2 (the legacy exporter's
wav2vec2). The torch loader renames its traced calls into this vocabulary and uses the same
matcher (gradaudit.loaders.torch_patterns).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch

from gradaudit.onnx_exec.executor import Step

ConstantLookup = Callable[[str], torch.Tensor | None]


@dataclass(frozen=True)
class FusedLayer:
    """A decomposed LayerNorm, RMSNorm, GroupNorm or SiLU ending at one Div, Mul or Reshape node."""

    op: str  # the LayerGraph op: "norm" or "activation"
    fn: str  # "layer", "rms", "group"; "silu"
    source: str  # the normalised tensor
    absorbed: frozenset[str]  # node ids of the steps inside the pattern (not graph nodes)
    attrs: dict[str, Any]


def _axes(step: Step, constant: ConstantLookup) -> tuple[int, ...] | None:
    if len(step.inputs) > 1 and step.inputs[1]:
        value = constant(step.inputs[1])
        return tuple(int(a) for a in value.tolist()) if value is not None else None
    axes = step.attrs.get("axes")
    return tuple(axes) if axes else None


def _is_scalar(name: str, value: float, constant: ConstantLookup) -> bool:
    tensor = constant(name)
    return tensor is not None and tensor.numel() == 1 and float(tensor) == value


def _squared(step: Step | None, constant: ConstantLookup) -> str | None:
    """The tensor `step` squares (Mul(t, t) or Pow(t, 2)), or None."""
    if step is None:
        return None
    if step.op_type == "Mul" and step.inputs[0] == step.inputs[1]:
        return step.inputs[0]
    if step.op_type == "Pow" and _is_scalar(step.inputs[1], 2.0, constant):
        return step.inputs[0]
    return None


@dataclass(frozen=True)
class _RootMeanSquare:
    """ReduceMean(t^2) + eps under a square root, matched backwards: `steps` hold the Sqrt when it
    is a node of its own (torch's rsqrt is one call)."""

    squared: str  # t
    axes: tuple[int, ...] | None
    eps: float
    steps: tuple[Step, ...]


def _root_mean_square(name: str, producer: dict[str, Step], constant: ConstantLookup) -> _RootMeanSquare | None:
    sqrt = producer.get(name)
    if sqrt is None or sqrt.op_type != "Sqrt":
        return None
    inside = _mean_square_plus_eps(sqrt.inputs[0], producer, constant)
    return _RootMeanSquare(inside.squared, inside.axes, inside.eps, inside.steps + (sqrt,)) if inside else None


def _mean_square_plus_eps(name: str, producer: dict[str, Step], constant: ConstantLookup) -> _RootMeanSquare | None:
    """ReduceMean(t^2) + eps, what a Sqrt or an Rsqrt (torch) takes."""
    add = producer.get(name)
    if add is None or add.op_type != "Add":
        return None
    eps_values = [constant(n) for n in add.inputs]
    var_names = [n for n, v in zip(add.inputs, eps_values) if v is None]
    var = producer.get(var_names[0]) if len(var_names) == 1 else None
    if var is None or var.op_type != "ReduceMean":
        return None
    square = producer.get(var.inputs[0])
    squared = _squared(square, constant)
    if squared is None:
        return None
    eps = float(next(v for v in eps_values if v is not None).reshape(-1)[0])
    return _RootMeanSquare(squared, _axes(var, constant), eps, (square, var, add))


def _layer_norm(div: Step, producer: dict[str, Step], constant: ConstantLookup) -> FusedLayer | None:
    """Div(x - mean(x), sqrt(mean((x - mean(x))^2) + eps))."""
    centred = div.inputs[0]
    sub = producer.get(centred)
    rms = _root_mean_square(div.inputs[1], producer, constant)
    if sub is None or sub.op_type != "Sub" or rms is None or rms.squared != centred:
        return None
    source, mean_name = sub.inputs
    mean = producer.get(mean_name)
    if mean is None or mean.op_type != "ReduceMean" or mean.inputs[0] != source or _axes(mean, constant) != rms.axes:
        return None
    absorbed = frozenset(s.node_id for s in (mean, sub, *rms.steps))
    return FusedLayer("norm", "layer", source, absorbed, {"axis": min(rms.axes or (-1,)), "eps": rms.eps})


def _rms_norm(end: Step, producer: dict[str, Step], constant: ConstantLookup) -> FusedLayer | None:
    """Div(x, sqrt(mean(x^2) + eps)), or Mul(x, .) of its Reciprocal, Div(1, .) or (torch) Rsqrt."""
    candidates: list[tuple[str, _RootMeanSquare | None, tuple[Step, ...]]] = []  # (source, root, steps between)
    if end.op_type == "Div":
        candidates.append((end.inputs[0], _root_mean_square(end.inputs[1], producer, constant), ()))
    elif end.op_type == "Mul" and len(end.inputs) == 2:
        for source, inverse_name in (end.inputs, end.inputs[::-1]):
            inverse = producer.get(inverse_name)
            if inverse is not None and inverse.op_type == "Reciprocal":
                candidates.append((source, _root_mean_square(inverse.inputs[0], producer, constant), (inverse,)))
            elif inverse is not None and inverse.op_type == "Div" and _is_scalar(inverse.inputs[0], 1.0, constant):
                candidates.append((source, _root_mean_square(inverse.inputs[1], producer, constant), (inverse,)))
            elif inverse is not None and inverse.op_type == "Rsqrt":
                candidates.append((source, _mean_square_plus_eps(inverse.inputs[0], producer, constant), (inverse,)))
    for source, rms, between in candidates:
        if rms is not None and rms.squared == source:
            absorbed = frozenset(s.node_id for s in (*rms.steps, *between))
            return FusedLayer("norm", "rms", source, absorbed, {"axis": min(rms.axes or (-1,)), "eps": rms.eps})
    return None


def _group_norm(end: Step, producer: dict[str, Step], constant: ConstantLookup) -> FusedLayer | None:
    """Reshape(InstanceNormalization(Reshape(x, (N, G, -1)), ones, zeros)): PyTorch's export of
    GroupNorm, its affine following as Mul and Add. Read as an instance norm of G units, the
    channels' own offsets after it were lost (a pooling head's input predicted 0.7 decades low)."""
    norm = producer.get(end.inputs[0])
    grouped = producer.get(norm.inputs[0]) if norm is not None and norm.op_type == "InstanceNormalization" else None
    if grouped is None or grouped.op_type != "Reshape" or len(norm.inputs) < 3:
        return None
    target, scale, bias = constant(grouped.inputs[1]), constant(norm.inputs[1]), constant(norm.inputs[2])
    if target is None or target.numel() != 3 or scale is None or bias is None:
        return None
    if not (bool((scale == 1).all()) and bool((bias == 0).all())):
        return None
    attrs = {"num_groups": int(target.reshape(-1)[1]), "eps": float(norm.attrs.get("epsilon", 1e-5))}
    return FusedLayer("norm", "group", grouped.inputs[0], frozenset({grouped.node_id, norm.node_id}), attrs)


def _silu(mul: Step, producer: dict[str, Step]) -> FusedLayer | None:
    """Mul(x, Sigmoid(x)), either order."""
    if len(mul.inputs) != 2:
        return None
    for x, gate in (mul.inputs, mul.inputs[::-1]):
        sigmoid = producer.get(gate)
        if sigmoid is not None and sigmoid.op_type == "Sigmoid" and sigmoid.inputs[0] == x:
            return FusedLayer("activation", "silu", x, frozenset({sigmoid.node_id}), {})
    return None


def _scalar_of(step: Step, constant: ConstantLookup) -> tuple[str, float] | None:
    """(the other operand, the constant) of a binary step with one scalar constant operand."""
    if len(step.inputs) != 2:
        return None
    for other, candidate in (step.inputs, step.inputs[::-1]):
        value = constant(candidate)
        if value is not None and value.numel() == 1 and constant(other) is None:
            return other, float(value)
    return None


def _near(value: float, target: float) -> bool:
    return abs(value - target) <= 1e-3 * abs(target)


def _gelu_tanh(mul: Step, producer: dict[str, Step], constant: ConstantLookup) -> FusedLayer | None:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): GPT-2's "gelu_new", written out."""
    for half_name, one_plus_name in (mul.inputs, mul.inputs[::-1]):
        half, one_plus = producer.get(half_name), producer.get(one_plus_name)
        halved = _scalar_of(half, constant) if half is not None and half.op_type == "Mul" else None
        plus = _scalar_of(one_plus, constant) if one_plus is not None and one_plus.op_type == "Add" else None
        if halved is None or plus is None or not (_near(halved[1], 0.5) and _near(plus[1], 1.0)):
            continue
        x, tanh = halved[0], producer.get(plus[0])
        scaled = producer.get(tanh.inputs[0]) if tanh is not None and tanh.op_type == "Tanh" else None
        by_c = _scalar_of(scaled, constant) if scaled is not None and scaled.op_type == "Mul" else None
        if by_c is None or not _near(by_c[1], math.sqrt(2 / math.pi)):
            continue
        inner = producer.get(by_c[0])
        if inner is None or inner.op_type != "Add" or x not in inner.inputs:
            continue
        cubic_term = producer.get(inner.inputs[1] if inner.inputs[0] == x else inner.inputs[0])
        by_k = _scalar_of(cubic_term, constant) if cubic_term is not None and cubic_term.op_type == "Mul" else None
        cube = producer.get(by_k[0]) if by_k is not None and _near(by_k[1], 0.044715) else None
        if (cube is None or cube.op_type != "Pow" or cube.inputs[0] != x
                or not _is_scalar(cube.inputs[1], 3.0, constant)):
            continue
        absorbed = frozenset(s.node_id for s in (half, one_plus, tanh, scaled, inner, cubic_term, cube))
        return FusedLayer("activation", "gelu", x, absorbed, {"approximate": "tanh"})
    return None


def _one_plus_erf(name: str, x: str, producer: dict[str, Step], constant: ConstantLookup) -> list[Step] | None:
    """The steps of 1 + erf(x / sqrt(2)) ending at `name` (a Div by sqrt 2 or a Mul by its inverse)."""
    plus = producer.get(name)
    one = _scalar_of(plus, constant) if plus is not None and plus.op_type == "Add" else None
    erf = producer.get(one[0]) if one is not None and _near(one[1], 1.0) else None
    scaled = producer.get(erf.inputs[0]) if erf is not None and erf.op_type == "Erf" else None
    if scaled is None or scaled.op_type not in ("Div", "Mul") or scaled.inputs[0] != x:
        return None
    by = _scalar_of(scaled, constant)
    factor = math.sqrt(2.0) if scaled.op_type == "Div" else math.sqrt(0.5)
    return [plus, erf, scaled] if by is not None and _near(by[1], factor) else None


def _gelu_erf(mul: Step, producer: dict[str, Step], constant: ConstantLookup) -> FusedLayer | None:
    """x (1 + erf(x / sqrt 2)) / 2, the exact GELU written out: (x * (1 + erf)) * 0.5 as the
    legacy exporter writes transformers' wav2vec2 activation, or (x * 0.5) * (1 + erf)."""
    halved = _scalar_of(mul, constant)
    if halved is not None and _near(halved[1], 0.5):  # (x * (1 + erf)) * 0.5
        inner = producer.get(halved[0])
        pairs = [(inner, a, b) for a, b in (inner.inputs, inner.inputs[::-1])] if inner is not None and (
            inner.op_type == "Mul" and len(inner.inputs) == 2) else []
    else:  # (x * 0.5) * (1 + erf)
        pairs = []
        for half_name, rest in (mul.inputs, mul.inputs[::-1]):
            half = producer.get(half_name)
            by = _scalar_of(half, constant) if half is not None and half.op_type == "Mul" else None
            if by is not None and _near(by[1], 0.5):
                pairs.append((half, by[0], rest))
    for step, x, rest in pairs:
        steps = _one_plus_erf(rest, x, producer, constant)
        if steps is not None:
            return FusedLayer("activation", "gelu", x, frozenset(s.node_id for s in [step, *steps]), {})
    return None


VALUE_KEEPING = frozenset({"Cast", "Identity"})


def _through_casts(steps: Sequence[Step]) -> tuple[list[Step], dict[str, Step]]:
    """The steps with every input read through Casts and Identities (T5's RMSNorm squares
    `x.to(float32)`: the pattern's t^2 and its x are one tensor), and the skipped steps by output."""
    alias: dict[str, str] = {}
    skipped: dict[str, Step] = {}
    for step in steps:
        if step.op_type in VALUE_KEEPING and step.inputs and step.inputs[0] and len(step.outputs) == 1:
            alias[step.outputs[0]] = alias.get(step.inputs[0], step.inputs[0])
            skipped[step.outputs[0]] = step
    seen = [replace(step, inputs=tuple(alias.get(n, n) for n in step.inputs)) for step in steps]
    return seen, skipped


def _absorbed_casts(norm: FusedLayer, end: str, steps: Sequence[Step], skipped: dict[str, Step]) -> FusedLayer:
    """The casts only the pattern (ending at `end`) reads belong to it."""
    readers: dict[str, set[str]] = defaultdict(set)
    for step in steps:
        for name in step.inputs:
            readers[name].add(step.node_id)
    casts = {cast.node_id for output, cast in skipped.items() if readers[output]
             and readers[output] <= norm.absorbed | {end}}
    return replace(norm, absorbed=norm.absorbed | casts) if casts else norm


def decomposed_layers(steps: Sequence[Step], constant: ConstantLookup) -> dict[str, FusedLayer]:
    """End node id -> the norm or activation it completes, when no tensor inside the pattern
    leaks out."""
    original = steps
    steps, skipped = _through_casts(steps)
    producer = {name: step for step in steps for name in step.outputs if name}
    readers: dict[str, set[str]] = defaultdict(set)
    for step in steps:
        for name in step.inputs:
            if name:
                readers[name].add(step.node_id)
    fused: dict[str, FusedLayer] = {}
    for step in steps:
        norm = None
        if step.op_type == "Div":
            norm = _layer_norm(step, producer, constant) or _rms_norm(step, producer, constant)
        elif step.op_type == "Mul":
            norm = (_rms_norm(step, producer, constant) or _silu(step, producer) or _gelu_tanh(step, producer, constant)
                    or _gelu_erf(step, producer, constant))
        elif step.op_type == "Reshape":
            norm = _group_norm(step, producer, constant)
        if norm is not None and all(readers[n] <= norm.absorbed | {step.node_id} for n in norm.absorbed):
            fused[step.node_id] = _absorbed_casts(norm, step.node_id, original, skipped)
    return fused
