"""Export forms real models take (issue 18): weights the exporter computes from initializers,
sequence-valued ops, integer ids reshaped before an embedding, initializers that are no weights,
and masked attention. Each is built here with torch 2.13's legacy exporter or onnx.helper."""

from __future__ import annotations

import json
import math
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
from gradaudit.remedies.edits import Edit, WeightRecommendation, edited


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
    path = _export(recurrent_factory(cell, False), (torch.randn(2, 5, 8),), tmp_path / "rnn.onnx",
                   do_constant_folding=False)
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


class ReshapedIds(nn.Module):
    """GPT-2 reshapes its ids (`input_ids.view(-1, n)`) before the embedding, and ties the head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.mix = nn.Linear(16, 16)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.mix(self.embed(ids.view(-1, ids.shape[-1]))))
        return h @ self.embed.weight.t()


def test_token_ids_reshaped_before_the_embedding_keep_the_graph_connected(capsys, tmp_path: Path) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ReshapedIds().eval(), (torch.randint(0, 50, (2, 8)),), str(tmp_path / "ids.onnx"),
                          dynamo=False,
                          input_names=["ids"], do_constant_folding=False)
    graph = load_onnx(str(tmp_path / "ids.onnx")).graph
    ops = [graph.nodes[n]["op"] for n in graph.nodes]
    assert ops.count("embedding") == 1 and ops.count("linear") == 2  # the tied head reads the table through a Transpose
    assert [layer.param for layer in weight_layers(graph)] == ["embed_weight", "mix_weight"]
    code, report = _audit(capsys, str(tmp_path / "ids.onnx"))
    assert code == 0 and report["gradient_flow"]["dynamic"]["log10_ratio_first_last"] is not None


def _rms_norm_model(exponent: float) -> onnx.ModelProto:
    """RMSNorm as the dynamo exporter writes it: the Pow exponent, the epsilon and a Clip bound
    are float initializers; a Resize-free MLP around it."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 8)) / np.sqrt(8)).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal((8, 4)) / np.sqrt(8)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array(exponent, dtype=np.float32), "exponent"),
        numpy_helper.from_array(np.array(1e-6, dtype=np.float32), "eps"),
        numpy_helper.from_array(np.array(-6.0, dtype=np.float32), "low"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Pow", ["h", "exponent"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "axes"], ["ms"]),
        helper.make_node("Add", ["ms", "eps"], ["ms_eps"]),
        helper.make_node("Sqrt", ["ms_eps"], ["rms"]),
        helper.make_node("Div", ["h", "rms"], ["normed"]),
        helper.make_node("Clip", ["normed", "low"], ["clipped"]),
        helper.make_node("MatMul", ["clipped", "w2"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "rms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_initializers_read_as_settings_are_buffers_not_parameters(capsys, tmp_path: Path) -> None:
    """Trained, the exponent took d(h^p)/dp = h^p ln h: NaN for every negative h (GA105)."""
    module = OnnxModule(_rms_norm_model(2.0))
    assert set(module.param_names) == {"w1", "w2"}
    assert {"exponent", "eps", "low"} <= set(module.buffer_names)
    onnx.save(_rms_norm_model(2.0), str(tmp_path / "rms.onnx"))
    code, report = _audit(capsys, str(tmp_path / "rms.onnx"))
    assert code == 0 and not report["gradient_flow"]["dynamic"]["nonfinite"]


def test_a_fully_masked_attention_row_gives_nan_forward_and_no_nan_backward() -> None:
    """The exporter's safe softmax, Where(IsNaN(Softmax(s)), 0, Softmax(s)), as PyTorch's
    attention computes it: zeros for a row with every key masked, finite gradients."""
    scores = torch.tensor([[0.5, -1.0, 2.0], [-math.inf] * 3]).requires_grad_()
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Softmax", ["s"], ["p"], axis=-1), helper.make_node("IsNaN", ["p"], ["bad"]),
         helper.make_node("Where", ["bad", "zero", "p"], ["y"])], "attention",
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")]),
                              opset_imports=[helper.make_opsetid("", 17)])
    probs = OnnxModule(model)(scores)
    (probs * torch.arange(3.0)).sum().backward()
    expected = torch.softmax(scores[0].detach().requires_grad_(), -1)
    assert (torch.allclose(probs[0], expected.detach())
            and torch.equal(probs[1], torch.zeros(3)))  # exact: a copy of zeros
    assert (torch.isfinite(scores.grad).all()
            and torch.equal(scores.grad[1], torch.zeros(3)))  # exact: a masked row takes no gradient


def test_a_model_with_one_weight_layer_fails_the_gate_unless_told_otherwise(capsys, monkeypatch,
                                                                            tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = _export(nn.Sequential(nn.Linear(6, 3), nn.Tanh()), (torch.randn(2, 6),), tmp_path / "probe.onnx")
    code, report = _audit(capsys, path)
    assert code == 1 and [(f["code"], f["severity"]) for f in report["findings"]
                          if f["code"] == "GA504"] == [("GA504", "error")]
    monkeypatch.setenv("GRADAUDIT_IGNORE", "GA504")
    code, report = _audit(capsys, path)
    assert code == 0 and "GA504" not in {f["code"] for f in report["findings"]}


def test_a_computed_weight_is_measured_but_no_edit_reaches_it(tmp_path: Path) -> None:
    """Recommendations on a weight the graph computes are not verified or applied (no crash)."""
    path = _export(recurrent_factory("LSTM", True), (torch.randn(2, 5, 8),), tmp_path / "rnn.onnx",
                   do_constant_folding=False)
    handle = load_onnx(path)
    computed, plain = [layer.param for layer in weight_layers(handle.graph)][::4]

    def recommendation(param: str) -> WeightRecommendation:
        return WeightRecommendation("reinitialization", [param], "", "", edits=(Edit("scale", param, 0.5),))

    assert not edited(recommendation(computed), handle.module) and edited(recommendation(computed))
    assert edited(recommendation(plain), handle.module)
