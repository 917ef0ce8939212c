"""Fresh exports of MobileNet, DenseNet, a ConvTranspose + Resize decoder and a causal
transformer decoder: the executor matches onnxruntime (eval semantics), gradients reach every
weight (train semantics), and resampling nodes carry the gains they really have."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from gradaudit.loaders.onnx_loader import load_onnx
from gradaudit.onnx_exec import onnx_to_torch

from .architectures import CausalDecoder, Decoder, DenseNetLike, MobileNetLike

CASES = {
    "mobilenet": (MobileNetLike, [(2, 3, 16, 16)], {"HardSwish", "HardSigmoid", "Clip"}),
    "densenet": (DenseNetLike, [(2, 3, 8, 8)], {"Concat"}),
    "decoder": (Decoder, [(2, 6, 4, 4)], {"ConvTranspose", "Resize"}),
    "causal_decoder": (CausalDecoder, [(2, 7), (2, 5, 16)], {"Trilu", "Where", "LayerNormalization"}),
}


def _inputs(shapes: list[tuple[int, ...]], seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(0, 20, s, generator=gen) if len(s) == 2 else torch.randn(s, generator=gen)
                 for s in shapes)


def _export(case: str, folder: Path) -> tuple[Path, list[str]]:
    torch.manual_seed(0)
    factory, shapes, _ = CASES[case]
    names = [f"in{i}" for i in range(len(shapes))]
    path = folder / f"{case}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            factory().eval(), _inputs(shapes, 0), str(path), dynamo=False, opset_version=17,
            input_names=names, dynamic_axes={n: {0: "batch"} for n in names},
        )  # fmt: skip
    return path, names


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_onnxruntime_and_trains(case: str, tmp_path: Path) -> None:
    path, names = _export(case, tmp_path)
    assert CASES[case][2] <= {n.op_type for n in onnx.load(str(path)).graph.node}
    inputs = _inputs([(3,) + s[1:] for s in CASES[case][1]], 1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
    with torch.no_grad():
        got = onnx_to_torch(path, train_mode=False)(*inputs)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-3, atol=1e-5)

    module = onnx_to_torch(path)
    (module(*inputs) * torch.randn(expected.shape)).sum().backward()
    for name, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def _measured_gains(mode: str, scale: float) -> tuple[float, float]:
    """E[y^2]/E[x^2] and E[dx^2]/E[dy^2] of one resampling on white noise."""
    torch.manual_seed(0)
    x = torch.randn(16, 4, 24, 24, requires_grad=True)
    y = F.interpolate(x, scale_factor=scale, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    dy = torch.randn_like(y)
    y.backward(dy)
    return float(y.detach().pow(2).mean() / x.detach().pow(2).mean()), float(x.grad.pow(2).mean() / dy.pow(2).mean())


def test_resize_nodes_are_pools_with_the_measured_gains(tmp_path: Path) -> None:
    """Pool(avg) predicts 1/k forward and 1/(k * stride) backward; nearest upsampling by 2x2
    sums four gradients (x4), bilinear also averages neighbours (forward < 1)."""
    path, _ = _export("decoder", tmp_path)
    graph = load_onnx(str(path)).graph
    resizes = [d for _, d in graph.nodes(data=True) if d["source"] == "Resize"]
    assert [d["op"] for d in resizes] == ["pool", "pool"]
    for node, mode in zip(resizes, ("nearest-exact", "bilinear")):
        kernel, stride = np.prod(node["attrs"]["kernel"]), np.prod(node["attrs"]["stride"])
        forward, backward = _measured_gains(mode, 2.0)
        assert 1 / kernel == pytest.approx(forward, rel=0.03)
        assert 1 / (kernel * stride) == pytest.approx(backward, rel=0.03)
    assert 1 / np.prod(resizes[0]["attrs"]["stride"]) == 4.0  # exact: a power-of-two scale


def test_training_mode_batchnorm_yields_running_statistics() -> None:
    """A BatchNormalization exported in training mode (3 outputs) matches onnxruntime on all."""
    rng = np.random.default_rng(0)
    stats = {n: rng.standard_normal(3).astype(np.float32) for n in ("scale", "bias", "mean")}
    stats["var"] = (rng.random(3) + 0.5).astype(np.float32)
    node = onnx.helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y", "rm", "rv"],
                                 training_mode=1, momentum=0.8)
    graph = onnx.helper.make_graph(
        [node], "bn", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 3, 5])],
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("y", "rm", "rv")],
        [onnx.numpy_helper.from_array(v, n) for n, v in stats.items()],
    )  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 15)])
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = onnx_to_torch(model)(torch.from_numpy(x))
    for value, reference in zip(got, expected):
        np.testing.assert_allclose(value.detach().numpy(), reference, rtol=1e-4, atol=1e-6)
