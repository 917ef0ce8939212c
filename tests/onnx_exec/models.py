"""Small torch models exported with `torch.onnx.export(dynamo=False)` for the executor tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


class MLP(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 3))


class BNConvNet(nn.Module):
    """Conv -> BN -> ReLU, a dilated depthwise conv with a residual, pooling and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.bn2 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        y = self.pool(y + torch.relu(self.bn2(self.depthwise(y))))
        return self.head(nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))


def transformer(norm_first: bool) -> nn.Module:
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


class Recurrent(nn.Module):
    """A torch RNN/LSTM/GRU returning its output sequence."""

    def __init__(self, kind: str, **kwargs) -> None:
        super().__init__()
        self.rnn = getattr(nn, kind)(6, 10, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def export(model: nn.Module, example: tuple, path: Path, opset: int = 17, dynamic_batch: bool = True) -> Path:
    """Export in eval mode with input 'x' (and a symbolic batch dim when asked)."""
    model.eval()
    axes = {"x": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(path), dynamo=False, opset_version=opset, input_names=["x"],
                          dynamic_axes=axes)
    return path
