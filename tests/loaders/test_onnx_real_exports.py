"""Export forms real models take (issue 18): weights the exporter computes from initializers,
sequence-valued ops, integer ids reshaped before an embedding, initializers that are no weights,
and masked attention. Each is built here with torch 2.13's legacy exporter or onnx.helper."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from gradaudit.cli import main
from gradaudit.graph import weight_layers
from gradaudit.loaders.onnx_loader import input_dependent, input_specs, load_onnx, meta_trace
from gradaudit.onnx_exec import OnnxModule


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


def _sequence_model() -> onnx.ModelProto:
    """x @ W1, split into a sequence of three pieces (Mamba's tensor_split), the second @ W2."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 12)) / np.sqrt(8)).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal((4, 4)) / 2).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
        numpy_helper.from_array(np.array(4, dtype=np.int64), "four"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="proj"),
        helper.make_node("SplitToSequence", ["h", "four"], ["pieces"], name="split", axis=1),
        helper.make_node("SequenceAt", ["pieces", "one"], ["piece"], name="at"),
        helper.make_node("MatMul", ["piece", "w2"], ["y"], name="out"),
    ]
    graph = helper.make_graph(nodes, "sequence", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("static_only", [False, True])
def test_a_sequence_flows_through_tracing_and_the_static_estimate(capsys, tmp_path: Path, static_only: bool) -> None:
    path = tmp_path / "sequence.onnx"
    onnx.save(_sequence_model(), str(path))
    code, report = _audit(capsys, str(path), *(["--static-only"] if static_only else []))
    assert code == 0 and report["model"]["weight_layers"] == 2
    assert "GA501" not in {f["code"] for f in report["findings"]}  # the sequence ops have gain rules


def test_the_meta_trace_keeps_sequences_for_the_ops_that_read_them() -> None:
    """With no shape inference to stand in, every step runs on meta: SequenceAt reads the tuple."""
    model = _sequence_model()
    module = OnnxModule(model)
    specs = input_specs(model, None, 2)
    traced = meta_trace(module, specs, input_dependent(["x"], model.graph.node), declared={})
    assert traced is not None and traced[0]["y"][0] == (2, 4)
