"""Export forms real models take (issue 18): weights the exporter computes from initializers,
sequence-valued ops, integer ids reshaped before an embedding, initializers that are no weights,
and masked attention. Each is built here with torch 2.13's legacy exporter or onnx.helper."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from gradaudit.cli import main
from gradaudit.graph import weight_layers
from gradaudit.loaders.onnx_loader import load_onnx


def _export(model: nn.Module, example: tuple, path: Path, **options) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), example, str(path), dynamo=False, input_names=["x"], **options)
    return str(path)


def _audit(capsys, source: str, *extra: str) -> tuple[int, dict]:
    code = main(["check", source, "--format", "json", *extra])
    return code, json.loads(capsys.readouterr().out)


class Recurrent(nn.Module):
    """A recurrent layer and a linear head, as tests/e2e writes sequence models."""

    def __init__(self, cell: str, bidirectional: bool):
        super().__init__()
        self.rnn = getattr(nn, cell)(8, 16, num_layers=2, bidirectional=bidirectional, batch_first=True)
        self.head = nn.Linear(32 if bidirectional else 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


def recurrent_factory(cell: str, bidirectional: bool):
    torch.manual_seed(0)
    return Recurrent(cell, bidirectional)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_gates_reordered_by_the_exporter_stay_the_layers_weights(tmp_path: Path, cell: str) -> None:
    """Without constant folding the exporter feeds W as Unsqueeze(Concat(Slice(W), ...)): the
    rearranged tensor is the initializer's, so the layer keeps the initializer's name."""
    path = _export(recurrent_factory(cell, False), (torch.randn(2, 5, 8),), tmp_path / "rnn.onnx", do_constant_folding=False)
    names = [layer.param for layer in weight_layers(load_onnx(path).graph)]
    assert names == ["rnn_weight_ih_l0", "rnn_weight_hh_l0", "rnn_weight_ih_l1", "rnn_weight_hh_l1", "head_weight"]


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_weight_computed_from_several_initializers_is_measured_and_agrees_with_the_factory(capsys, tmp_path: Path,
                                                                                                  cell: str) -> None:
    """A bidirectional layer's W is Concat(forward W, reverse W): the probe differentiates the
    computed tensor, and the first/last ratio matches the factory route's (same weights, same
    batches; the ONNX layer's RMS pools both directions, which the factory lists apart)."""
    model = recurrent_factory(cell, True)
    path = _export(model, (torch.randn(2, 5, 8),), tmp_path / "rnn.onnx", do_constant_folding=False)
    source = Path(__file__).with_name("rnn_factories.py")
    code, exported = _audit(capsys, path)
    assert code == 0 and exported["model"]["weight_layers"] == 5
    layers = exported["gradient_flow"]["dynamic"]["layers"]
    assert all(layer["grad_rms"] > 0 for layer in layers)
    factory_code, factory = _audit(capsys, f"{source}:{cell.lower()}_bidirectional", "--input-shape", "2,5,8")
    assert factory_code == 0
    measured = [r["gradient_flow"]["dynamic"]["log10_ratio_first_last"] for r in (exported, factory)]
    assert measured[0] == pytest.approx(measured[1], abs=0.1)
