"""The operator groups added for issue 14 (integer/random, quantisation, loss, vision, signal)
against onnx's ReferenceEvaluator, and what the audit makes of them: fake-quant gradients, a QDQ
model's LayerGraph, seeded random draws, non-differentiable tails."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from gradaudit.loaders.onnx_loader import load_onnx
from gradaudit.loss import default_loss
from gradaudit.onnx_exec import onnx_to_torch
from gradaudit.probe.objective import objective_for
from gradaudit.static import estimate

RNG = np.random.default_rng(11)


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _model(
    nodes, inputs: dict[str, np.ndarray], consts: dict[str, np.ndarray], outputs: list[str], opset: int
) -> onnx.ModelProto:
    info = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in inputs.items()
    ]
    outs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs]
    graph = helper.make_graph(nodes, "g", info, outs, [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def assert_matches_reference(
    node, inputs: dict[str, np.ndarray], consts: dict[str, np.ndarray] | None = None, opset: int = 21, n_out: int = 1
) -> None:
    model = _model([node], inputs, consts or {}, list(node.output[:n_out]), opset)
    expected = ReferenceEvaluator(model).run(None, inputs)
    with torch.no_grad():
        got = onnx_to_torch(model, train_mode=False)(*(torch.from_numpy(v) for v in inputs.values()))
    got = got if isinstance(got, tuple) else (got,)
    for index in range(n_out):
        actual = got[index].numpy()
        assert actual.shape == expected[index].shape, f"output {index}"
        np.testing.assert_allclose(
            actual.astype(np.float64),
            expected[index].astype(np.float64),
            rtol=1e-4,
            atol=1e-5,
            err_msg=f"output {index}",
        )


def _node(op: str, inputs: list[str], outputs: list[str], **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


U32 = np.array([[1, 2**31 + 5, 7], [2**32 - 1, 0, 12]], dtype=np.uint32)
# name: (node, graph inputs, initializers, opset, outputs compared)
CASES = {
    "bitwise_and_int32": (
        _node("BitwiseAnd", ["a", "b"], ["y"]),
        {"a": _i64(5, -3, 12).astype(np.int32)},
        {"b": _i64(3, 6, -1).astype(np.int32)},
        18,
        1,
    ),
    "bitwise_xor_uint32": (_node("BitwiseXor", ["a", "b"], ["y"]), {"a": U32}, {"b": U32[::-1].copy()}, 18, 1),
    "bitwise_not_uint8": (_node("BitwiseNot", ["a"], ["y"]), {"a": np.array([0, 7, 255], np.uint8)}, {}, 18, 1),
    "bit_shift_right_uint32": (
        _node("BitShift", ["a", "s"], ["y"], direction="RIGHT"),
        {"a": U32},
        {"s": np.full((2, 3), 3, np.uint32)},
        11,
        1,
    ),
    "bit_shift_left_uint8": (
        _node("BitShift", ["a", "s"], ["y"], direction="LEFT"),
        {"a": np.array([1, 3, 17], np.uint8)},
        {"s": np.array([1, 2, 3], np.uint8)},
        11,
        1,
    ),
    "add_uint32": (_node("Add", ["a", "b"], ["y"]), {"a": U32 // 2}, {"b": np.full((2, 3), 2, np.uint32)}, 14, 1),
    "cum_prod_exclusive_reverse": (
        _node("CumProd", ["x", "axis"], ["y"], exclusive=1, reverse=1),
        {"x": _f32(3, 4)},
        {"axis": np.array(1)},
        26,
        1,
    ),
    "cum_sum_exclusive": (
        _node("CumSum", ["x", "axis"], ["y"], exclusive=1),
        {"x": _f32(3, 4)},
        {"axis": np.array(0)},
        14,
        1,
    ),
    "unique_unsorted_axis": (
        _node("Unique", ["x"], ["y", "first", "inverse", "counts"], sorted=0, axis=0),
        {"x": np.array([[1, 2], [3, 4], [1, 2], [0, 9]], np.float32)},
        {},
        11,
        4,
    ),
    "unique_sorted_flat": (
        _node("Unique", ["x"], ["y", "first", "inverse", "counts"]),
        {"x": np.array([2, 1, 1, 3, 4, 3], np.float32)},
        {},
        11,
        4,
    ),
    "top_k_ties_uint64": (
        _node("TopK", ["x", "k"], ["v", "i"]),
        {"x": np.array([[3, 1, 3, 2, 3]], np.uint64)},
        {"k": _i64(2)},
        11,
        2,
    ),
    "arg_max_uint32": (_node("ArgMax", ["x"], ["y"], axis=1), {"x": U32}, {}, 13, 1),
    "det": (_node("Det", ["x"], ["y"]), {"x": _f32(2, 3, 3)}, {}, 11, 1),
    "reverse_sequence": (
        _node("ReverseSequence", ["x", "lens"], ["y"], time_axis=1, batch_axis=0),
        {"x": _f32(3, 4, 2)},
        {"lens": _i64(1, 4, 2)},
        10,
        1,
    ),
    "max_unpool": (
        _node("MaxUnpool", ["x", "i"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
        {"x": _f32(1, 1, 2, 2)},
        {"i": _i64(5, 7, 13, 15).reshape(1, 1, 2, 2)},
        11,
        1,
    ),
    "bit_cast_float_to_int": (_node("BitCast", ["x"], ["y"], to=TensorProto.INT32), {"x": _f32(2, 3)}, {}, 26, 1),
    "tensor_scatter_circular": (
        _node("TensorScatter", ["cache", "u", "at"], ["y"], mode="circular", axis=1),
        {"cache": _f32(2, 4, 3)},
        {"u": _f32(2, 2, 3), "at": _i64(1, 3)},
        24,
        1,
    ),
    "causal_conv_with_state_silu": (
        _node("CausalConvWithState", ["x", "w", "b", "past"], ["y", "present"], activation="silu"),
        {"x": _f32(2, 3, 5)},
        {"w": _f32(3, 1, 4), "b": _f32(3), "past": _f32(2, 3, 3)},
        27,
        2,
    ),
    "linear_attention_gated_delta_gqa": (
        _node("LinearAttention", ["q", "k", "v", "past", "g", "beta"], ["y", "state"], q_num_heads=4, kv_num_heads=2),
        {"q": _f32(1, 3, 4 * 4)},
        {
            "k": _f32(1, 3, 2 * 4) / 2,
            "v": _f32(1, 3, 2 * 3),
            "past": _f32(1, 2, 4, 3),
            "g": -RNG.uniform(0, 1, (1, 3, 2)).astype(np.float32),
            "beta": RNG.uniform(0, 1, (1, 3, 1)).astype(np.float32),
        },
        27,
        2,
    ),
    "tfidf_vectorizer_skip_bigrams": (
        _node(
            "TfIdfVectorizer",
            ["x"],
            ["y"],
            mode="TFIDF",
            min_gram_length=1,
            max_gram_length=2,
            max_skip_count=2,
            ngram_counts=[0, 4],
            ngram_indexes=[0, 1, 2, 3, 4, 5, 6],
            pool_int64s=[2, 3, 5, 4, 5, 6, 7, 8, 6, 7],
            weights=[1.0, 0.5, 2.0, 1.5, 1.0, 3.0, 0.25],
        ),
        {"x": np.array([[1, 1, 3, 3, 3, 7], [8, 6, 7, 5, 6, 8]], np.int32)},
        {},
        9,
        1,
    ),
    "swiglu": (_node("SwiGLU", ["a", "b"], ["y"], alpha=1.5), {"a": _f32(3, 4)}, {"b": _f32(3, 4)}, 28, 1),
    "quantize_per_axis": (
        _node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1),
        {"x": _f32(2, 3, 4) * 5},
        {"s": np.array([0.1, 0.2, 0.05], np.float32), "z": np.array([0, 10, -5], np.int8)},
        21,
        1,
    ),
    "quantize_blocked": (
        _node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1, block_size=2),
        {"x": _f32(3, 4) * 5},
        {"s": np.full((3, 2), 0.1, np.float32), "z": np.zeros((3, 2), np.uint8)},
        21,
        1,
    ),
    "dequantize_per_axis": (
        _node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=0),
        {"q": np.array([[0, 100, 255], [3, 4, 5]], np.uint8)},
        {"s": np.array([0.5, 0.25], np.float32), "z": np.array([128, 0], np.uint8)},
        21,
        1,
    ),
    "dynamic_quantize": (_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"]), {"x": _f32(3, 5)}, {}, 21, 3),
    "qlinear_matmul_per_column": (
        _node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"]),
        {"a": RNG.integers(0, 255, (2, 4)).astype(np.uint8)},
        {
            "as": np.array(0.02, np.float32),
            "az": np.array(128, np.uint8),
            "b": RNG.integers(-100, 100, (4, 3)).astype(np.int8),
            "bs": np.array([0.01, 0.02, 0.03], np.float32),
            "bz": np.zeros(3, np.int8),
            "ys": np.array(0.05, np.float32),
            "yz": np.array(128, np.uint8),
        },
        21,
        1,
    ),
    "qlinear_conv_bias": (
        _node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], pads=[1, 1, 1, 1]),
        {"x": RNG.integers(0, 255, (1, 2, 4, 4)).astype(np.uint8)},
        {
            "xs": np.array(0.02, np.float32),
            "xz": np.array(100, np.uint8),
            "w": RNG.integers(-50, 50, (3, 2, 3, 3)).astype(np.int8),
            "ws": np.array([0.01, 0.02, 0.015], np.float32),
            "wz": np.zeros(3, np.int8),
            "ys": np.array(0.1, np.float32),
            "yz": np.array(120, np.uint8),
            "b": np.array([100, -200, 50], np.int32),
        },
        21,
        1,
    ),
    "matmul_integer": (
        _node("MatMulInteger", ["a", "b", "az", "bz"], ["y"]),
        {"a": RNG.integers(0, 255, (2, 4)).astype(np.uint8)},
        {
            "b": RNG.integers(0, 255, (4, 3)).astype(np.uint8),
            "az": np.array(12, np.uint8),
            "bz": np.array([1, 2, 3], np.uint8),
        },
        21,
        1,
    ),
    "conv_integer": (
        _node("ConvInteger", ["x", "w", "xz"], ["y"]),
        {"x": RNG.integers(0, 255, (1, 1, 4, 4)).astype(np.uint8)},
        {"w": RNG.integers(0, 9, (2, 1, 2, 2)).astype(np.uint8), "xz": np.array(7, np.uint8)},
        21,
        1,
    ),
    "softmax_cross_entropy_weighted_ignore": (
        _node("SoftmaxCrossEntropyLoss", ["x", "t", "w"], ["loss", "log_prob"], ignore_index=1),
        {"x": _f32(4, 3, 2)},
        {"t": _i64(0, 1, 2, 2, 1, 0, 0, 1).reshape(4, 2), "w": np.array([0.3, 0.5, 0.2], np.float32)},
        13,
        2,
    ),
    "nll_loss_sum": (
        _node("NegativeLogLikelihoodLoss", ["x", "t"], ["loss"], reduction="sum"),
        {"x": _f32(3, 5)},
        {"t": _i64(4, 0, 2)},
        13,
        1,
    ),
    "grid_sample_bicubic_reflection": (
        _node("GridSample", ["x", "g"], ["y"], mode="cubic", padding_mode="reflection"),
        {"x": _f32(1, 2, 4, 5)},
        {"g": (RNG.uniform(-2.5, 2.5, (1, 3, 3, 2))).astype(np.float32)},
        20,
        1,
    ),
    "grid_sample_bicubic_border": (
        _node("GridSample", ["x", "g"], ["y"], mode="cubic", padding_mode="border", align_corners=1),
        {"x": _f32(1, 2, 4, 5)},
        {"g": (RNG.uniform(-1.2, 1.2, (1, 3, 3, 2))).astype(np.float32)},
        20,
        1,
    ),
    "affine_grid_3d": (
        _node("AffineGrid", ["theta", "size"], ["y"]),
        {"theta": _f32(2, 3, 4)},
        {"size": _i64(2, 1, 2, 3, 4)},
        20,
        1,
    ),
    "roi_align_max_output_half_pixel": (
        _node(
            "RoiAlign",
            ["x", "rois", "b"],
            ["y"],
            mode="max",
            output_height=2,
            output_width=3,
            sampling_ratio=2,
            coordinate_transformation_mode="output_half_pixel",
        ),
        {"x": _f32(2, 3, 6, 6)},
        {"rois": np.array([[0, 0, 4, 4], [1, 2, 5, 5.5]], np.float32), "b": _i64(1, 0)},
        16,
        1,
    ),
    "roi_align_avg_adaptive": (
        _node("RoiAlign", ["x", "rois", "b"], ["y"], output_height=2, output_width=2, spatial_scale=0.5),
        {"x": _f32(1, 2, 8, 8)},
        {"rois": np.array([[2, 2, 13, 9]], np.float32), "b": _i64(0)},
        16,
        1,
    ),
    "deform_conv_groups_mask": (
        _node(
            "DeformConv",
            ["x", "w", "off", "b", "m"],
            ["y"],
            kernel_shape=[2, 2],
            pads=[1, 0, 1, 0],
            group=2,
            offset_group=2,
        ),
        {"x": _f32(1, 4, 4, 4)},
        {
            "w": _f32(2, 2, 2, 2),
            "off": _f32(1, 16, 5, 3) * 0.7,
            "b": _f32(2),
            "m": RNG.uniform(0, 1, (1, 8, 5, 3)).astype(np.float32),
        },
        19,
        1,
    ),
    "col2im_strided_padded": (
        _node("Col2Im", ["x", "img", "block"], ["y"], strides=[2, 1], pads=[1, 0, 1, 1], dilations=[1, 2]),
        {"x": _f32(1, 4 * 2, 9)},
        {"img": _i64(5, 4), "block": _i64(2, 2)},
        18,
        1,
    ),
    "center_crop_pad_mixed": (
        _node("CenterCropPad", ["x", "s"], ["y"], axes=[1, 2]),
        {"x": _f32(2, 5, 3)},
        {"s": _i64(2, 6)},
        18,
        1,
    ),
    "non_max_suppression_centre_boxes": (
        _node("NonMaxSuppression", ["boxes", "scores", "k", "iou", "score"], ["y"], center_point_box=1),
        {"boxes": np.array([[[0.5, 0.5, 1, 1], [0.5, 0.6, 1, 1], [0.5, 0.4, 1, 1], [2.5, 2.5, 1, 1]]], np.float32)},
        {
            "scores": np.array([[[0.9, 0.75, 0.6, 0.95]]], np.float32),
            "k": _i64(3),
            "iou": np.array([0.5], np.float32),
            "score": np.array([0.0], np.float32),
        },
        11,
        1,
    ),
    "dft_onesided_opset20_axis": (
        _node("DFT", ["x", "", "axis"], ["y"], onesided=1),
        {"x": _f32(2, 8, 3, 1)},
        {"axis": np.array(1)},
        20,
        1,
    ),
    "dft_inverse_length_opset17": (
        _node("DFT", ["x", "n"], ["y"], inverse=1, axis=1),
        {"x": _f32(2, 6, 2)},
        {"n": np.array(8)},
        17,
        1,
    ),
    "stft_hann": (
        _node("STFT", ["x", "step", "w"], ["y"]),
        {"x": _f32(2, 32, 1)},
        {"step": np.array(4), "w": (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(8) / 8)).astype(np.float32)},
        17,
        1,
    ),
    "hamming_window_symmetric": (
        _node("HammingWindow", ["n"], ["y"], periodic=0),
        {"n": np.array(10, np.int64)},
        {},
        17,
        1,
    ),
    "blackman_window_double": (
        _node("BlackmanWindow", ["n"], ["y"], output_datatype=TensorProto.DOUBLE),
        {"n": np.array(9, np.int32)},
        {},
        17,
        1,
    ),
    "mel_weight_matrix": (
        _node("MelWeightMatrix", ["bins", "n", "rate", "lo", "hi"], ["y"]),
        {
            "bins": np.array(8, np.int32),
            "n": np.array(64, np.int32),
            "rate": np.array(8000, np.int32),
            "lo": np.array(100, np.float32),
            "hi": np.array(3500, np.float32),
        },
        {},
        17,
        1,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_node_matches_onnx_reference(case: str) -> None:
    node, inputs, consts, opset, n_out = CASES[case]
    assert_matches_reference(node, inputs, consts, opset, n_out)


def _qdq_mlp() -> onnx.ModelProto:
    """x -> Q/DQ -> MatMul(W fake-quantised per column) -> y: a QAT export's shape."""
    nodes = [
        _node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        _node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        _node("QuantizeLinear", ["w", "ws", "wz"], ["wq"], axis=1),
        _node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1),
        _node("MatMul", ["xd", "wd"], ["y"]),
    ]
    consts = {"xs": np.array(0.05, np.float32), "xz": np.array(0, np.int8), "w": _f32(6, 4) * 0.4,
              "ws": np.full(4, 0.01, np.float32), "wz": np.zeros(4, np.int8)}
    info = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])]
    graph = helper.make_graph(nodes, "qdq", info, out, [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def test_fake_quant_passes_straight_through_gradients_to_the_float_weight() -> None:
    """d y / d W through Q/DQ equals the float MatMul's (x rounded) inside the quantised range."""
    module = onnx_to_torch(_qdq_mlp())
    (weight,) = [p for p in module.parameters()]
    assert weight.shape == (6, 4)
    x = torch.from_numpy(_f32(5, 6))
    module(x).sum().backward()
    rounded = torch.clamp(torch.round(x / 0.05), -128, 127) * 0.05
    torch.testing.assert_close(weight.grad, rounded.sum(0).unsqueeze(1).expand(6, 4), rtol=1e-5, atol=1e-5)


def test_without_gradient_quantize_returns_the_onnx_integer_type() -> None:
    module = onnx_to_torch(_model([_node("QuantizeLinear", ["x", "s", "z"], ["y"])], {"x": _f32(3)},
                                  {"s": np.array(0.1, np.float32), "z": np.array(3, np.uint8)}, ["y"], 21))
    with torch.no_grad():
        assert module(torch.from_numpy(_f32(3))).dtype == torch.uint8


def test_qdq_model_is_one_connected_layer_graph_with_its_float_weight(tmp_path) -> None:
    path = tmp_path / "qdq.onnx"
    onnx.save(_qdq_mlp(), str(path))
    handle = load_onnx(str(path))
    ops = [data["op"] for _, data in handle.graph.nodes(data=True)]
    assert ops.count("linear") == 1 and "unknown" not in ops
    result = estimate(handle.graph, handle.inputs)
    assert not result.partial and result.weights


def test_random_ops_repeat_with_their_seed() -> None:
    nodes = [
        _node("RandomNormalLike", ["x"], ["a"], seed=3.0),
        _node("RandomUniformLike", ["x"], ["b"], seed=3.0, low=-2.0, high=2.0),
    ]
    model = _model(nodes, {"x": _f32(4, 5)}, {}, ["a", "b"], 17)
    x = torch.from_numpy(_f32(4, 5))
    first, second = onnx_to_torch(model)(x), onnx_to_torch(model)(x)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # exact: same generator and seed, so a copy of the same draw
    assert float(first[1].min()) >= -2.0 and float(first[1].max()) <= 2.0 and float(first[0].std()) > 0.5


def test_detection_tail_runs_and_its_indices_stay_off_the_data_path(tmp_path) -> None:
    """Conv scores -> NonMaxSuppression: the head is a weight layer, the int64 indices no node."""
    nodes = [
        _node("Conv", ["x", "w"], ["s4"]), _node("Reshape", ["s4", "shape"], ["scores"]),
        _node("NonMaxSuppression", ["boxes", "scores", "k"], ["keep"]),
    ]
    consts = {
        "w": _f32(1, 2, 1, 1),
        "shape": _i64(1, 1, 16),
        "boxes": RNG.uniform(0, 4, (1, 16, 4)).astype(np.float32),
        "k": _i64(3),
    }
    info = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])]
    outs = [
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 16]),
        helper.make_tensor_value_info("keep", TensorProto.INT64, ["k", 3]),
    ]
    graph = helper.make_graph(nodes, "det", info, outs, [numpy_helper.from_array(v, k) for k, v in consts.items()])
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    handle = load_onnx(str(path))
    assert [d["source"] for _, d in handle.graph.nodes(data=True) if d["op"] != "input"] == ["Conv", "Reshape"]
    _, keep = onnx_to_torch(str(path))(torch.from_numpy(_f32(1, 2, 4, 4)))
    assert keep.dtype == torch.int64 and keep.shape == (3, 3)


