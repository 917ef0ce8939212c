"""Structural rewrites: each computes the intended function on the ONNX route (checked with
onnxruntime against numpy) and on the torch route (module surgery on a deep copy)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from gradaudit.loaders.torch_loader import from_module
from gradaudit.remedies.rewrite_onnx import rewritten
from gradaudit.remedies.rewrite_torch import ScaledSkip, patch, restructured_module
from gradaudit.remedies.structure import Rewrite, activation_swaps, norm_removals, norm_rewrite, skip_rewrites

WIDTH, BATCH = 6, 5
RNG = np.random.default_rng(0)
WEIGHTS = {name: (RNG.normal(size=(WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32) for name in ("w1", "w2")}
BN_SCALE, BN_SHIFT = np.full(WIDTH, 2.0, np.float32), np.full(WIDTH, 0.5, np.float32)


def _plain_stack() -> onnx.ModelProto:
    """x -> g1 (Gemm) -> bn -> act (Sigmoid) -> g2 (Gemm) -> out, eval-mode BN with unit statistics."""
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h1"], name="g1", transB=1),
        helper.make_node("BatchNormalization", ["h1", "bn_s", "bn_b", "bn_m", "bn_v"], ["h2"], name="bn", epsilon=0.0),
        helper.make_node("Sigmoid", ["h2"], ["h3"], name="act"),
        helper.make_node("Gemm", ["h3", "w2"], ["out"], name="g2", transB=1),
    ]
    stats = {
        "bn_s": BN_SCALE,
        "bn_b": BN_SHIFT,
        "bn_m": np.zeros(WIDTH, np.float32),
        "bn_v": np.ones(WIDTH, np.float32),
    }
    initializers = [numpy_helper.from_array(v, k) for k, v in {**WEIGHTS, **stats}.items()]
    graph = helper.make_graph(nodes, "plain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, WIDTH])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [BATCH, WIDTH])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


X = RNG.normal(size=(BATCH, WIDTH)).astype(np.float32)
W1, W2 = WEIGHTS["w1"], WEIGHTS["w2"]


@pytest.mark.parametrize(("rewrite", "expected"), [
    (Rewrite("remove_norm", "bn"), lambda x: _sigmoid(x @ W1.T) @ W2.T),
    (Rewrite("swap_activation", "act", "relu"), lambda x: np.maximum(BN_SCALE * (x @ W1.T) + BN_SHIFT, 0) @ W2.T),
    (Rewrite("add_skip", "g1", "g2", scale=0.25),
     lambda x: (x + 0.25 * _sigmoid(BN_SCALE * (x @ W1.T) + BN_SHIFT)) @ W2.T),
], ids=lambda v: v.how if isinstance(v, Rewrite) else "")
def test_onnx_rewrite_computes_the_intended_function(rewrite, expected):
    model = _plain_stack()
    changed = rewritten(model, (rewrite,))
    np.testing.assert_allclose(_run(changed, X), expected(X), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_run(model, X), _sigmoid(BN_SCALE * (X @ W1.T) + BN_SHIFT) @ W2.T, rtol=1e-4,
                               atol=1e-5)  # the original is a copy's source, never changed


def test_onnx_inserted_norms_start_as_identity_affine():
    model = _plain_stack()
    at_output = rewritten(model, (Rewrite("insert_norm", "g2", "layer", WIDTH),))
    assert [o.name for o in at_output.graph.output] == ["out"]  # the norm takes over the output's name
    y = _sigmoid(BN_SCALE * (X @ W1.T) + BN_SHIFT) @ W2.T
    expected = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(_run(at_output, X), expected, rtol=1e-4, atol=1e-4)
    changed = rewritten(model, (Rewrite("insert_norm", "g1", "layer", WIDTH),))
    h = X @ W1.T
    normed = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(_run(changed, X), _sigmoid(BN_SCALE * normed + BN_SHIFT) @ W2.T, rtol=1e-4, atol=1e-5)
    batch = rewritten(model, (Rewrite("insert_norm", "g1", "batch", WIDTH),))
    inserted = [n for n in batch.graph.node if n.op_type == "BatchNormalization" and n.name != "bn"]
    values = {t.name: numpy_helper.to_array(t) for t in batch.graph.initializer}
    assert [values[name].tolist() for name in inserted[0].input[1:]] == [[1.0] * WIDTH, [0.0] * WIDTH,
                                                                        [0.0] * WIDTH, [1.0] * WIDTH]  # exact literals


def test_onnx_removed_norm_drops_its_initializers():
    changed = rewritten(_plain_stack(), (Rewrite("remove_norm", "bn"),))
    assert {t.name for t in changed.graph.initializer} == {"w1", "w2"}


class Stack(nn.Sequential):
    def __init__(self):
        torch.manual_seed(0)
        super().__init__(nn.Linear(WIDTH, WIDTH), nn.BatchNorm1d(WIDTH), nn.Sigmoid(),
                         nn.Linear(WIDTH, WIDTH), nn.BatchNorm1d(WIDTH), nn.Sigmoid(), nn.Linear(WIDTH, 3))


def test_torch_surgery_on_a_deep_copy():
    model, x = Stack().eval(), torch.randn(BATCH, WIDTH)
    before = model(x).detach()
    rewrites = (Rewrite("add_skip", "0", "3", scale=0.5), Rewrite("swap_activation", "5", "relu"),
                Rewrite("remove_norm", "4"))
    changed = restructured_module(model, (), rewrites, seed=0, ranks={}).eval()
    assert (
        isinstance(changed[0], ScaledSkip)
        and isinstance(changed[1], nn.Identity)
        and isinstance(changed[2], nn.Identity)
    )
    with torch.no_grad():
        h = x + 0.5 * model[2](model[1](model[0](x)))
        expected = model[6](torch.relu(model[3](h)))
        torch.testing.assert_close(changed(x), expected)
        torch.testing.assert_close(model(x), before)  # the user's module is untouched
    assert "- Sigmoid()" in patch(model, rewrites[1:2], {}) and "+ ReLU()" in patch(model, rewrites[1:2], {})


def test_proposals_read_the_layer_graph():
    handle = from_module(Stack(), (torch.randn(BATCH, WIDTH),))
    graph: nx.DiGraph = handle.graph
    assert [(r.node, r.to) for r in skip_rewrites(graph)] == [("0", "3"), ("3", "6")]
    assert all(r.scale == pytest.approx(2 ** -0.5) for r in skip_rewrites(graph))
    assert [r.node for r in norm_removals(graph)] == ["1", "4"]
    assert [(r.node, layer) for r, layer in activation_swaps(graph)] == []  # sigmoid follows a norm, not the layer


def test_no_norm_is_proposed_after_the_head():
    """A norm on the model's output pins every example's outputs to zero mean and unit spread."""
    graph = from_module(Stack(), (torch.randn(BATCH, WIDTH),)).graph
    ids = {data["name"]: node for node, data in graph.nodes(data=True)}
    assert norm_rewrite(graph, ids["6"]) is None
    assert norm_rewrite(graph, ids["3"]) == Rewrite("insert_norm", "3", "layer", WIDTH)


def test_no_skips_or_removals_where_branches_are_summed():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.norm, self.b = nn.Linear(WIDTH, WIDTH), nn.LayerNorm(WIDTH), nn.Linear(WIDTH, WIDTH)

        def forward(self, x):
            return self.b(x + self.norm(self.a(x)))

    graph = from_module(Residual(), (torch.randn(BATCH, WIDTH),)).graph
    assert skip_rewrites(graph) == () and norm_removals(graph) == ()
