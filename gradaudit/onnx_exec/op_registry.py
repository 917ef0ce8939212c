"""The operator registry of the ONNX executor: one small torch function per ONNX op type.

Each op function takes the node's inputs (tensors, None for an omitted optional input), its
decoded attributes and an `OpContext`, and returns a tensor or a tuple of tensors (one per
declared output). `weight_slots` marks the input positions that hold learned tensors (conv and
linear weights, norm affines, recurrent matrices): a constant folded into such a slot becomes an
`nn.Parameter`, so real autograd gradients reach it. `stat_slots` marks positions holding
statistics (BatchNorm running mean/var) and `setting_slots` positions holding the op's settings
(a Pow exponent, Clip bounds, Resize scales): both stay buffers even when stored as float
initializers (`operand_role` decides, for every op, in one place).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import onnx
import torch

OpResult = torch.Tensor | tuple[torch.Tensor | None, ...]

# Default-domain opsets the ops implement, up to the newest the installed onnx defines: its schemas
# are what the ops follow, and a newer file may use semantics no schema here describes (the
# validator refuses others).
MIN_OPSET, MAX_OPSET = 7, onnx.defs.onnx_opset_version()


@dataclass(frozen=True)
class OpContext:
    """What an op may need beyond its inputs: the model opset, the execution semantics, and for
    control flow the enclosing scope its subgraphs read (outer-scope names -> values)."""

    opset: int
    train_mode: bool
    n_outputs: int = 1  # outputs the node declares (Split without sizes divides by it)
    used_outputs: int = 1  # leading outputs some reader needs (optional extras can be skipped)
    scope: Mapping[str, Any] = field(default_factory=dict)


OpFunction = Callable[[Sequence[Any], dict[str, Any], OpContext], OpResult]


@dataclass(frozen=True)
class OpSpec:
    """A registered op: its function and which input slots carry learned tensors or statistics."""

    fn: OpFunction
    weight_slots: frozenset[int] = frozenset()
    stat_slots: frozenset[int] = frozenset()
    # elementwise ops: a non-scalar constant operand is a learned per-channel affine
    affine_operands: bool = False
    setting_slots: frozenset[int] = frozenset()


def operand_role(spec: OpSpec | None, slot: int, tensor: torch.Tensor) -> str:
    """How an op reads a constant operand: 'weight' (a learned slot, or a per-channel affine of
    an elementwise op), 'setting' (a statistic, a setting slot, or a scalar outside a learned
    slot: an exponent, an epsilon, a mask fill value; d(x^p)/dp = x^p ln x is NaN for x < 0, so
    such a tensor must never be trained), or 'data' (anything else: a learned token concatenated
    in, a position table added)."""
    if spec is None:
        return "data"
    if slot in spec.weight_slots or (spec.affine_operands and tensor.numel() > 1):
        return "weight"
    if slot in spec.stat_slots or slot in spec.setting_slots or tensor.numel() <= 1:
        return "setting"
    return "data"


OPS: dict[str, OpSpec] = {}


def optional_input(inputs: Sequence[Any], slot: int) -> torch.Tensor | None:
    """An optional input, or None where it is omitted: past the end, named '' (None here), or an
    empty tensor (the form some exporters write for "not given")."""
    value = inputs[slot] if len(inputs) > slot else None
    return value if value is not None and value.numel() else None


def register(
    *op_types: str,
    weight_slots: Sequence[int] = (),
    stat_slots: Sequence[int] = (),
    affine_operands: bool = False,
    setting_slots: Sequence[int] = (),
):
    """Register one function for the given ONNX op types."""

    def wrap(fn: OpFunction) -> OpFunction:
        for op_type in op_types:
            OPS[op_type] = OpSpec(
                fn, frozenset(weight_slots), frozenset(stat_slots), affine_operands, frozenset(setting_slots)
            )
        return fn

    return wrap
