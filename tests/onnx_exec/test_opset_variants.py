"""Single-node graphs across opsets (attribute vs input forms, pad modes, legacy ops) vs onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradaudit.onnx_exec import onnx_to_torch


def _graph(node, opset: int, x_shape: tuple[int, ...], consts: dict[str, np.ndarray], n_out: int = 1):
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in node.output[:n_out]]
    graph = helper.make_graph([node], "g", [x], outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


CASES = {
    "split_attr_op11": (helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[1, 3]), 11, (2, 4), {}, 2),
    "split_input_op13": (helper.make_node("Split", ["x", "s"], ["a", "b"], axis=1), 13, (2, 4), {"s": _i64(3, 1)}, 2),
    "split_num_outputs_op18": (helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2), 18, (2, 5), {}, 2),
    "squeeze_attr_op11": (helper.make_node("Squeeze", ["x"], ["y"], axes=[1]), 11, (2, 1, 3), {}, 1),
    "squeeze_input_op13": (helper.make_node("Squeeze", ["x", "ax"], ["y"]), 13, (2, 1, 3), {"ax": _i64(-2)}, 1),
    "unsqueeze_attr_op11": (helper.make_node("Unsqueeze", ["x"], ["y"], axes=[0, -1]), 11, (2, 3), {}, 1),
    "unsqueeze_input_op13": (helper.make_node("Unsqueeze", ["x", "ax"], ["y"]), 13, (2, 3), {"ax": _i64(1)}, 1),
    "reduce_mean_attr_op13": (helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1], keepdims=0), 13, (2, 3, 4), {},
                              1),
    "reduce_mean_input_op18": (helper.make_node("ReduceMean", ["x", "ax"], ["y"]), 18, (2, 3, 4), {"ax": _i64(1)}, 1),
    "reduce_sum_input_op13": (helper.make_node("ReduceSum", ["x", "ax"], ["y"], keepdims=0), 13, (2, 3, 4),
                              {"ax": _i64(0, 2)}, 1),
    "pad_attr_op9": (helper.make_node("Pad", ["x"], ["y"], pads=[0, 0, 1, 2, 0, 0, 2, 1], value=0.5), 9, (1, 2, 3, 3),
                     {}, 1),
    "pad_reflect_op13": (helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect"), 13, (1, 2, 4, 4),
                         {"p": _i64(0, 0, 1, 2, 0, 0, 2, 1)}, 1),
    "pad_edge_op13": (helper.make_node("Pad", ["x", "p"], ["y"], mode="edge"), 13, (1, 2, 4, 4),
                      {"p": _i64(0, 0, 1, 0, 0, 0, 0, 2)}, 1),
    "upsample_op9": (helper.make_node("Upsample", ["x", "s"], ["y"], mode="nearest"), 9, (1, 2, 3, 3),
                     {"s": np.array([1, 1, 2, 2], np.float32)}, 1),
    "resize_nearest_op13": (
        helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest", coordinate_transformation_mode="asymmetric",
                         nearest_mode="floor"),
        13, (1, 2, 3, 3), {"s": np.array([1, 1, 2, 2], np.float32)}, 1,
    ),  # fmt: skip
    "resize_linear_op13": (
        helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear",
                         coordinate_transformation_mode="pytorch_half_pixel"),
        13, (1, 2, 3, 3), {"s": np.array([1, 1, 2, 2], np.float32)}, 1,
    ),  # fmt: skip
    "maxpool_asymmetric_ceil": (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                                 pads=[0, 0, 1, 1], ceil_mode=1), 12, (1, 2, 8, 8), {}, 1),
    "maxpool_same_upper": (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                                            auto_pad="SAME_UPPER"), 11, (1, 2, 5, 5), {}, 1),
    "avgpool_exclude_pad": (helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 11,
                            (1, 2, 5, 5), {}, 1),
    "avgpool_include_pad": (helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 0, 1, 2],
                                             count_include_pad=1), 11, (1, 2, 5, 5), {}, 1),
    "slice_attr_op9": (helper.make_node("Slice", ["x"], ["y"], starts=[1], ends=[100], axes=[1]), 9, (2, 5), {}, 1),
    "slice_negative_step_op13": (
        helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"]), 13, (2, 6),
        {"st": _i64(-1), "en": _i64(-100), "ax": _i64(1), "sp": _i64(-2)}, 1,
    ),  # fmt: skip
    "softmax_flattening_op11": (helper.make_node("Softmax", ["x"], ["y"], axis=1), 11, (2, 3, 4), {}, 1),
    "softmax_axis_op13": (helper.make_node("Softmax", ["x"], ["y"], axis=1), 13, (2, 3, 4), {}, 1),
    "clip_attr_op9": (helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.5), 9, (3, 4), {}, 1),
    "clip_input_op13": (helper.make_node("Clip", ["x", "lo", "hi"], ["y"]), 13, (3, 4),
                        {"lo": np.array(-0.2, np.float32), "hi": np.array(0.3, np.float32)}, 1),
    "conv_same_lower": (
        helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[2, 2], auto_pad="SAME_LOWER"), 13, (1, 2, 5, 5),
        {"w": np.random.default_rng(0).standard_normal((3, 2, 2, 2)).astype(np.float32)}, 1,
    ),  # fmt: skip
    "conv_transpose_strided": (
        helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
        13, (1, 2, 4, 4),
        {"w": np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32)}, 1,
    ),  # fmt: skip
    "instance_norm": (
        helper.make_node("InstanceNormalization", ["x", "g", "b"], ["y"]), 13, (2, 3, 4),
        {"g": np.array([1.0, 2.0, 0.5], np.float32), "b": np.array([0.0, 1.0, -1.0], np.float32)}, 1,
    ),  # fmt: skip
    "lrn": (helper.make_node("LRN", ["x"], ["y"], size=3, alpha=0.01, beta=0.75, bias=1.0), 13, (1, 5, 3, 3), {}, 1),
    "einsum": (
        helper.make_node("Einsum", ["x", "w"], ["y"], equation="bij,jk->bik"), 13, (2, 3, 4),
        {"w": np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)}, 1,
    ),  # fmt: skip
    "trilu_lower": (helper.make_node("Trilu", ["x", "k"], ["y"], upper=0), 14, (3, 4), {"k": np.array(1, np.int64)}, 1),
}


def assert_matches_onnxruntime(model, shape: tuple[int, ...]) -> None:
    """The executor's outputs equal onnxruntime's on a seeded N(0, 1) input `x` of `shape`."""
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = onnx_to_torch(model, train_mode=False)(torch.from_numpy(x))
    got = got if isinstance(got, tuple) else (got,)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.detach().numpy(), e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_node_matches_onnxruntime(case: str) -> None:
    node, opset, shape, consts, n_out = CASES[case]
    assert_matches_onnxruntime(_graph(node, opset, shape, consts, n_out), shape)
