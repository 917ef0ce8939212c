"""The operator registry of the ONNX executor: one small torch function per ONNX op type.

Each op function takes the node's inputs (tensors, None for an omitted optional input), its
decoded attributes and an `OpContext`, and returns a tensor or a tuple of tensors (one per
declared output). `weight_slots` marks the input positions that hold learned tensors (conv and
linear weights, norm affines, recurrent matrices): a constant folded into such a slot becomes an
`nn.Parameter`, so real autograd gradients reach it. `stat_slots` marks positions holding
statistics (BatchNorm running mean/var), which stay buffers even when stored as initializers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

OpResult = torch.Tensor | tuple[torch.Tensor | None, ...]


@dataclass(frozen=True)
class OpContext:
    """What an op may need beyond its inputs: the model opset and the execution semantics."""

    opset: int
    train_mode: bool
    n_outputs: int = 1  # outputs the node declares (Split without sizes divides by it)
    used_outputs: int = 1  # leading outputs some reader needs (optional extras can be skipped)


OpFunction = Callable[[Sequence[Any], dict[str, Any], OpContext], OpResult]


@dataclass(frozen=True)
class OpSpec:
    """A registered op: its function and which input slots carry learned tensors or statistics."""

    fn: OpFunction
    weight_slots: frozenset[int] = frozenset()
    stat_slots: frozenset[int] = frozenset()
    # elementwise ops: a non-scalar constant operand is a learned per-channel affine
    affine_operands: bool = False


OPS: dict[str, OpSpec] = {}


def register(*op_types: str, weight_slots: Sequence[int] = (), stat_slots: Sequence[int] = (), affine_operands: bool = False):
    """Register one function for the given ONNX op types."""

    def wrap(fn: OpFunction) -> OpFunction:
        for op_type in op_types:
            OPS[op_type] = OpSpec(fn, frozenset(weight_slots), frozenset(stat_slots), affine_operands)
        return fn

    return wrap