def test_int8_weights_behind_dequantize_become_float_parameters() -> None:
    """A QDQ export storing int8 weights: the dequantised weight is what the probe trains."""
    nodes = [_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=1), _node("MatMul", ["x", "w"], ["y"])]
    consts = {
        "wq": RNG.integers(-100, 100, (6, 4)).astype(np.int8),
        "ws": np.full(4, 0.02, np.float32),
        "wz": np.zeros(4, np.int8),
    }
    module = onnx_to_torch(_model(nodes, {"x": _f32(2, 6)}, consts, ["y"], 21))
    (weight,) = list(module.parameters())
    torch.testing.assert_close(
        weight.detach(), torch.from_numpy(consts["wq"].astype(np.float32) * 0.02), rtol=1e-6, atol=1e-7
    )
    module(torch.from_numpy(_f32(2, 6))).sum().backward()
    assert weight.grad is not None and float(weight.grad.abs().sum()) > 0


def test_probe_loss_skips_integer_outputs_and_says_so(tmp_path) -> None:
    """Outputs [ArgMax indices, softmax probabilities]: the runner hands the loss the probabilities
    alone, the default loss reads them as a softmax, and the label names the left-out output."""
    nodes = [
        _node("Gemm", ["x", "w"], ["logits"]),
        _node("Softmax", ["logits"], ["probs"]),
        _node("ArgMax", ["probs"], ["label"], axis=1),
    ]
    info = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])]
    outs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, [4, 1]),
        helper.make_tensor_value_info("probs", TensorProto.FLOAT, [4, 5]),
    ]
    graph = helper.make_graph(nodes, "cls", info, outs, [numpy_helper.from_array(_f32(6, 5), "w")])
    path = tmp_path / "cls.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    handle = load_onnx(str(path))
    objective = objective_for(handle.graph, None)
    assert "negative log-likelihood" in objective.label and "label carry no gradient" in objective.label
    x = torch.from_numpy(_f32(4, 6))
    outputs, _ = handle.runner(handle.module, [x], ())
    probs = onnx_to_torch(str(path))(x)[1]
    torch.testing.assert_close(outputs, probs, rtol=1e-6, atol=1e-7)
    expected = default_loss([probs], ["softmax"], [1], 5)
    torch.testing.assert_close(objective.compute(outputs, [x], 5), expected, rtol=1e-6, atol=1e-7)
