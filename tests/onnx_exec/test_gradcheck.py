"""Autograd through the registered op functions is correct (float64 gradcheck)."""

from __future__ import annotations

import torch

from gradaudit.onnx_exec.op_registry import OPS, OpContext


def _op(op_type: str, attrs: dict, n_outputs: int = 1):
    ctx = OpContext(opset=17, train_mode=True, n_outputs=n_outputs)

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        result = OPS[op_type].fn(list(inputs), attrs, ctx)
        return result[0] if isinstance(result, tuple) else result

    return run


def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_conv_grouped_strided_asymmetric_pads() -> None:
    torch.manual_seed(0)
    attrs = {"group": 2, "strides": [2, 1], "pads": [0, 1, 1, 0], "kernel_shape": [3, 3]}
    assert torch.autograd.gradcheck(_op("Conv", attrs), (_rand(2, 4, 5, 5), _rand(6, 2, 3, 3), _rand(6)))


def test_gemm_trans_b() -> None:
    torch.manual_seed(0)
    attrs = {"transB": 1, "alpha": 0.5, "beta": 2.0}
    assert torch.autograd.gradcheck(_op("Gemm", attrs), (_rand(3, 4), _rand(5, 4), _rand(5)))


def test_layer_normalization() -> None:
    torch.manual_seed(0)
    assert torch.autograd.gradcheck(_op("LayerNormalization", {"axis": -1}), (_rand(3, 6), _rand(6), _rand(6)))


def test_batch_normalization_train_mode() -> None:
    torch.manual_seed(0)
    stats = (torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    fn = _op("BatchNormalization", {})
    assert torch.autograd.gradcheck(lambda x, g, b: fn(x, g, b, *stats), (_rand(4, 3, 2), _rand(3), _rand(3)))


def test_recurrent_ops() -> None:
    torch.manual_seed(0)
    hidden, size = 3, 2
    for op_type, gates, attrs in (("RNN", 1, {}), ("LSTM", 4, {}), ("GRU", 3, {"linear_before_reset": 1}),
                                  ("GRU", 3, {})):
        args = (_rand(4, 2, size), _rand(1, gates * hidden, size), _rand(1, gates * hidden, hidden),
                _rand(1, 2 * gates * hidden))
        assert torch.autograd.gradcheck(_op(op_type, {"hidden_size": hidden, **attrs}, 2), args), (op_type, attrs)
