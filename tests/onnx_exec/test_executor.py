"""The executor's contract: parameters, folding, capture through the runner, errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradaudit.errors import UnsupportedOperatorError
from gradaudit.onnx_exec import SUPPORTED_OPS, OnnxExecutionError, onnx_to_torch, run_onnx

from .models import MLP, export, transformer

REQUIRED_OPS = """ConstantOfShape Conv Relu LRN MaxPool AveragePool GlobalAveragePool Reshape Gemm Dropout Softmax
BatchNormalization Unsqueeze Mul Add Sum Concat Transpose LeakyRelu Tanh Sigmoid Gelu Erf Elu Selu Softplus
HardSwish HardSigmoid Clip ConvTranspose Flatten Pad Resize Upsample LayerNormalization ReduceMean Sub Pow Sqrt
Div MatMul Gather Shape Slice Split Squeeze Where Expand Equal Cast Constant Range Einsum Trilu RNN LSTM GRU
Identity Mod""".split()


def test_supported_ops_cover_the_required_set() -> None:
    assert set(REQUIRED_OPS) <= SUPPORTED_OPS


def _constant_of_shape_model() -> onnx.ModelProto:
    """Old model-zoo style: the weight is ConstantOfShape(shape) with a float fill value."""
    fill = numpy_helper.from_array(np.array([0.02], np.float32))
    nodes = [
        helper.make_node("ConstantOfShape", ["w.shape"], ["fc.w"], value=fill),
        helper.make_node("Gemm", ["x", "fc.w"], ["y"], transB=1),
        helper.make_node("Relu", ["y"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.array([3, 4], np.int64), "w.shape")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_constant_of_shape_weights_become_parameters() -> None:
    module = onnx_to_torch(_constant_of_shape_model())
    assert module.param_names == {"fc.w": "fc_w"}
    weight = dict(module.named_parameters())["fc_w"]
    assert weight.shape == (3, 4) and torch.all(weight == 0.02)  # exact: the fill value itself
    module(torch.ones(2, 4)).sum().backward()
    assert weight.grad is not None and torch.all(
        weight.grad == 2.0
    )  # each row sees two ones-rows; exact: small integers


def test_parameter_names_are_sanitised_and_mapped(tmp_path) -> None:
    torch.manual_seed(0)
    model = MLP()
    module = onnx_to_torch(export(model, (torch.randn(2, 12),), tmp_path / "mlp.onnx"))
    names = dict(module.named_parameters())
    assert all("." not in n for n in names)
    assert set(module.param_names.values()) == set(names)
    torch.testing.assert_close(names[module.param_names["0.weight"]], model[0].weight)


def test_exporter_deduplicated_layers_get_their_own_parameters(tmp_path) -> None:
    """nn.TransformerEncoder deep-copies its layer; the exporter merges the equal weights."""
    module = onnx_to_torch(export(transformer(True), (torch.randn(2, 5, 16),), tmp_path / "t.onnx"))
    assert "layers.1.self_attn.out_proj.weight" in module.param_names
    assert "layers.0.self_attn.out_proj.weight" in module.param_names
    first = getattr(module, module.param_names["layers.0.self_attn.out_proj.weight"])
    second = getattr(module, module.param_names["layers.1.self_attn.out_proj.weight"])
    assert first is not second and torch.equal(first, second)  # exact: one initializer copied twice


def test_runner_captures_node_outputs_with_gradients(tmp_path) -> None:
    torch.manual_seed(0)
    module = onnx_to_torch(export(MLP(), (torch.randn(2, 12),), tmp_path / "mlp.onnx"))
    relu_ids = [s.node_id for s in module.steps if s.op_type == "Relu"]
    x = torch.randn(5, 12)
    outputs, captured = run_onnx(module, (x,), set(relu_ids) | {"x"})
    assert set(captured) == set(relu_ids) | {"x"} and captured["x"] is x
    for tensor in captured.values():
        if tensor.requires_grad:
            tensor.retain_grad()
    outputs.pow(2).sum().backward()
    for node_id in relu_ids:
        assert captured[node_id].shape == (5, 24)
        assert captured[node_id].grad is not None and captured[node_id].grad.abs().sum() > 0


def test_unsupported_operator_is_named() -> None:
    node = helper.make_node("ImageDecoder", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
    )
    with pytest.raises(UnsupportedOperatorError, match="ImageDecoder"):
        onnx_to_torch(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def test_failing_node_is_named() -> None:
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="bad_reshape")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([4, 4], np.int64), "shape")],
    )  # fmt: skip
    module = onnx_to_torch(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    with pytest.raises(OnnxExecutionError, match="bad_reshape.*Reshape"):
        module(torch.randn(2, 3))
