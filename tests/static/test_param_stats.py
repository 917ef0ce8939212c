"""Block-wise `param_stats` agrees with a float64 numpy reference on every kind of tensor it meets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradaudit.graph import ParamStats
from gradaudit.weight_stats import BLOCK_ELEMENTS, block_param_stats, param_stats, rows_per_block


def _reference(tensor: torch.Tensor, axis: int) -> dict[str, float]:
    """The statistics in float64 numpy, over the finite values; row sums only for a finite matrix."""
    values = tensor.double().numpy()
    finite = values[np.isfinite(values)]
    mean, mean_sq = finite.mean(), (finite**2).mean()
    want = {"mean": mean, "std": math.sqrt(max(mean_sq - mean**2, 0.0)), "rms": math.sqrt(mean_sq),
            "absmax": np.abs(finite).max(), "nonfinite": values.size - finite.size, "row_sum_sq": 0.0}
    if values.ndim >= 2 and finite.size == values.size:
        rows = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
        want["row_sum_sq"] = (rows.sum(axis=1) ** 2).mean()
    return want


def _assert_matches(tensor: torch.Tensor, axis: int = 0, got: ParamStats | None = None) -> None:
    got, want = got or param_stats("w", tensor, axis), _reference(tensor, axis)
    assert got.shape == tuple(tensor.shape) and got.numel == tensor.numel()
    assert got.nonfinite == want["nonfinite"]
    assert got.absmax == want["absmax"]
    assert abs(got.mean - want["mean"]) <= 1e-6 * want["rms"]
    for field in ("std", "rms"):
        assert getattr(got, field) == pytest.approx(want[field], rel=1e-6, abs=1e-12), field
    assert got.row_sum_sq == pytest.approx(want["row_sum_sq"], rel=1e-5, abs=1e-12)


def _random(shape: tuple[int, ...], seed: int = 1, mean: float = 0.1, std: float = 0.3) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * std + mean


@pytest.mark.parametrize(
    ("shape", "axis"),
    [((3000, 200), 0), ((200, 3000), 1), ((768, 2304), 1), ((3072, 768), 1), ((64, 3, 40, 40), 0),
     ((64, 3, 40, 40), 1), ((5, 30, 700), 2), ((5, 30, 700), -1), ((1, 300000), 0), ((7,), 0), ((), 0)],
)
def test_random_tensors_match_the_reference(shape, axis) -> None:
    _assert_matches(_random(shape), axis)


def test_the_larger_tensors_really_span_several_blocks() -> None:
    assert 3000 * 200 > 2 * BLOCK_ELEMENTS and rows_per_block(768) * 768 <= BLOCK_ELEMENTS


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int32])
@pytest.mark.parametrize("axis", [0, 1])
def test_other_dtypes_are_taken_at_their_float32_or_float64_value(dtype, axis) -> None:
    tensor = (_random((700, 900), seed=2) * (10 if dtype == torch.int32 else 1)).to(dtype)
    _assert_matches(tensor, axis)


@pytest.mark.parametrize("axis", [0, 1])
def test_a_mean_far_above_the_spread_keeps_the_std(axis) -> None:
    """A norm scale near 1: a sum of squares minus mean^2 in float32 would leave no digit of std."""
    _assert_matches(_random((2000, 300), seed=3, mean=1.0, std=1e-3), axis)
    _assert_matches(_random((4096,), seed=3, mean=1.0, std=1e-3))


@pytest.mark.parametrize(("shape", "axis"), [((16, 16), 0), ((3000, 200), 0), ((768, 2304), 1)])
def test_a_constant_tensor_has_exactly_its_value_as_mean_and_no_spread(shape, axis) -> None:
    """GA203 tells a constant weight from identical rows by std == 0."""
    stats = param_stats("w", torch.full(shape, 0.01), axis)
    assert (stats.std == 0.0 and stats.mean == stats.absmax == float(torch.tensor(0.01))
            and stats.rows_identical)  # exact: a constant tensor


def test_a_big_matrix_matches_the_reference() -> None:
    tensor = _random((2048, 4096), seed=4, mean=0.01, std=0.02)
    _assert_matches(tensor, 0)
    _assert_matches(tensor, 1)


@pytest.mark.parametrize("axis", [0, 1])
def test_nonfinite_values_are_counted_and_left_out(axis) -> None:
    tensor = _random((3000, 200), seed=5)
    tensor[2500, 3], tensor[10, 10], tensor[1500, 7] = float("nan"), float("inf"), -float("inf")
    _assert_matches(tensor, axis)
    stats = param_stats("w", tensor, axis)
    assert stats.nonfinite == 3 and stats.row_sum_sq == 0.0 and not stats.rows_identical  # exact: no finite entry


def test_a_tensor_without_finite_values_has_nan_statistics() -> None:
    stats = param_stats("w", torch.full((600, 500), float("nan")))
    assert stats.nonfinite == 600 * 500
    assert all(math.isnan(getattr(stats, f)) for f in ("mean", "std", "rms", "absmax", "row_sum_sq"))


def test_a_float32_overflow_is_taken_again_in_float64() -> None:
    stats = param_stats("w", torch.full((4, 3), 3e38))
    assert stats.nonfinite == 0 and stats.rms == pytest.approx(3e38, rel=1e-6)
    assert stats.row_sum_sq == pytest.approx((9e38) ** 2, rel=1e-6) and stats.rows_identical


@pytest.mark.parametrize(("shape", "axis"), [((3000, 200), 0), ((200, 3000), 1), ((768, 2304), 1)])
def test_identical_rows_across_blocks_and_one_differing_value_in_the_last(shape, axis) -> None:
    same = torch.full(shape, 0.1)
    assert param_stats("w", same, axis).rows_identical
    last = [slice(None)] * 2
    last[axis] = -1
    same[tuple(last)][-1] = 0.25
    assert not param_stats("w", same, axis).rows_identical
    _assert_matches(same, axis)


def test_rows_within_float_noise_of_each_other_count_as_identical() -> None:
    rows = torch.full((3000, 200), 0.5, dtype=torch.float64)
    rows[2999, 5] += 1e-14
    assert param_stats("w", rows).rows_identical
    rows[2999, 5] += 1e-9
    assert not param_stats("w", rows).rows_identical


def test_rows_with_equal_sums_or_first_values_are_not_identical() -> None:
    base = _random((200,), seed=6)
    shifted = torch.stack([torch.roll(base, i) for i in range(3000)])  # every row sums the same
    assert not param_stats("w", shifted).rows_identical
    _assert_matches(shifted)
    shifted[:, 0] = 0.3  # the first value of every unit equal too
    assert not param_stats("w", shifted).rows_identical
    assert not param_stats("w", shifted.T.contiguous(), 1).rows_identical


def test_empty_tensors() -> None:
    for shape in [(0,), (0, 5), (3, 0, 2)]:
        stats = param_stats("w", torch.empty(shape), 1 if len(shape) > 1 else 0)
        assert (stats.numel == 0 and stats.mean == stats.rms == stats.row_sum_sq == 0.0
                and not stats.rows_identical)  # exact: an empty tensor


def test_views_and_read_only_memory_are_read_without_writing(tmp_path) -> None:
    values = np.random.default_rng(7).standard_normal((1200, 900)).astype(np.float32)
    path = tmp_path / "w.bin"
    values.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=values.shape)
    want = param_stats("w", torch.from_numpy(values.copy()), 1)
    with pytest.warns(UserWarning, match="not writable"):
        assert param_stats("w", mapped, 1) == want
    source = torch.from_numpy(values.copy())
    before = source.clone()
    _assert_matches(source.T, 0)  # a transposed view, read along its strided axis 0
    _assert_matches(source[::2, 100:700], 1)
    assert torch.equal(source, before)  # exact: the source must not be written
    permuted = _random((40, 40, 3, 64), seed=9).permute(3, 2, 0, 1)  # blocks follow memory, not out_axis
    _assert_matches(permuted, 0)
    _assert_matches(permuted, 1)
    same = torch.full((200, 3000), 0.1).T
    assert param_stats("w", same).rows_identical
    same[2999, 0] = 0.2
    assert not param_stats("w", same).rows_identical


def test_streamed_blocks_of_any_size_merge_to_the_whole() -> None:
    tensor = _random((3000, 200), seed=8)
    cuts = [0, 1, 700, 701, 2200, 3000]
    blocks = (tensor[a:b] for a, b in zip(cuts, cuts[1:]))
    _assert_matches(tensor, got=block_param_stats("w", (3000, 200), blocks))
    same = torch.full((3000, 200), 0.1)
    assert block_param_stats("w", (3000, 200), (same[a:b] for a, b in zip(cuts, cuts[1:]))).rows_identical


def test_constant_moments_leave_attention_mask_entries_out():
    import torch

    from gradaudit.weight_stats import constant_moments

    for hidden in (float("-inf"), -1e4, -1e9, torch.finfo(torch.float32).min):
        moments = constant_moments(torch.tensor([[0.0, hidden], [3.0, 4.0]]))
        assert moments == {"mean": pytest.approx(7 / 3), "rms": pytest.approx((25 / 3) ** 0.5), "masked": 0.25}
    assert constant_moments(-9999.0) == {"mean": -9999.0, "rms": 9999.0}  # above the mask line
    assert math.isnan(constant_moments(torch.tensor([1.0, float("nan")]))["mean"])  # NaN is broken, not hidden
