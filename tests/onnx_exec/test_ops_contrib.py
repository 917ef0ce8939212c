"""The com.microsoft ops against onnxruntime's own kernels (the oracle), one small graph each."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradaudit.errors import UnsupportedOperatorError
from gradaudit.loaders.onnx_loader import load_onnx
from gradaudit.onnx_exec import onnx_to_torch
from gradaudit.static import estimate

ort = pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(7)
MS = "com.microsoft"


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _model(node, inputs: dict[str, np.ndarray], consts: dict[str, np.ndarray], n_out: int = 1):
    """One node; `inputs` become graph inputs, `consts` initializers."""
    value_info = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in inputs.items()
    ]
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in node.output[:n_out]]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    graph = helper.make_graph([node], "g", value_info, outputs, inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def assert_matches_onnxruntime(
    node, inputs: dict[str, np.ndarray], consts: dict[str, np.ndarray] | None = None, n_out: int = 1, atol: float = 1e-5
) -> None:
    model = _model(node, inputs, consts or {}, n_out)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)
    module = onnx_to_torch(model, train_mode=False)
    got = module(*(torch.from_numpy(v) for v in inputs.values()))
    got = got if isinstance(got, tuple) else (got,)
    for index in range(n_out):
        np.testing.assert_allclose(
            got[index].detach().numpy(), expected[index], rtol=1e-4, atol=atol, err_msg=f"output {index}"
        )


def _ms(op: str, inputs: list[str], outputs: list[str], **attrs):
    return helper.make_node(op, inputs, outputs, domain=MS, **attrs)


def test_fused_matmul_transposes_and_alpha() -> None:
    node = _ms("FusedMatMul", ["a", "b"], ["y"], transA=1, transB=1, alpha=0.5)
    assert_matches_onnxruntime(node, {"a": _f32(2, 5, 3)}, {"b": _f32(4, 5)})


@pytest.mark.parametrize("op", ["Gelu", "QuickGelu", "FastGelu", "BiasGelu"])
def test_gelu_family(op: str) -> None:
    with_bias = op in ("FastGelu", "BiasGelu")
    node = _ms(op, ["x", "b"] if with_bias else ["x"], ["y"])
    assert_matches_onnxruntime(node, {"x": _f32(2, 3, 8)}, {"b": _f32(8)} if with_bias else {})


def test_skip_layer_normalization_all_outputs() -> None:
    node = _ms("SkipLayerNormalization", ["x", "s", "g", "b", "bias"], ["y", "mean", "inv", "sum"], epsilon=1e-5)
    consts = {"g": _f32(8), "b": _f32(8), "bias": _f32(8)}
    assert_matches_onnxruntime(node, {"x": _f32(2, 3, 8), "s": _f32(2, 3, 8)}, consts, n_out=4)


def test_simplified_layer_normalization_default_domain() -> None:
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], epsilon=1e-6)
    assert_matches_onnxruntime(node, {"x": _f32(2, 3, 8)}, {"g": _f32(8)})


def test_skip_simplified_layer_normalization() -> None:
    node = _ms("SkipSimplifiedLayerNormalization", ["x", "s", "g"], ["y", "", "", "sum"], epsilon=1e-6)
    model_outputs = 1
    assert_matches_onnxruntime(node, {"x": _f32(2, 3, 8), "s": _f32(2, 3, 8)}, {"g": _f32(8)}, n_out=model_outputs)


@pytest.mark.parametrize("mask", ["none", "key_lengths", "raw"])
@pytest.mark.parametrize("unidirectional", [0, 1])
def test_attention_packed_weights(mask: str, unidirectional: int) -> None:
    inputs = {"x": _f32(2, 4, 8)}
    names = ["x", "w", "bias"]
    if mask == "key_lengths":
        inputs["m"] = np.array([4, 2], np.int32)
    elif mask == "raw":
        inputs["m"] = np.array([[1, 1, 0, 1], [1, 1, 1, 1]], np.int32)
    if mask != "none":
        names.append("m")
    node = _ms("Attention", names, ["y"], num_heads=2, unidirectional=unidirectional)
    assert_matches_onnxruntime(node, inputs, {"w": _f32(8, 24), "bias": _f32(24)})


def test_multi_head_attention_bias_and_key_padding_mask() -> None:
    node = _ms("MultiHeadAttention", ["q", "k", "v", "b", "m"], ["y"], num_heads=2)
    inputs = {
        "q": _f32(2, 3, 8),
        "k": _f32(2, 5, 8),
        "v": _f32(2, 5, 8),
        "m": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32),
    }
    assert_matches_onnxruntime(node, inputs, {"b": _f32(24)})


def test_multi_head_attention_past_state_and_presents() -> None:
    node = _ms(
        "MultiHeadAttention",
        ["q", "k", "v", "", "", "", "pk", "pv"],
        ["y", "present_k", "present_v"],
        num_heads=2,
        unidirectional=1,
    )
    inputs = {
        "q": _f32(1, 2, 8),
        "k": _f32(1, 2, 8),
        "v": _f32(1, 2, 8),
        "pk": _f32(1, 2, 3, 4),
        "pv": _f32(1, 2, 3, 4),
    }
    assert_matches_onnxruntime(node, inputs, n_out=3)


def _cos_sin(positions: int, half: int) -> tuple[np.ndarray, np.ndarray]:
    angles = np.outer(np.arange(positions), 1.0 / 10000 ** (np.arange(half) / half)).astype(np.float32)
    return np.cos(angles), np.sin(angles)


@pytest.mark.parametrize("interleaved", [0, 1])
def test_rotary_embedding(interleaved: int) -> None:
    cos, sin = _cos_sin(16, 4)
    node = _ms("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], interleaved=interleaved, num_heads=2)
    inputs = {"x": _f32(2, 5, 16), "pos": np.array([[0, 1, 2, 3, 4], [3, 4, 5, 6, 7]], np.int64)}
    assert_matches_onnxruntime(node, inputs, {"cos": cos, "sin": sin})


def _gqa_inputs(batch: int, seq: int, past: int, num_heads: int, kv_heads: int, head: int) -> dict[str, np.ndarray]:
    inputs = {
        "q": _f32(batch, seq, num_heads * head),
        "k": _f32(batch, seq, kv_heads * head),
        "v": _f32(batch, seq, kv_heads * head),
    }
    if past:
        inputs.update(pk=_f32(batch, kv_heads, past, head), pv=_f32(batch, kv_heads, past, head))
    inputs.update(seqlens=np.full((batch,), past + seq - 1, np.int32), total=np.array(past + seq, np.int32))
    return inputs


@pytest.mark.parametrize(("seq", "past", "rotary"), [(4, 0, 0), (1, 3, 0), (4, 0, 1), (2, 3, 1)])
def test_group_query_attention_prompt_and_decode(seq: int, past: int, rotary: int) -> None:
    head = 16  # onnxruntime's rotary kernel takes multiples of 16
    batch = 1 if seq > 1 and past else 2  # onnxruntime's rule for a prompt continuing a cache
    inputs = _gqa_inputs(batch, seq, past, 4, 2, head)
    names = ["q", "k", "v", "pk" if past else "", "pv" if past else "", "seqlens", "total"]
    consts = {}
    if rotary:
        consts["cos"], consts["sin"] = _cos_sin(16, head // 2)
        names += ["cos", "sin"]
    node = _ms(
        "GroupQueryAttention", names, ["y", "present_k", "present_v"], num_heads=4, kv_num_heads=2, do_rotary=rotary
    )
    assert_matches_onnxruntime(node, inputs, consts, n_out=3 if past else 1)


def test_group_query_attention_local_window_and_softcap() -> None:
    inputs = _gqa_inputs(1, 6, 0, 2, 1, 8)
    node = _ms("GroupQueryAttention", ["q", "k", "v", "", "", "seqlens", "total"], ["y"], num_heads=2, kv_num_heads=1,
               local_window_size=2, softcap=5.0)
    assert_matches_onnxruntime(node, inputs)


def test_other_com_microsoft_ops_stay_unsupported_and_named() -> None:
    node = _ms("BiasSoftmax", ["x", "b"], ["y"])
    model = _model(node, {"x": _f32(2, 3)}, {"b": _f32(3)})
    with pytest.raises(UnsupportedOperatorError, match="com.microsoft:BiasSoftmax"):
        onnx_to_torch(model)


def test_fused_matmul_weight_is_a_parameter_with_gradient() -> None:
    """The optimiser's FusedMatMul keeps the weight learned: the probe gets its gradient."""
    node = _ms("FusedMatMul", ["a", "b"], ["y"], transB=1)
    module = onnx_to_torch(_model(node, {"a": _f32(2, 5)}, {"b": _f32(3, 5)}))
    module(torch.from_numpy(_f32(2, 5))).pow(2).sum().backward()
    (weight,) = list(module.parameters())
    assert weight.grad is not None and float(weight.grad.abs().sum()) > 0


