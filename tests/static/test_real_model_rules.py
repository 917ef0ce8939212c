"""Gain rules real architectures need (issue 18), each checked against a real backward pass.

Mamba's selective scan multiplies a positive step size by a negative constant before `exp`, and
the dynamo exporter writes its softplus as Where(x > 20, x, Softplus(x)); read without the sign
or through the wrong branch, the scan's 16 steps compounded to a static ratio of 10^+31.7.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper, save
from torch import nn

from gradaudit.loaders.onnx_loader import load_onnx
from gradaudit.loaders.torch_loader import from_module
from gradaudit.pipeline import AuditOptions, run_audit
from gradaudit.static import estimate

WIDTH = 16


def mamba_step_bias(width: int) -> torch.Tensor:
    """Mamba's initial step sizes: softplus^-1 of dt, log-uniform on [0.001, 0.1]."""
    dt = torch.exp(torch.rand(width) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
    return dt + torch.log(-torch.expm1(-dt))


def _static_and_measured(result) -> tuple[float, float]:
    return result.static.log10_ratio_first_last, result.probe.log10_ratio_first_last


def test_a_negative_constant_keeps_its_sign_before_exp():
    """exp(softplus(z) * A) with A = -(1..16) and Mamba's initial step sizes: a decay below 1.
    Read by its constant's RMS alone (a positive factor of 9.7) the exponent's mean had the wrong
    sign; with it, the predicted RMS of the decay and of its backward factor exp(.) match autograd's."""
    torch.manual_seed(0)
    step = nn.Linear(WIDTH, WIDTH)
    with torch.no_grad():
        step.bias.copy_(mamba_step_bias(WIDTH))
    x = torch.randn(4096, WIDTH)
    handle = from_module(nn.Sequential(step, nn.Softplus(), Scaled(-torch.arange(1.0, WIDTH + 1.0))), (x,))
    with torch.no_grad():
        delta = F.softplus(step(x))
    result = estimate(handle.graph, handle.inputs)
    exp_node = next(n for n, d in handle.graph.nodes(data=True) if d["fn"] == "exp")
    (rate_node,) = handle.graph.predecessors(exp_node)
    assert result.nodes[rate_node].mean == pytest.approx(
        float((delta * -torch.arange(1.0, WIDTH + 1.0)).mean()), rel=0.3
    )
    rate = (delta * -torch.arange(1.0, WIDTH + 1.0)).requires_grad_()
    decay = torch.exp(rate)
    (grad,) = torch.autograd.grad(decay, rate, torch.ones_like(decay))
    assert 0.5 * math.log10(result.nodes[exp_node].q) == pytest.approx(
        math.log10(decay.pow(2).mean().sqrt().item()), abs=0.3
    )
    assert result.nodes[exp_node].log10_gain == pytest.approx(math.log10(grad.pow(2).mean().sqrt().item()), abs=0.3)


class Scaled(nn.Module):
    """exp(x * c) for a constant c (a selective scan's decay)."""

    def __init__(self, factor: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("factor", factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x * self.factor)


def _scan_step_onnx(path) -> str:
    """One scan step as the dynamo exporter writes it: softplus as its threshold switch."""
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((WIDTH, WIDTH)) / math.sqrt(WIDTH)).astype(np.float32)
    torch.manual_seed(0)
    bias = mamba_step_bias(WIDTH).numpy()
    head = (rng.standard_normal((WIDTH, WIDTH)) / math.sqrt(WIDTH)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["projected"]),
        helper.make_node("Add", ["projected", "bias"], ["z"]),
        helper.make_node("Greater", ["z", "threshold"], ["large"]),
        helper.make_node("Softplus", ["z"], ["soft"]),
        helper.make_node("Where", ["large", "z", "soft"], ["delta"]),
        helper.make_node("Mul", ["delta", "decay_rate"], ["rate"]),
        helper.make_node("Exp", ["rate"], ["decay"]),
        helper.make_node("Mul", ["decay", "x"], ["kept"]),
        helper.make_node("MatMul", ["kept", "head"], ["y"]),
    ]
    initializers = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(head, "head"),
        numpy_helper.from_array(np.array(20.0, dtype=np.float32), "threshold"),
        numpy_helper.from_array(-np.arange(1.0, WIDTH + 1.0, dtype=np.float32), "decay_rate"),
    ]
    graph = helper.make_graph(nodes, "scan_step", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, WIDTH])], initializers)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_a_threshold_switch_reads_as_its_function(tmp_path):
    """ONNX route: Where(z > 20, z, Softplus(z)) is softplus (the estimate is whole, no
    partial note), and the static first/last ratio agrees with the probe's backward pass."""
    handle = load_onnx(_scan_step_onnx(tmp_path / "scan.onnx"))
    where = next(n for n, d in handle.graph.nodes(data=True) if d["source"] == "Where")
    assert handle.graph.nodes[where]["op"] == "identity"
    assert [handle.graph.nodes[p]["source"] for p in handle.graph.predecessors(where)] == ["Softplus"]
    result = run_audit(handle, AuditOptions())
    static, measured = _static_and_measured(result)
    assert not result.static.partial
    assert abs(static - measured) <= 0.5


