"""Statistics of a weight tensor (ParamStats), taken once by a loader from the real weights.

Read block by block: full-size temporaries and one memory pass per statistic made this most of a
large model's load time (benchmarks/param_stats_speed.py).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Iterable

from gradaudit.graph import ParamStats

# ~1 MiB of float32: a block and the block-sized temporaries of its statistics stay in a core's
# cache, so of the few reductions over a block only the first reads memory.
BLOCK_ELEMENTS = 1 << 18


def rows_per_block(row_elements: int) -> int:
    """Slices of `row_elements` each that make one block of about BLOCK_ELEMENTS (at least one)."""
    return max(BLOCK_ELEMENTS // max(row_elements, 1), 1)


def param_stats(name: str, tensor: Any, out_axis: int = 0) -> ParamStats:
    """Take the statistics of a weight tensor (torch tensor or numpy array).

    `out_axis` is the axis of output units (0 for torch Linear/Conv weights, 1 for an ONNX
    Gemm weight without transB or a MatMul weight of shape (in, out)). The tensor is read in
    blocks along its outermost axis in memory, whatever `out_axis` is (`block_param_stats`):
    full-size temporaries and one memory pass per statistic made this most of a large model's
    load time.
    """
    import torch

    t = tensor.detach() if isinstance(tensor, torch.Tensor) else torch.as_tensor(tensor)
    shape = tuple(int(d) for d in t.shape)
    first_unit = torch.movedim(t, out_axis, 0)[0] if t.dim() >= 2 and t.numel() else None
    if t.dim() < 2:
        t = t.reshape(-1)
    else:  # the axis of largest stride first, so that a transposed view is read in memory order too
        outer = max(range(t.dim()), key=lambda d: (t.shape[d] > 1, t.stride(d)))
        out_axis %= t.dim()
        out_axis = 0 if out_axis == outer else out_axis + (out_axis < outer)
        t = torch.movedim(t, outer, 0)
    step = rows_per_block(math.prod(t.shape[1:]))
    slices = (t[i : i + step] for i in range(0, t.shape[0], step))
    return replace(block_param_stats(name, tuple(t.shape), slices, out_axis, first_unit), shape=shape)


def block_param_stats(
    name: str, shape: tuple[int, ...], blocks: Iterable[Any], out_axis: int = 0, first_unit: Any = None
) -> ParamStats:
    """ParamStats of a tensor of `shape` given as consecutive torch slices along its axis 0, of
    any dtype (a tensor read piecewise from disk, say). Every statistic merges exactly.

    `first_unit`, the values of output unit 0, sets the scale of the `rows_identical` check; it may
    be left out when `out_axis` is 0, where it is the first block's first row.
    """
    if math.prod(shape) == 0:
        return ParamStats(name, shape, 0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, False)
    if first_unit is None and len(shape) >= 2 and out_axis % len(shape):
        raise ValueError("block_param_stats needs first_unit when out_axis is not 0")
    running = _RunningStats(shape, out_axis, first_unit)
    for block in blocks:
        running.add(block)
    return running.result(name)


class _RunningStats:
    """Count, mean, squared deviations, extremes and per-unit sums of a tensor fed block by block
    (`block_param_stats`), merged exactly (the deviations by Chan et al.'s pairwise update).

    A block is viewed as (positions, units, inner): with out_axis 0 it holds a run of whole output
    units (rows); otherwise a part of every unit. A block costs a few reductions in its own float
    type, all but the first from cache; only a block holding a non-finite value (or overflowing)
    is taken again in float64 without those values, so `nonfinite` and the finite-only moments
    stay exact.
    """

    def __init__(self, shape: tuple[int, ...], out_axis: int, first_unit: Any) -> None:
        import torch

        self.shape = shape
        self.has_rows = len(shape) >= 2  # row statistics describe weight matrices and kernels only
        self.out_axis = out_axis % len(shape) if self.has_rows else 0
        self.units = shape[self.out_axis] if self.has_rows else 1
        self.inner = math.prod(shape[self.out_axis + 1 :])
        self.unit_sums = torch.zeros(self.units, dtype=torch.float64)
        self.next_unit = 0  # with out_axis 0, the unit the next block starts at
        self.finite = self.nonfinite = 0
        self.mean = self.deviations = self.absmax = 0.0  # deviations: sum of squares about the mean
        self.maybe_identical = self.has_rows and self.units > 1
        self.reference: Any = None  # unit 0 as (1, 1, inner), what out_axis-0 blocks are compared with
        self.spread = 0.0  # largest |unit - unit 0| seen
        self.spread_bound: float | None = None
        if self.maybe_identical and first_unit is not None:
            self._take_first_unit(first_unit)

    def _take_first_unit(self, unit: Any) -> None:
        """Reference and scale of the identity check. Were the units identical, every value would be
        within the spread (<= 1e-12 absmax) of unit 0's, so absmax <= (1 + 1e-12) * unit 0's absmax:
        a spread above twice 1e-12 of that rules identity out before absmax is known."""
        unit = _as_float(unit)
        scale = float(unit.abs().amax())
        self.reference = unit.reshape(1, 1, -1).clone()  # a streamed first block is let go
        self.spread_bound = 2e-12 * max(scale, 1e-30)
        self.maybe_identical = math.isfinite(scale)

    def _units_view(self, block: Any) -> Any:
        if not self.has_rows:
            return _as_float(block.reshape(1, 1, -1))
        if self.out_axis == 0:
            return _as_float(block.reshape(1, -1, self.inner))
        return _as_float(block.reshape(-1, self.units, self.inner))

    def add(self, block: Any) -> None:
        import torch

        values = self._units_view(block)
        if self.maybe_identical and self.spread_bound is None:
            self._take_first_unit(values[0, 0])
        first_unit = self.next_unit if self.out_axis == 0 else 0
        self.next_unit += values.shape[1]
        count = values.numel()
        sums, mean, deviations, absmax = _block_moments(values)
        if not (math.isfinite(mean) and math.isfinite(deviations) and math.isfinite(absmax)):
            finite = torch.isfinite(values)
            count = int(finite.sum())
            self.nonfinite += values.numel() - count
            if not count:
                return
            kept = values if count == values.numel() else values[finite].reshape(1, 1, -1)
            sums, mean, deviations, absmax = _block_moments(kept.double())
        if not self.nonfinite:
            self.unit_sums[first_unit : first_unit + len(sums)] += sums
        self._merge(count, mean, deviations, absmax)
        if self.maybe_identical and not self.nonfinite:
            self._compare_units(values)

    def _merge(self, count: int, mean: float, deviations: float, absmax: float) -> None:
        total = self.finite + count
        delta = mean - self.mean
        self.mean += delta * (count / total)  # a first block's mean stays exact
        self.deviations += deviations + delta * delta * self.finite * count / total
        self.finite = total
        self.absmax = max(self.absmax, absmax)

    def _compare_units(self, values: Any) -> None:
        """Track the spread of the units around unit 0. The first value of each unit, a cheap
        gather, rules identity out for all but (nearly) identical units."""
        bound = self.spread_bound
        assert bound is not None, "`add` takes unit 0 before any comparison"
        reference = self.reference if self.out_axis == 0 else values[:, :1]
        spread = float((values[:1, :, :1] - reference[:1, :, :1]).abs().amax())
        if spread <= bound:
            spread = float((values - reference).abs().amax())
        self.spread = max(self.spread, spread)
        self.maybe_identical = self.spread <= bound

    def result(self, name: str) -> ParamStats:
        numel = math.prod(self.shape)
        if not self.finite:
            nan = math.nan
            return ParamStats(name, self.shape, numel, nan, nan, nan, nan, self.nonfinite, nan, False)
        variance = max(self.deviations, 0.0) / self.finite
        rows = self.has_rows and not self.nonfinite
        row_sum_sq = float((self.unit_sums**2).mean()) if rows else 0.0
        identical = rows and self.maybe_identical and self.spread <= 1e-12 * max(self.absmax, 1e-30)
        return ParamStats(name, self.shape, numel, self.mean, math.sqrt(variance), math.sqrt(variance + self.mean**2),
                          self.absmax, self.nonfinite, row_sum_sq, identical)


def _as_float(values: Any) -> Any:
    """Values in a float type the reductions take: half precision and integers become float32."""
    import torch

    keep = values.is_floating_point() and values.dtype not in (torch.float16, torch.bfloat16)
    return values if keep else values.float()


def _block_moments(values: Any) -> tuple[Any, float, float, float]:
    """Per-unit sums, mean, sum of squared deviations from the mean and absolute maximum of a
    (positions, units, inner) block. Squares are summed about the block's own mean: a plain sum of
    squares minus count * mean^2 loses std's digits when |mean| >> std (a norm scale near 1). Sums
    are torch's cascaded ones: float32 `dot` and `vector_norm` lose 1e-4 on a constant block."""
    import torch

    sums = values.sum(dim=(0, 2))
    total = sums.sum(dtype=torch.float64)
    low, high = (float(v) for v in torch.aminmax(values))
    mean = float(total) / values.numel()
    if low == high and math.isfinite(mean):  # exact, where the rounded sums leave a std of 1e-9
        return sums, low, 0.0, abs(low)
    shift = (total / values.numel()).to(values.dtype)
    deviations = float((values - shift).square_().sum()) - values.numel() * (mean - float(shift)) ** 2
    return sums, mean, deviations, max(-low, high)


# Additive attention masks hold -inf, -1e9, finfo.min or (BERT) -1e4 where a position is hidden:
# after the softmax they feed, such an entry is an exact zero, not a signal of that size.
MASK_BELOW = -1e4


def constant_moments(value: Any) -> dict[str, float]:
    """Mean and RMS of a constant operand (tensor or number) as a LayerGraph `constant` node's
    attrs, mask entries (<= MASK_BELOW, -inf included) left out; `masked`, their fraction, is
    there when there are any."""
    import torch

    flat = torch.as_tensor(value).detach().double().reshape(-1)
    mask = flat <= MASK_BELOW
    if not bool(mask.any()):
        return {"mean": float(flat.mean()), "rms": float(flat.pow(2).mean().sqrt())}
    kept = flat[~mask]
    moments = ({"mean": float(kept.mean()), "rms": float(kept.pow(2).mean().sqrt())} if kept.numel()
               else {"mean": 0.0, "rms": 0.0})
    return {**moments, "masked": float(mask.double().mean())}
