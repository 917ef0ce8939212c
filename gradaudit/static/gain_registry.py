"""The gain-rule registry: one small function per op kind, and the types they share.

A rule sees one node and the forward moments of its inputs (`GainContext`) and returns a `Transfer`:
the moments of its output, a backward map from the output gradient to one gradient per input
slot, and, for nodes holding weights, the predicted mean-square gradient of each weight. The
propagation pass (propagate.py) only walks the graph; everything op-specific lives in rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from gradaudit.graph import ParamStats
from gradaudit.model import InputSpec
from gradaudit.static.moments import Grad, Moments, Spectrum

Backward = Callable[[Grad], list[Grad]]
WeightGrads = Callable[[Grad], dict[str, float]]


@dataclass(frozen=True)
class GainContext:
    """What a rule may read: the node's schema fields and its inputs' forward statistics."""

    node: str
    op: str
    fn: str | None
    attrs: dict[str, Any]
    params: dict[str, ParamStats]
    out_shape: tuple[int, ...] | None
    inputs: list[Moments]  # slot order
    in_shapes: list[tuple[int, ...] | None]
    producers: list[str]  # node id feeding each slot
    batch: int  # batch size of the model inputs
    spec: InputSpec | None = None  # for op "input": the model input it stands for

    def param(self, role: str) -> ParamStats | None:
        """A parameter's statistics, or None when absent, empty or entirely non-finite."""
        stats = self.params.get(role)
        return stats if stats is not None and stats.numel > 0 and math.isfinite(stats.rms) else None

    @property
    def x(self) -> Moments:
        """The first (data) input's moments."""
        return self.inputs[0] if self.inputs else Moments()


@dataclass
class Transfer:
    """A rule's answer for one node."""

    out: Moments
    backward: Backward
    weight_grads: WeightGrads | None = None  # role -> predicted E[(dL/dW)^2] per element
    time_ratio: float | None = None  # recurrent: predicted log10 first-step / last-step sensitivity
    known: bool = True
    reason: str = ""  # why not known, when the node could not be modelled (GA501 shows it)


Gain = Callable[[GainContext], Transfer]
GAINS: dict[str, Gain] = {}


def gain(*ops: str) -> Callable[[Gain], Gain]:
    """Register a rule for one or more op kinds."""

    def register(fn: Gain) -> Gain:
        for op in ops:
            if op in GAINS:
                raise ValueError(f"two gain rules for op {op!r}")
            GAINS[op] = fn
        return fn

    return register


def elementwise(
    factor_sq: float, factor_mean: float, slots: int = 1, factor_unit_sq: float | None = None,
    spectrum: Spectrum | None = None
) -> Backward:
    """Backward map of an op multiplying each input's gradient by one elementwise factor
    (statistics as in moments.Grad.scaled)."""
    return lambda g: [g.scaled(factor_sq, factor_mean, factor_unit_sq, spectrum)] * slots


def numel(shape: tuple[int, ...] | None) -> int | None:
    return math.prod(shape) if shape else None


def rows_per_unit(shape: tuple[int, ...] | None, channel_axis: int, batch: int) -> int:
    """How many values each unit (feature / channel) takes in one pass: batch x positions.

    Read from the output shape itself, so a loader's reshape that folds the sequence into the
    batch axis, (T * B, d), counts the same rows as (B, T, d).
    """
    if not shape:
        return batch
    units = shape[channel_axis] if len(shape) > 1 and -len(shape) <= channel_axis < len(shape) else 1
    return max(math.prod(shape) // max(units, 1), 1)
