"""An operator is one registration: how it runs, and which LayerGraph mapping it takes (or why it
has none). The loaders' mappings are looked up by the name the registration gives."""

from __future__ import annotations

import pytest
import torch
from onnx import TensorProto, helper

from gradaudit.loaders.onnx_layer_kinds import LAYER_MAPPINGS, NodeView, Operand, node_kind
from gradaudit.onnx_exec import onnx_to_torch
from gradaudit.onnx_exec.op_registry import OPS, register


def test_every_named_mapping_exists_and_every_mapping_is_named() -> None:
    named = {spec.layer for spec in OPS.values() if spec.layer}
    assert named == set(LAYER_MAPPINGS)


def test_an_op_maps_into_the_layergraph_or_says_why_not() -> None:
    assert not [op for op, spec in OPS.items() if spec.layer and spec.no_gain]
    assert OPS["Gemm"].layer == "gemm" and OPS["ArgMax"].no_gain.startswith("non-differentiable")
    with pytest.raises(ValueError, match="never both"):
        register("Both", layer="reshape", no_gain="a reason")


@pytest.fixture
def copy_op():
    """A throwaway operator declared in one registration: it runs, and it maps as a copy."""
    register("TestOnlyCopy", layer="identity")(lambda inputs, attrs, ctx: inputs[0].clone())
    yield "TestOnlyCopy"
    del OPS["TestOnlyCopy"]


def test_one_registration_runs_and_maps_a_new_op(copy_op: str) -> None:
    node = helper.make_node(copy_op, ["x"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = torch.arange(6.0).reshape(2, 3)
    assert torch.equal(onnx_to_torch(model)(x), x)  # exact: a copy
    kind = node_kind(NodeView(copy_op, {}, [Operand("x", source="x")], (2, 3), 17))
    assert kind.op == "identity"
    assert node_kind(NodeView("NotRegistered", {}, [Operand("x", source="x")], (2, 3), 17)).op == "unknown"
