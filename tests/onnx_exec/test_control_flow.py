"""Control flow (If, Loop, Scan) runs like onnx's reference and keeps gradients through its
bodies, outer-scope weights included; outputs that carry no gradient are cut out of the loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from gradaudit.cli import main
from gradaudit.onnx_exec import OnnxModule
from gradaudit.onnx_exec.op_registry import OPS

RNG = np.random.default_rng(0)
W = (RNG.standard_normal((4, 4)) / 2).astype(np.float32)
FLOAT = TensorProto.FLOAT


def _value(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, FLOAT, shape)


def _model(nodes, inputs, outputs, inits=(), opset: int = 21) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _scan_rnn() -> onnx.ModelProto:
    """h_t = tanh(h_{t-1} + x_t @ W), W read from the outer scope; the h_t stack is the output."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["x_t", "W"], ["xw"]), helper.make_node("Add", ["h", "xw"], ["s"]),
         helper.make_node("Tanh", ["s"], ["h_next"]), helper.make_node("Identity", ["h_next"], ["y_t"])],
        "body", [_value("h", [2, 4]), _value("x_t", [2, 4])], [_value("h_next", [2, 4]), _value("y_t", [2, 4])],
    )  # fmt: skip
    node = helper.make_node("Scan", ["h0", "x"], ["h_last", "ys"], body=body, num_scan_inputs=1)
    return _model(
        [node],
        [_value("h0", [2, 4]), _value("x", [5, 2, 4])],
        [_value("h_last", [2, 4]), _value("ys", [5, 2, 4])],
        [numpy_helper.from_array(W, "W")],
    )


