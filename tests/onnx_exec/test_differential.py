"""Executor vs onnxruntime on fresh torch exports (eval semantics), and train-mode BatchNorm."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from gradaudit.onnx_exec import onnx_to_torch

from .models import MLP, BNConvNet, Recurrent, export, transformer

CASES = {
    "relu_mlp": (MLP, (3, 12)),
    "bn_cnn_depthwise": (BNConvNet, (2, 3, 12, 12)),
    "pre_ln_transformer": (lambda: transformer(True), (2, 5, 16)),
    "post_ln_transformer": (lambda: transformer(False), (2, 5, 16)),
    "tanh_rnn": (lambda: Recurrent("RNN"), (7, 2, 6)),
    "lstm": (lambda: Recurrent("LSTM"), (7, 2, 6)),
    "gru": (lambda: Recurrent("GRU"), (7, 2, 6)),
    "bidirectional_2_layer_lstm": (lambda: Recurrent("LSTM", num_layers=2, bidirectional=True, batch_first=True),
                                   (2, 7, 6)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_onnxruntime(case: str, tmp_path) -> None:
    torch.manual_seed(0)
    factory, shape = CASES[case]
    path = export(factory(), (torch.randn(shape),), tmp_path / f"{case}.onnx")
    x = np.random.default_rng(1).standard_normal((3,) + shape[1:]).astype(np.float32)
    (expected,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    module = onnx_to_torch(path, train_mode=False)
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-3, atol=1e-5)


def test_train_mode_batchnorm_uses_batch_statistics(tmp_path) -> None:
    """An eval-mode export still normalises with batch statistics under train semantics.

    BN follows a ReLU here: after a conv the exporter folds it into the conv weights.
    """
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 10 * 10, 5))
    with torch.no_grad():  # running stats far from the batch's, so the two semantics differ
        model[2].running_mean.fill_(3.0)
        model[2].running_var.fill_(0.1)
    path = export(model, (torch.randn(2, 3, 12, 12),), tmp_path / "bn.onnx")
    x = torch.randn(4, 3, 12, 12)
    model.train()
    expected = model(x)
    got = onnx_to_torch(path)(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    eval_out = onnx_to_torch(path, train_mode=False)(x)
    assert not torch.allclose(eval_out, expected, atol=1e-3)
