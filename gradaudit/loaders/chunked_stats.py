"""Parameter statistics of one tensor taken block by block, so big tensors never need big temporaries.

`gradaudit.graph.param_stats` makes several full-size temporaries (a float64 copy for the norm,
`rows - rows[0]` for the symmetry check). On a 4096x11008 weight that is ~1 GB of scratch and,
because nothing fits in cache, 3x slower than the same work on cache-sized blocks. Here the
tensor is cut along its output axis into blocks of about BLOCK_ELEMENTS, `param_stats` runs on
each block, and the block results are merged exactly (means weighted by size, maxima by max,
row sums by rows). The same merge serves tensors read piecewise from disk (ONNX external data).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

import torch

from gradaudit.graph import ParamStats, param_stats

# ~1 MiB of float32: a block and param_stats' float64 temporaries stay in a core's cache.
BLOCK_ELEMENTS = 1 << 18


def rows_per_block(row_elements: int) -> int:
    """Rows of `row_elements` each that make one block of about BLOCK_ELEMENTS (at least one)."""
    return max(BLOCK_ELEMENTS // max(row_elements, 1), 1)


def merge_blocks(name: str, shape: tuple[int, ...], blocks: Iterable[tuple[ParamStats, Any]]) -> ParamStats:
    """Exact ParamStats of a tensor from (stats, first row) of consecutive blocks along its output axis.

    A block's first row (a flat tensor) lets `rows_identical` hold across blocks, not only inside each.
    """
    numel = math.prod(shape)
    total = mean_sum = square_sum = row_square_sum = 0.0
    rows = nonfinite = 0
    absmax = 0.0
    identical, reference = True, None
    for stats, first_row in blocks:
        nonfinite += stats.nonfinite
        finite = stats.numel - stats.nonfinite
        if finite and math.isfinite(stats.mean):
            total += finite
            mean_sum += stats.mean * finite
            square_sum += stats.rms**2 * finite
            absmax = max(absmax, stats.absmax)
        block_rows = stats.shape[0] if stats.shape else 1
        rows += block_rows
        row_square_sum += stats.row_sum_sq * block_rows
        reference = first_row if reference is None else reference
        identical = identical and (block_rows == 1 or stats.rows_identical) and bool(torch.equal(first_row, reference))
    if numel == 0:
        return ParamStats(name, shape, 0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, False)
    if total == 0:
        return ParamStats(name, shape, numel, math.nan, math.nan, math.nan, math.nan, nonfinite, math.nan, False)
    mean, mean_sq = mean_sum / total, square_sum / total
    multi_row = len(shape) >= 2 and not nonfinite
    return ParamStats(name, shape, numel, mean, math.sqrt(max(mean_sq - mean * mean, 0.0)), math.sqrt(mean_sq),
                      absmax, nonfinite, row_square_sum / rows if multi_row else 0.0, multi_row and rows > 1 and identical)


def chunked_param_stats(name: str, tensor: torch.Tensor, out_axis: int = 0) -> ParamStats:
    """`param_stats` of a tensor of any size with temporaries of one block (see module doc)."""
    if tensor.dim() < 2 or tensor.numel() <= BLOCK_ELEMENTS:
        return param_stats(name, tensor, out_axis)
    rows = torch.movedim(tensor.detach(), out_axis, 0)
    step = rows_per_block(rows[0].numel())
    blocks = ((param_stats(name, rows[i : i + step]), rows[i].reshape(-1)) for i in range(0, rows.shape[0], step))
    return dataclasses.replace(merge_blocks(name, tuple(rows.shape), blocks), shape=tuple(int(d) for d in tensor.shape))