class Quotient(nn.Module):
    """a / b of two activations, b a positive normaliser (RWKV's WKV divides a weighted sum of
    values by the sum of its weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.numerator, self.denominator = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.numerator(x) / (F.softplus(self.denominator(x)) + 1.0)


def test_a_quotient_of_activations_matches_autograd():
    """The divide rule: forward RMS of a / b and the backward gains 1/b and a/b^2 (the larger is
    the node's gain) against autograd; it had no rule and passed a through unchanged."""
    torch.manual_seed(0)
    model, x = Quotient(), torch.randn(4096, WIDTH)
    handle = from_module(model, (x,))
    result = estimate(handle.graph, handle.inputs)
    (node,) = [n for n, d in handle.graph.nodes(data=True) if d["op"] == "divide"]
    a = model.numerator(x).detach().requires_grad_()
    b = (F.softplus(model.denominator(x)) + 1.0).detach().requires_grad_()
    y = a / b
    grad_a, grad_b = torch.autograd.grad(y, (a, b), torch.ones_like(y))
    measured_gain = max(grad_a.pow(2).mean(), grad_b.pow(2).mean()).sqrt().item()
    assert 0.5 * math.log10(result.nodes[node].q) == pytest.approx(math.log10(y.pow(2).mean().sqrt().item()), abs=0.2)
    assert result.nodes[node].log10_gain == pytest.approx(math.log10(measured_gain), abs=0.3)


def _stable_exp_onnx(path, spread: float) -> tuple[str, np.ndarray, np.ndarray]:
    """w = Exp(a - Max(a, b)) and Max(a, b) of two projections of x, b `spread` times wider, with
    `a + 0` written twice as RWKV's export writes `key + time_first` twice."""
    rng = np.random.default_rng(1)
    wa = (rng.standard_normal((WIDTH, WIDTH)) / math.sqrt(WIDTH)).astype(np.float32)
    wb = (spread * rng.standard_normal((WIDTH, WIDTH)) / math.sqrt(WIDTH)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "wa"], ["projected"]),
        helper.make_node("Add", ["projected", "zero"], ["a"]),
        helper.make_node("Add", ["projected", "zero"], ["a_again"]),
        helper.make_node("MatMul", ["x", "wb"], ["b"]),
        helper.make_node("Max", ["b", "a"], ["m"]),
        helper.make_node("Sub", ["a_again", "m"], ["gap"]),
        helper.make_node("Exp", ["gap"], ["w"]),
        helper.make_node("Add", ["w", "m"], ["y"]),
    ]
    initializers = [numpy_helper.from_array(wa, "wa"), numpy_helper.from_array(wb, "wb"),
                    numpy_helper.from_array(np.zeros(WIDTH, dtype=np.float32), "zero")]
    graph = helper.make_graph(
        nodes,
        "stable_exp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4096, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4096, WIDTH])],
        initializers,
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path), wa, wb


@pytest.mark.parametrize("spread", [1.0, 30.0])
def test_a_stabilised_exp_and_a_maximum_match_autograd(tmp_path, spread):
    """Exp(a - Max(a, b)) is read whole as exp(min(a - b, 0)) in (0, 1] (RWKV's WKV weights: read
    as exp of a Gaussian difference they reached 10^+30 and the static ratio 10^+37.9); Max by
    Clark's moments. Forward RMS and backward gains against autograd, for b as wide as a and 30x
    wider."""
    path, wa, wb = _stable_exp_onnx(tmp_path / "stable.onnx", spread)
    handle = load_onnx(path, batch=4096)
    result = estimate(handle.graph, handle.inputs)
    kinds = {d["source"]: n for n, d in handle.graph.nodes(data=True)}
    assert handle.graph.nodes[kinds["Exp"]]["op"] == "exp_gap" and handle.graph.nodes[kinds["Max"]]["op"] == "maximum"
    x = torch.randn(4096, WIDTH, generator=torch.Generator().manual_seed(0))
    a, b = (x @ torch.from_numpy(wa)).requires_grad_(), (x @ torch.from_numpy(wb)).requires_grad_()
    m = torch.maximum(a, b)
    w = torch.exp(a - m)
    grad_a, grad_b = torch.autograd.grad(w, (a, b), torch.ones_like(w))

    def rms(t):
        return math.log10(t.pow(2).mean().sqrt().item())

    assert 0.5 * math.log10(result.nodes[kinds["Exp"]].q) == pytest.approx(rms(w), abs=0.2)
    assert 0.5 * math.log10(result.nodes[kinds["Max"]].q) == pytest.approx(rms(m), abs=0.2)
    assert result.nodes[kinds["Exp"]].log10_gain == pytest.approx(max(rms(grad_a), rms(grad_b)), abs=0.3)
    grad_a, grad_b = torch.autograd.grad(torch.maximum(a, b), (a, b), torch.ones_like(m))
    assert result.nodes[kinds["Max"]].log10_gain == pytest.approx(max(rms(grad_a), rms(grad_b)), abs=0.3)


