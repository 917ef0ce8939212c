"""Speed of the ONNX executor: forward+backward of `onnx_to_torch(export(m))` against `m` itself,
and the time to convert a generated 1,000-node graph. The control-flow case is a recurrent net
written as an ONNX Scan (its body reads the weights from the outer scope) against the same loop
in torch.

Usage: python benchmarks/onnx_executor.py [--repeats 15] [--threads 1]
Each repeat times the original and the converted module back to back, so machine load hits both
alike; prints the medians and their ratio. Targets: ratio <= 1.5, conversion < 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Callable

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradaudit import onnx_to_torch  # noqa: E402


class BasicBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class ResNet(nn.Module):
    """A CIFAR-style ResNet: stem, residual blocks, pooled linear head."""

    def __init__(self, channels: int = 32, blocks: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.Sequential(*(BasicBlock(channels) for _ in range(blocks)))
        self.head = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def transformer_encoder(width: int = 128, layers: int = 4) -> nn.Module:
    layer = nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class LoopedRNN(nn.Module):
    """h_t = tanh(x_t W_x + h_{t-1} W_h + b) over the sequence, a Python loop; returns every h_t."""

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.w_x = nn.Parameter(torch.randn(width, width) / width**0.5)
        self.w_h = nn.Parameter(torch.randn(width, width) / width**0.5)
        self.b = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (seq, batch, width)
        h, states = torch.zeros_like(x[0]), []
        for x_t in x:
            h = torch.tanh(x_t @ self.w_x + h @ self.w_h + self.b)
            states.append(h)
        return torch.stack(states)


def scan_graph(model: LoopedRNN, x: torch.Tensor) -> onnx.ModelProto:
    """`LoopedRNN` as an ONNX Scan whose body reads W_x, W_h and b from the outer scope."""
    width = x.shape[-1]
    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [x.shape[1], width])  # noqa: E731
    body = helper.make_graph(
        [helper.make_node("MatMul", ["x_t", "w_x"], ["a"]), helper.make_node("MatMul", ["h", "w_h"], ["r"]),
         helper.make_node("Add", ["a", "r"], ["s"]), helper.make_node("Add", ["s", "b"], ["z"]),
         helper.make_node("Tanh", ["z"], ["h_next"]), helper.make_node("Identity", ["h_next"], ["y_t"])],
        "body", [value("h"), value("x_t")], [value("h_next"), value("y_t")],
    )  # fmt: skip
    inits = [numpy_helper.from_array(getattr(model, n).detach().numpy(), n) for n in ("w_x", "w_h", "b")]
    inits.append(numpy_helper.from_array(np.zeros((x.shape[1], width), np.float32), "h0"))
    scan = helper.make_node("Scan", ["h0", "x"], ["h_last", "y"], body=body, num_scan_inputs=1)
    graph = helper.make_graph(
        [scan],
        "scan_rnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _export(model: nn.Module, x: torch.Tensor, folder: str, keep_batchnorm: bool) -> onnx.ModelProto:
    """An eval-mode export folds each BatchNorm into the conv before it; a training-mode export
    keeps BatchNorm nodes, so the converted module does the same work as the original."""
    path = f"{folder}/model.onnx"
    mode = torch.onnx.TrainingMode.TRAINING if keep_batchnorm else torch.onnx.TrainingMode.EVAL
    model.train(keep_batchnorm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=["x"], training=mode)
    return onnx.load(path)


def _step_time(module: nn.Module, x: torch.Tensor) -> float:
    module.zero_grad(set_to_none=True)
    start = time.perf_counter()
    module(x).square().mean().backward()
    return time.perf_counter() - start


def compare(name: str, model: nn.Module, x: torch.Tensor, repeats: int, keep_batchnorm: bool = False) -> float:
    """Median forward+backward seconds of both modules, interleaved; returns the ratio."""
    if isinstance(model, LoopedRNN):
        converted = onnx_to_torch(scan_graph(model, x))
    else:
        with TemporaryDirectory() as folder:
            converted = onnx_to_torch(_export(model, x, folder, keep_batchnorm))
    model.train()
    for module in (model, converted):  # warm-up: allocator, kernels
        _step_time(module, x)
    original_s, converted_s = [], []
    for _ in range(repeats):
        original_s.append(_step_time(model, x))
        converted_s.append(_step_time(converted, x))
    a, b = statistics.median(original_s), statistics.median(converted_s)
    print(f"{name:<22}{a * 1e3:>12.2f}{b * 1e3:>13.2f}{b / a:>8.2f}x")
    return b / a


def chain_graph(nodes: int, width: int = 64) -> onnx.ModelProto:
    """A residual MLP written as `nodes` ONNX nodes: MatMul, Add bias, Relu, Add skip per block."""
    rng = np.random.default_rng(0)
    graph_nodes, inits, current = [], [], "x"
    for block in range(nodes // 4):
        w, b = f"w{block}", f"b{block}"
        inits += [numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), w),
                  numpy_helper.from_array(np.zeros(width, np.float32), b)]  # fmt: skip
        names = [f"mm{block}", f"lin{block}", f"act{block}", f"res{block}"]
        graph_nodes += [
            helper.make_node("MatMul", [current, w], [names[0]], name=names[0]),
            helper.make_node("Add", [names[0], b], [names[1]], name=names[1]),
            helper.make_node("Relu", [names[1]], [names[2]], name=names[2]),
            helper.make_node("Add", [current, names[2]], [names[3]], name=names[3]),
        ]
        current = names[3]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, width])
    y = helper.make_tensor_value_info(current, TensorProto.FLOAT, [8, width])
    graph = helper.make_graph(graph_nodes, "chain", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def conversion_time(nodes: int, repeats: int) -> float:
    model = chain_graph(nodes)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        onnx_to_torch(model)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    print(f"convert a {len(model.graph.node)}-node graph: {seconds:.3f} s (median of {repeats})")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], bool]] = {
        "resnet, BN folded": (ResNet, (16, 3, 32, 32), False),
        "resnet, BN kept": (ResNet, (16, 3, 32, 32), True),
        "transformer encoder": (transformer_encoder, (16, 32, 128), False),
        "rnn as an ONNX Scan": (LoopedRNN, (32, 16, 128), False),
    }
    print(f"{'model':<22}{'torch ms':>12}{'onnx ms':>13}{'ratio':>9}   (forward+backward, median of {args.repeats})")
    for name, (factory, shape, keep_batchnorm) in cases.items():
        compare(name, factory(), torch.randn(shape), args.repeats, keep_batchnorm)
    conversion_time(1000, 5)


if __name__ == "__main__":
    main()
