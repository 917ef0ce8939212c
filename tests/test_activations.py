"""One declaration per activation (gradaudit.activations) reaches every reader: torch's own
modules agree with the formula at torch's defaults, the ONNX executor agrees with onnx's reference
implementation at ONNX's defaults, both loaders map every spelling onto the declared name, and the
static quadrature integrates each."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from gradaudit.activations import ACTIVATIONS, DECLARED, ONNX_ACTIVATIONS, RECTIFYING, SATURATING, Activation
from gradaudit.loaders.onnx_layer_kinds import NodeView, Operand, node_kind
from gradaudit.loaders.torch_functions import function_rule
from gradaudit.loaders.torch_ops import Call, module_rule
from gradaudit.onnx_exec.op_registry import OPS, OpContext
from gradaudit.static.moments import Moments
from gradaudit.static.quadrature import activation_stats

X = torch.linspace(-5.0, 5.0, 101, dtype=torch.float64)
MODULES = [(declared, name) for declared in DECLARED for name in declared.torch_modules]
FUNCTIONS = [(declared, name) for declared in DECLARED for name in declared.torch_functions]


@pytest.mark.parametrize("declared, name", MODULES, ids=[name for _, name in MODULES])
def test_torch_modules_compute_the_formula_and_map_onto_the_name(declared: Activation, name: str) -> None:
    module = getattr(nn, name)()
    torch.testing.assert_close(declared.phi()(X), module(X), rtol=1e-12, atol=1e-12)
    spec = module_rule(module)(module, None)
    assert (spec.op, spec.fn) == ("activation", declared.name)
    assert set(spec.attrs) == set(declared.module_attrs)


@pytest.mark.parametrize("declared, name", FUNCTIONS, ids=[name for _, name in FUNCTIONS])
def test_torch_functions_map_onto_the_name_with_their_arguments(declared: Activation, name: str) -> None:
    call = Call(name, (X,), {}, (True,), None, lambda *a: None, lambda *a: None)
    spec = function_rule(name)(call)
    assert (spec.op, spec.fn) == ("activation", declared.name)
    assert spec.attrs == {key: declared.params[key] for key in declared.call_args}
    assert function_rule(name + "_") is function_rule(name)  # the in-place spelling


@pytest.mark.parametrize("op_type", sorted(ONNX_ACTIVATIONS))
def test_the_executor_runs_the_onnx_op_as_onnx_defines_it(op_type: str) -> None:
    declared = ONNX_ACTIVATIONS[op_type]
    node = helper.make_node(op_type, ["x"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [101])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [101])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx.defs.onnx_opset_version())])
    (expected,) = ReferenceEvaluator(model).run(None, {"x": X.numpy()})
    ran = OPS[op_type].fn([X], {}, OpContext(opset=onnx.defs.onnx_opset_version(), train_mode=True))
    np.testing.assert_allclose(ran.numpy(), expected, rtol=1e-6, atol=1e-7)
    view = NodeView(op_type, {}, [Operand("x", source="x")], (101,), onnx.defs.onnx_opset_version())
    kind = node_kind(view)
    assert (kind.op, kind.fn, kind.attrs) == ("activation", declared.name, declared.resolved(onnx=True))


def test_onnx_defaults_differ_from_torchs_only_where_declared() -> None:
    """HardSigmoid: torch's slope is 1/6, ONNX's 0.2; a node's own attribute wins over both."""
    hardsigmoid = ONNX_ACTIVATIONS["HardSigmoid"]
    assert hardsigmoid.resolved()["alpha"] == pytest.approx(1 / 6, rel=1e-12)
    assert hardsigmoid.resolved(onnx=True) == {"alpha": 0.2, "beta": 0.5}
    assert hardsigmoid.resolved({"alpha": 0.3}, onnx=True) == {"alpha": 0.3, "beta": 0.5}


@pytest.mark.parametrize("fn", sorted(ACTIVATIONS))
def test_the_quadrature_covers_every_declared_activation(fn: str) -> None:
    stats = activation_stats(fn, None, Moments(0.0, 1.0, 0.0))
    assert math.isfinite(stats.out.q) and stats.out.q > 0 and math.isfinite(stats.dphi_sq) and stats.dphi_sq > 0


def test_flags_follow_the_derivative() -> None:
    """Rectifying ones have phi' = 0 on a half-line; saturating ones have phi' -> 0 for large |z|."""
    z = torch.linspace(-30.0, 30.0, 601, dtype=torch.float64, requires_grad=True)
    for declared in DECLARED:
        (slope,) = torch.autograd.grad(declared.phi()(z).sum(), z)
        if declared.name in RECTIFYING:
            assert (slope[:250] == 0).all() or (slope[350:] == 0).all(), declared.name  # exact: a flat piece
        if declared.name in SATURATING:
            assert slope[-1].abs() < 0.01 * slope[305].abs(), declared.name  # z = 30 against z = 0.5
