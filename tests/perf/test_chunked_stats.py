"""Block-wise parameter statistics equal the one-shot ones."""

from __future__ import annotations

import math

import pytest
import torch

from gradaudit.graph import param_stats
from gradaudit.loaders.chunked_stats import BLOCK_ELEMENTS, chunked_param_stats


def _assert_same(a, b) -> None:
    assert a.shape == b.shape and a.numel == b.numel and a.nonfinite == b.nonfinite
    assert a.rows_identical == b.rows_identical
    for field in ("mean", "std", "rms", "absmax", "row_sum_sq"):
        x, y = getattr(a, field), getattr(b, field)
        assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-9, abs=1e-12), field


@pytest.mark.parametrize(("shape", "axis"), [((3000, 200), 0), ((200, 3000), 1), ((64, 3, 40, 40), 0), ((7,), 0)])
def test_random_tensors(shape, axis) -> None:
    tensor = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 0.3 + 0.1
    _assert_same(chunked_param_stats("w", tensor, axis), param_stats("w", tensor, axis))


def test_blocks_really_split_the_tensor() -> None:
    assert 3000 * 200 > 2 * BLOCK_ELEMENTS


def test_identical_rows_across_blocks_and_a_differing_last_block() -> None:
    same = torch.full((3000, 200), 0.5)
    assert chunked_param_stats("w", same).rows_identical
    same[-1, 0] = 0.25
    _assert_same(chunked_param_stats("w", same), param_stats("w", same))
    assert not chunked_param_stats("w", same).rows_identical


def test_nonfinite_values() -> None:
    tensor = torch.randn(3000, 200)
    tensor[2500, 3] = float("nan")
    tensor[10, 10] = float("inf")
    _assert_same(chunked_param_stats("w", tensor), param_stats("w", tensor))
