"""The structural validator and the memory check on ModelProtos, without the CLI around them."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import helper

from gradaudit.errors import InputError
from gradaudit.loaders.onnx_validate import check_memory, structural_problem
from gradaudit.onnx_exec.op_registry import MAX_OPSET, MIN_OPSET
from tests.hostile import models


def test_valid_model_has_no_problem():
    assert structural_problem(models.mlp()) == ""
    assert structural_problem(models.deep_chain(50)) == ""


def test_cycle_is_named_node_by_node():
    problem = structural_problem(models.with_cycle())
    assert problem == "the graph has a cycle: node 'add' (Add) -> node 'loop_back' (Relu) -> node 'add' (Add)"


def test_unsorted_acyclic_graph_is_told_apart_from_a_cycle():
    model = models.mlp()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([nodes[1], nodes[0], nodes[2]])
    assert "not topologically sorted" in structural_problem(model)


def test_dangling_read_and_undefined_output():
    assert "'W_missing', which no graph input" in structural_problem(models.with_dangling_input())
    assert "graph output 'z_never_made'" in structural_problem(models.with_missing_output())


@pytest.mark.parametrize(
    "build, text",
    [
        (models.with_duplicate_output, "tensor 'y' is defined twice: by node 'a' (Relu) and by node 'b' (Sigmoid)"),
        (models.with_duplicate_initializer, "tensor 'W1' is defined twice: by an initializer and by an initializer"),
    ],
)
def test_duplicate_definitions(build, text):
    assert structural_problem(build()) == text


def test_input_with_a_default_initializer_is_not_a_duplicate():
    """IR < 4 lists initializers among the graph inputs; that is a default, not a clash."""
    model = models.mlp()
    model.graph.input.append(helper.make_tensor_value_info("W1", 1, [models.FEATURES, models.FEATURES]))
    assert structural_problem(model) == ""


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, MAX_OPSET + 1])
def test_opset_outside_the_supported_range(opset: int):
    assert f"opset {opset}" in structural_problem(models.with_opset(opset))


@pytest.mark.parametrize("attribute, value", [("group", 0), ("strides", [1, 0]), ("kernel_shape", [-1, 3])])
def test_size_attributes_must_be_positive(attribute: str, value):
    model = models.mlp()
    model.graph.node[0].attribute.append(helper.make_attribute(attribute, value))
    assert f"{attribute} = " in structural_problem(model) and "must be positive" in structural_problem(model)


def test_unsupported_initializer_type():
    model = models.mlp()
    model.graph.initializer.append(helper.make_tensor("names", 8, [1], [b"x"]))  # STRING
    assert "'names' has element type STRING" in structural_problem(model)


def test_memory_check_names_the_largest_tensor_and_counts_the_sum():
    model = models.mlp()
    shapes = {"x": ((8, 4), torch.float32), "h": ((8, 4), torch.float32)}
    check_memory(model, shapes, cap=512, label="m.onnx")  # 2 x 128 B activations, 2 x 128 B weights + grads
    with pytest.raises(InputError, match=r"m.onnx: tensor 'x' would need 128 B, above the memory cap of 100 B"):
        check_memory(model, shapes, cap=100, label="m.onnx")
    with pytest.raises(InputError, match="the probe's tensors"):
        check_memory(model, shapes, cap=300, label="m.onnx")


def test_initializer_must_store_exactly_its_declared_values():
    """The checker refuses too little data but accepts too much; the executor would then crash."""
    model = models.mlp()
    model.graph.initializer[0].dims[:] = [3]
    assert structural_problem(model) == "initializer 'W1' declares shape [3] (3 values) but stores 16"
    model.graph.initializer[0].dims[:] = [-4, -4]
    assert "negative dimension" in structural_problem(model)


def test_names_and_string_attributes_must_be_utf8():
    """A flipped byte in a name makes protobuf return bytes, which torch and the reports cannot use."""
    data = models.mlp().SerializeToString().replace(b"fc1", b"f\xa61")
    assert (structural_problem(onnx.load_from_string(data)) == "the model holds a name that is not valid UTF-8: "
                                                               "b'f\\xa61'")
    model = models.mlp()
    model.graph.node[1].attribute.append(helper.make_attribute("mode", b"\xff\xfe"))
    assert structural_problem(model) == "node 'act1' (Relu) has a string attribute 'mode' that is not valid UTF-8"
