"""The nine model-zoo graphs shipped in the onnx wheel (opset 9, ConstantOfShape weights).

Each loads into a LayerGraph with one weight layer per Conv/Gemm, trains one step with finite
gradients on every weight, and in eval semantics reproduces its bundled reference output. The
wheel ships outputs only: the input is the one onnx's backend runner generates for these files
(`arange(n) / n`, see onnx/backend/test/runner), so the reference is exact.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from gradaudit.graph import weight_layers
from gradaudit.loaders.onnx_loader import load_onnx

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
# The three largest take ~10-25 s each on two shared cores (param statistics of 60-140M weights
# dominate): slow-marked; alexnet and resnet50 keep a big Gemm and a BN/residual graph fast.
SLOW = {"densenet121", "vgg19", "zfnet512"}
MODELS = [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
    for name in ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
                 "vgg19", "zfnet512"]
]


def runner_input(shape: tuple[int, ...]) -> torch.Tensor:
    n = int(np.prod(shape))
    return torch.from_numpy((np.arange(n).reshape(shape) / n).astype(np.float32))


@pytest.mark.parametrize("name", MODELS)
def test_light_model(name: str) -> None:
    path = LIGHT / f"light_{name}.onnx"
    start = time.perf_counter()
    handle = load_onnx(str(path))
    loaded = time.perf_counter()

    ops = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    assert len(weight_layers(handle.graph)) == ops["Conv"] + ops["Gemm"]
    assert handle.probe_unavailable == ""
    assert handle.parameters == sum(p.numel() for p in handle.module.parameters())

    module = handle.module
    x = runner_input(handle.inputs[0].shape)
    outputs, _ = handle.runner(module, (x,), ())
    (outputs * torch.randn_like(outputs)).sum().backward()
    params = dict(module.named_parameters())
    for layer in weight_layers(handle.graph):
        grad = params[layer.param].grad
        assert grad is not None and torch.isfinite(grad).all(), layer.param
    trained = time.perf_counter()

    module.train_mode = False
    with torch.no_grad():
        got = module(x)
    expected = numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-3, atol=1e-6)
    print(f"{name}: load {loaded - start:.2f}s, forward+backward {trained - loaded:.2f}s")