class StabilisedScan(nn.Module):
    """RWKV's WKV in miniature, as transformers writes it: states from `zeros_like`, the running
    max from -1e38, `torch.maximum`, exp of the gap to the max, the output written into slices
    (which torch.fx cannot trace: the factory route takes torch.export), and a squared-ReLU
    feed-forward (`torch.square`)."""

    def __init__(self) -> None:
        super().__init__()
        self.key, self.value, self.head = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH)
        self.time_first = nn.Parameter(torch.full((WIDTH,), 0.3))
        self.time_decay = nn.Parameter(torch.full((WIDTH,), -0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key, value = self.key(x), self.value(x)
        output = torch.zeros_like(value)
        numerator, denominator = torch.zeros_like(key[:, 0]), torch.zeros_like(key[:, 0])
        peak = torch.zeros_like(key[:, 0]) - 1e38
        for step in range(x.shape[1]):
            k, v = key[:, step], value[:, step]
            top = torch.maximum(peak, k + self.time_first)
            e1, e2 = torch.exp(peak - top), torch.exp(k + self.time_first - top)
            output[:, step] = (e1 * numerator + e2 * v) / (e1 * denominator + e2)
            top = torch.maximum(peak + self.time_decay, k)
            e1, e2 = torch.exp(peak + self.time_decay - top), torch.exp(k - top)
            numerator, denominator, peak = e1 * numerator + e2 * v, e1 * denominator + e2, top
        return self.head(torch.square(torch.relu(output)))


def test_a_wkv_scan_through_torch_export_reads_every_op():
    """The factory route (torch.export graph) reads aten's maximum, square and zeros_like as the
    ONNX route reads Max, Mul(x, x) and ConstantOfShape: no node unknown, the stabilised exps read
    whole, and the static first/last ratio within 0.5 decades of the backward pass's (it was
    10^+37.9 against 10^+2.7 on transformers' RWKV: zeros_like passed as data, then -1e38 added)."""
    torch.manual_seed(0)
    model, x = StabilisedScan(), torch.randn(64, 8, WIDTH)
    handle = from_module(model, (x,))
    read_as = {(d["source"], d["op"]) for _, d in handle.graph.nodes(data=True)}
    assert not [pair for pair in read_as if pair[1] == "unknown"]
    assert {("maximum", "maximum"), ("exp", "exp_gap"), ("square", "mul")} <= read_as
    assert not [pair for pair in read_as if pair[0] == "zeros_like"]  # a constant, off the data path
    result = run_audit(handle, AuditOptions())
    static, measured = _static_and_measured(result)
    assert not result.static.partial
    assert abs(static - measured) <= 0.5


def test_a_maximum_of_an_activation_and_a_constant_matches_autograd():
    """max(x, c) for a constant c: the constant is an input node (as an add's), Clark's moments
    give the forward RMS and the larger of the gradient shares (x's and c's, as the node's gain
    is read), as autograd measures them."""
    torch.manual_seed(0)
    floor = torch.full((WIDTH,), 0.5)

    class Floored(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(WIDTH, WIDTH)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.maximum(self.layer(x), floor)

    model, x = Floored(), torch.randn(4096, WIDTH)
    handle = from_module(model, (x,))
    result = estimate(handle.graph, handle.inputs)
    (node,) = [n for n, d in handle.graph.nodes(data=True) if d["op"] == "maximum"]
    assert [handle.graph.nodes[p]["op"] for p in handle.graph.predecessors(node)].count("constant") == 1
    a = model.layer(x).detach().requires_grad_()
    c = floor.expand_as(a).clone().requires_grad_()  # the constant's gradient, element by element
    m = torch.maximum(a, c)

    def rms(t):
        return math.log10(t.pow(2).mean().sqrt().item())

    grad_a, grad_c = torch.autograd.grad(m, (a, c), torch.ones_like(m))
    assert 0.5 * math.log10(result.nodes[node].q) == pytest.approx(rms(m), abs=0.2)
    assert result.nodes[node].log10_gain == pytest.approx(max(rms(grad_a), rms(grad_c)), abs=0.3)