def _loop_power() -> onnx.ModelProto:
    """Three iterations of v <- v @ W (W from the outer scope), each v kept as a scan output."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["v", "W"], ["v_next"]), helper.make_node("Identity", ["cond"], ["cond_out"]),
         helper.make_node("Identity", ["v_next"], ["v_seen"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                 _value("v", [2, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), _value("v_next", [2, 4]),
         _value("v_seen", [2, 4])],
    )  # fmt: skip
    trips, keep = (
        numpy_helper.from_array(np.array(3, np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "keep"),
    )
    node = helper.make_node("Loop", ["trips", "keep", "v0"], ["v_last", "vs"], body=body)
    return _model([node], [_value("v0", [2, 4])], [_value("v_last", [2, 4]), _value("vs", [3, 2, 4])],
                  [numpy_helper.from_array(W, "W"), trips, keep])


def _branch(name: str, op: str) -> onnx.GraphProto:
    return helper.make_graph([helper.make_node(op, ["x"], [name])], name, [], [_value(name, [2, 4])])


def _if_model() -> onnx.ModelProto:
    node = helper.make_node("If", ["c"], ["y"], then_branch=_branch("t", "Relu"), else_branch=_branch("e", "Neg"))
    return _model(
        [node], [helper.make_tensor_value_info("c", TensorProto.BOOL, []), _value("x", [2, 4])], [_value("y", [2, 4])]
    )


def _run_both(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[list, list]:
    expected = ReferenceEvaluator(model).run(None, feeds)
    module = OnnxModule(model, train_mode=False)
    got = module(*[torch.from_numpy(feeds[n]) for n in module.input_names])
    return [g.detach().numpy() for g in (got if isinstance(got, tuple) else (got,))], expected


def test_scan_matches_the_reference_and_trains_its_outer_weight() -> None:
    feeds = {"h0": np.zeros((2, 4), np.float32), "x": RNG.standard_normal((5, 2, 4)).astype(np.float32)}
    got, expected = _run_both(_scan_rnn(), feeds)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    module = OnnxModule(_scan_rnn())
    assert "W" in module.param_names  # read only inside the body, still a parameter
    h_last, ys = module(torch.zeros(2, 4), torch.from_numpy(feeds["x"]))
    ys.sum().backward()
    assert float(getattr(module, module.param_names["W"]).grad.abs().sum()) > 0


def test_scan_gradient_matches_finite_differences() -> None:
    module = OnnxModule(_scan_rnn()).double()
    x = torch.from_numpy(RNG.standard_normal((5, 2, 4))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: module(torch.zeros(2, 4, dtype=torch.float64), x)[1], (x,))


def test_loop_matches_the_reference() -> None:
    """Scan outputs stack on a new first axis, as onnxruntime returns them; onnx's reference
    concatenates the per-iteration values instead (the same numbers, one axis fewer)."""
    feeds = {"v0": RNG.standard_normal((2, 4)).astype(np.float32)}
    (v_last, vs), (expected_last, expected_vs) = _run_both(_loop_power(), feeds)
    np.testing.assert_allclose(v_last, expected_last, rtol=1e-5, atol=1e-6)
    assert vs.shape == (3, 2, 4)
    np.testing.assert_allclose(vs.reshape(expected_vs.shape), expected_vs, rtol=1e-5, atol=1e-6)


def test_if_takes_the_branch_its_condition_names() -> None:
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    for condition in (True, False):
        got, expected = _run_both(_if_model(), {"c": np.array(condition), "x": x})
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-6, atol=1e-7)


def test_control_flow_ops_declare_why_they_have_no_gain_rule() -> None:
    for op in ("If", "Loop", "Scan", "Attention", "LinearAttention", "SwiGLU"):
        assert OPS[op].no_gain and OPS[op].layer is None
    for op in ("RMSNormalization", "Swish", "RotaryEmbedding", "TensorScatter", "CausalConvWithState"):
        assert OPS[op].layer


def _argmax_head() -> onnx.ModelProto:
    """A classifier whose only output is the ArgMax of its logits: no gradient flows from it."""
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["logits"], transB=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1),
    ]
    inits = [
        numpy_helper.from_array((RNG.standard_normal((3, 4)) / 2).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(3, np.float32), "b"),
    ]
    return _model(
        nodes, [_value("x", ["n", 4])], [helper.make_tensor_value_info("label", TensorProto.INT64, ["n"])], inits
    )


def test_a_non_differentiable_tail_is_cut_and_the_loss_reads_the_last_differentiable_tensor(tmp_path: Path) -> None:
    module = OnnxModule(_argmax_head())
    assert module.loss_outputs == ("logits",)
    path, report = tmp_path / "argmax.onnx", tmp_path / "audit.json"
    onnx.save(_argmax_head(), str(path))
    assert main(["check", str(path), "--json", str(report), "--quiet"]) in (0, 1)
    dynamic = json.loads(report.read_text())["gradient_flow"]["dynamic"]
    assert dynamic is not None and "on logits" in dynamic["loss"] and "label" in dynamic["loss"]
    assert dynamic["layers"] and all(layer["grad_rms"] > 0 for layer in dynamic["layers"])


def test_a_branch_reading_the_input_from_the_outer_scope_stays_on_the_data_path(tmp_path: Path) -> None:
    """The If reads x only inside its branches: the LayerGraph still connects it to the input
    and the probe's loss reads its output."""
    path, report = tmp_path / "if.onnx", tmp_path / "audit.json"
    model = _if_model()
    gemm = helper.make_node("Gemm", ["x0", "w", "b"], ["x"], transB=1)
    model.graph.node.insert(0, gemm)
    model.graph.input[1].name = "x0"
    model.graph.initializer.extend(
        [numpy_helper.from_array(W, "w"), numpy_helper.from_array(np.zeros(4, np.float32), "b")]
    )
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("c", TensorProto.BOOL, []))
    onnx.save(model, str(path))
    assert main(["check", str(path), "--json", str(report), "--quiet"]) in (0, 1)
    audit = json.loads(report.read_text())
    assert [layer["name"] for layer in audit["gradient_flow"]["dynamic"]["layers"]] == ["x"]


def test_outputs_through_top_k_indices_cut_to_its_input_and_shapes_add_nothing() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("TopK", ["r", "k"], ["values", "indices"], axis=1),
        helper.make_node("Shape", ["r"], ["shape"]),
    ]
    outputs = [_value("values", ["n", 2]), helper.make_tensor_value_info("indices", TensorProto.INT64, ["n", 2]),
               helper.make_tensor_value_info("shape", TensorProto.INT64, [2])]
    model = _model(nodes, [_value("x", ["n", 4])], outputs, [numpy_helper.from_array(np.array([2], np.int64), "k")])
    assert OnnxModule(model).loss_outputs == ("values", "r")