def test_optimised_transformer_block_has_a_full_static_estimate(tmp_path) -> None:
    """FusedMatMul -> FastGelu -> FusedMatMul -> SkipLayerNormalization(residual): every node has
    a gain rule, and the skip sum hands the gradient to both the branch and the residual."""
    nodes = [
        _ms("FusedMatMul", ["x", "w1"], ["h"], transB=1),
        _ms("FastGelu", ["h", "b1"], ["a"]),
        _ms("FusedMatMul", ["a", "w2"], ["o"], alpha=0.5),
        _ms("SkipLayerNormalization", ["o", "x", "g", "beta"], ["y"]),
    ]
    consts = {
        "w1": _f32(16, 8) / 3,
        "b1": _f32(16) / 10,
        "w2": _f32(16, 8) / 4,
        "g": np.ones(8, np.float32),
        "beta": np.zeros(8, np.float32),
    }
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 5, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5, 8])],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    path = tmp_path / "block.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]), str(path)
    )
    handle = load_onnx(str(path))
    ops = {data["source"]: data["op"] for _, data in handle.graph.nodes(data=True)}
    assert ops[MS + ":FusedMatMul"] == "linear" and ops[MS + ":FastGelu"] == "activation"
    assert ops[MS + ":SkipLayerNormalization"] == "norm"
    result = estimate(handle.graph, handle.inputs)
    assert not result.partial and len(result.weights) == 2
    assert all(math.isfinite(w.log10_grad_rms) for w in result.weights)


def test_group_query_attention_packed_qkv() -> None:
    """genai's packed form: one (B, S, (N + 2 kvN) H) input, key and value omitted."""
    heads, kv_heads, head = 4, 2, 16
    inputs = {
        "qkv": _f32(2, 3, (heads + 2 * kv_heads) * head),
        "seqlens": np.full((2,), 2, np.int32),
        "total": np.array(3, np.int32),
    }
    node = _ms(
        "GroupQueryAttention",
        ["qkv", "", "", "", "", "seqlens", "total"],
        ["y"],
        num_heads=heads,
        kv_num_heads=kv_heads,
    )
    assert_matches_onnxruntime(node, inputs)


def test_multi_head_attention_with_attention_bias() -> None:
    node = _ms("MultiHeadAttention", ["q", "k", "v", "", "", "ab"], ["y"], num_heads=2, scale=0.3)
    inputs = {"q": _f32(2, 3, 8), "k": _f32(2, 4, 8), "v": _f32(2, 4, 6), "ab": _f32(1, 2, 3, 4)}
    assert_matches_onnxruntime(node, inputs)
