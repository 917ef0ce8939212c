"""Single-node graphs of the wider operator set vs onnxruntime: resampling variants across
opsets, pixel shuffles, scatter / gather families, top-k, reductions and normalisations."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from .test_opset_variants import _graph, _i64, assert_matches_onnxruntime

W = np.random.default_rng(0)


def _f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def _resize(opset: int, inputs: list[str], consts: dict, shape=(1, 2, 4, 4), **attrs):
    return (helper.make_node("Resize", ["x"] + inputs, ["y"], **attrs), opset, shape, consts, 1)


CASES = {
    "resize_scales_op10": _resize(10, ["s"], {"s": _f32(1, 1, 2, 2)}, mode="nearest"),
    "resize_sizes_op11": _resize(
        11, ["roi", "sc", "sz"], {"roi": _f32(), "sc": _f32(), "sz": _i64(1, 2, 7, 6)}, mode="linear"
    ),
    "resize_cubic_op13": _resize(13, ["", "s"], {"s": _f32(1, 1, 2, 1.5)}, mode="cubic"),
    "resize_linear_down_op13": _resize(13, ["", "s"], {"s": _f32(1, 1, 0.5, 0.5)}, (1, 2, 8, 8), mode="linear"),
    "resize_cubic_exclude_outside_op19": _resize(
        19, ["", "s"], {"s": _f32(1, 1, 2, 0.6)}, mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5
    ),
    "upsample_linear_op9": (
        helper.make_node("Upsample", ["x", "s"], ["y"], mode="linear"),
        9,
        (1, 2, 4, 5),
        {"s": _f32(1, 1, 3, 2.5)},
        1,
    ),
    "resize_channel_axis_op13": _resize(13, ["", "s"], {"s": _f32(1, 2, 1, 1)}, mode="linear"),
    "depth_to_space_dcr": (helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2), 13, (1, 8, 2, 3), {}, 1),
    "depth_to_space_crd": (
        helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD"),
        13,
        (1, 8, 2, 3),
        {},
        1,
    ),
    "space_to_depth": (helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2), 13, (1, 2, 4, 6), {}, 1),
    "scatter_elements_add": (
        helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=1, reduction="add"),
        16,
        (2, 5),
        {"i": _i64(0, 0, -1, 2, 2, 1).reshape(2, 3), "u": W.standard_normal((2, 3)).astype(np.float32)},
        1,
    ),  # fmt: skip
    "scatter_nd": (
        helper.make_node("ScatterND", ["x", "i", "u"], ["y"]),
        13,
        (4, 3),
        {"i": _i64(1, 3).reshape(2, 1), "u": W.standard_normal((2, 3)).astype(np.float32)},
        1,
    ),  # fmt: skip
    "scatter_nd_mul": (
        helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction="mul"),
        16,
        (4, 3),
        {"i": _i64(1, 1).reshape(2, 1), "u": W.standard_normal((2, 3)).astype(np.float32)},
        1,
    ),  # fmt: skip
    "gather_nd_batch": (
        helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=1),
        13,
        (2, 3, 4),
        {"i": _i64(0, 2, 1, 1).reshape(2, 2, 1)},
        1,
    ),
    "top_k": (helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1), 11, (3, 6), {"k": _i64(2)}, 1),
    "one_hot_axis0": (
        helper.make_node("OneHot", ["i", "d", "x"], ["y"], axis=0),
        11,
        (2,),
        {"i": _i64(0, 2, -1), "d": np.array(4, np.float32)},
        1,
    ),  # fmt: skip
    "compress": (
        helper.make_node("Compress", ["x", "c"], ["y"], axis=1),
        11,
        (2, 4),
        {"c": np.array([1, 0, 1, 1], bool)},
        1,
    ),
    "reduce_log_sum_exp_op18": (
        helper.make_node("ReduceLogSumExp", ["x", "a"], ["y"]),
        18,
        (2, 3, 4),
        {"a": _i64(1)},
        1,
    ),
    "reduce_l1_op13": (helper.make_node("ReduceL1", ["x"], ["y"], axes=[2], keepdims=0), 13, (2, 3, 4), {}, 1),
    "mean_variance_normalization": (
        helper.make_node("MeanVarianceNormalization", ["x"], ["y"]),
        13,
        (2, 3, 4, 4),
        {},
        1,
    ),
    "lp_normalization": (helper.make_node("LpNormalization", ["x"], ["y"], axis=1, p=1), 13, (3, 4), {}, 1),
    "hardmax_op11": (helper.make_node("Hardmax", ["x"], ["y"], axis=1), 11, (2, 3, 4), {}, 1),
    "hardmax_op13": (helper.make_node("Hardmax", ["x"], ["y"], axis=1), 13, (2, 3, 4), {}, 1),
    "lp_pool": (
        helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], p=2),
        18,
        (1, 2, 4, 4),
        {},
        1,
    ),
    "global_lp_pool": (helper.make_node("GlobalLpPool", ["x"], ["y"], p=3), 13, (1, 2, 3, 3), {}, 1),
    "gelu_tanh_op20": (helper.make_node("Gelu", ["x"], ["y"], approximate="tanh"), 20, (3, 4), {}, 1),
    "atan": (helper.make_node("Atan", ["x"], ["y"]), 13, (3, 4), {}, 1),
    "eye_like": (helper.make_node("EyeLike", ["x"], ["y"], k=1), 13, (3, 4), {}, 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_node_matches_onnxruntime(case: str) -> None:
    node, opset, shape, consts, n_out = CASES[case]
    assert_matches_onnxruntime(_graph(node, opset, shape, consts, n_out), shape)


COORDINATES = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]


@pytest.mark.parametrize("coordinate", COORDINATES)
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_every_mode_and_coordinate_transformation(mode: str, coordinate: str) -> None:
    """Up and down, at scales whose sizes round (ONNX samples at the given scale). align_corners
    divides by the unrounded length n * scale in onnx's reference and spec, by the rounded one in
    onnxruntime: the executor follows the spec (the node cases, tests/conformance), so here it
    meets onnxruntime at scales whose lengths are whole."""
    upscale = 1.6 if coordinate == "align_corners" else 1.5
    for scales in ([1, 1, 2, upscale], [1, 1, 0.5, 0.6]):
        node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode=mode, coordinate_transformation_mode=coordinate)
        assert_matches_onnxruntime(_graph(node, 19, (1, 2, 6, 5), {"s": np.array(scales, np.float32)}), (1, 2, 6, 5))


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
def test_resize_axes_and_aspect_ratio_policy_op18(policy: str) -> None:
    node = helper.make_node(
        "Resize", ["x", "", "", "sz"], ["y"], mode="linear", axes=[3, 2], keep_aspect_ratio_policy=policy
    )
    assert_matches_onnxruntime(_graph(node, 18, (1, 2, 4, 6), {"sz": _i64(9, 7)}), (1, 2, 4, 6))
