"""THEORY.md's reference numbers, predicted by the static estimator and measured with autograd.

Each case builds a real torch network, turns it into a LayerGraph (tests/static/graphs.py),
compares the prediction with THEORY.md's number and with plain backward passes on the same
network (several seeds, widths >= 256, log space).
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradaudit.model import InputSpec
from gradaudit.static import estimate

from .graphs import Residual, sequential_graph

# models gradaudit fully supports: a gain or ONNX mapping that fails is a bug, not an unknown node
pytestmark = pytest.mark.usefixtures("strict_static")

WIDTH = 256


def predict(layers, shape, independent_output_gradient=False):
    graph = sequential_graph(layers, shape, independent_output_gradient)
    return graph, estimate(graph, [InputSpec("x", shape)])


def nodes_of(graph, op):
    return [n for n in sorted(graph.nodes, key=lambda n: graph.nodes[n]["order"]) if graph.nodes[n]["op"] == op]


def predicted_delta_ratio(graph, result, op="linear"):
    """log10(||delta_1||^2 / ||delta_L||^2) at the outputs of the first and last `op` nodes."""
    first, *_, last = nodes_of(graph, op)
    return math.log10(result.nodes[first].grad_sq / result.nodes[last].grad_sq)


def measured_delta_ratio(layers, shape, seed, probe=nn.Linear):
    """The same ratio from one float64 backward pass of a random output gradient.

    THEORY.md's simulations (and the mean-field prediction) take the output gradient independent
    of the output; a loss gradient containing y itself adds J^T J growth in deep ReLU nets.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    taps = []
    for module in layers:
        x = module(x)
        if isinstance(module, probe):
            x.retain_grad()
            taps.append(x)
    x.backward(torch.randn(x.shape, generator=gen, dtype=torch.float64))
    return math.log10(taps[0].grad.pow(2).sum().item() / taps[-1].grad.pow(2).sum().item())


def mlp(depth, act, init, bias_var=0.0, seed=0, width=WIDTH):
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth):
        linear = nn.Linear(width, width, bias=bias_var > 0).double()
        init(linear.weight)
        if bias_var > 0:
            nn.init.normal_(linear.bias, 0.0, math.sqrt(bias_var))
        layers += [linear, act()]
    return layers


def normal(var):
    return lambda w: nn.init.normal_(w, 0.0, math.sqrt(var / w.shape[1]))


# (name, activation, init, THEORY.md's predicted delta-ratio over 50 layers, its simulated value)
HE_CASES = [
    ("pytorch-default-relu", nn.ReLU, lambda w: None, -38.1, -38.0),
    ("he-relu", nn.ReLU, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), 0.0, 0.07),
    ("lecun-selu", nn.SELU, normal(1.0), 1.47, 1.56),
    ("he-silu", nn.SiLU, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), -13.5, -13.2),
]


@pytest.mark.parametrize("name, act, init, theory, simulated", HE_CASES, ids=[c[0] for c in HE_CASES])
def test_deep_mlp_delta_ratio(name, act, init, theory, simulated):
    predictions, measurements = [], []
    for seed in range(2):
        layers = mlp(50, act, init, seed=seed)
        graph, result = predict(layers, (64, WIDTH), independent_output_gradient=True)
        predictions.append(predicted_delta_ratio(graph, result))
        measurements.append(measured_delta_ratio(layers, (64, WIDTH), seed))
    assert np.mean(predictions) == pytest.approx(theory, abs=0.25)
    assert np.mean(measurements) == pytest.approx(np.mean(predictions), abs=max(0.6, 0.05 * abs(theory)))


def test_xavier_halves_and_kaiming_keeps_relu_forward_variance():
    for init, per_layer in (
        (nn.init.xavier_normal_, 0.5),
        (lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), 1.0),
    ):
        graph, result = predict(mlp(10, nn.ReLU, init), (32, WIDTH))
        pre = nodes_of(graph, "linear")
        ratios = [result.nodes[b].q / result.nodes[a].q for a, b in zip(pre, pre[1:])]
        assert np.exp(np.mean(np.log(ratios))) == pytest.approx(per_layer, rel=0.05)


def _tanh_fixed_point_chi(weight_var, depth=2000):
    """Independent mean-field reference: iterate q on Gauss-Hermite nodes, then chi_1."""
    z, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    q = 1.0
    for _ in range(depth):
        q = weight_var * float(w @ np.tanh(math.sqrt(q) * z) ** 2)
    return weight_var * float(w @ (1.0 - np.tanh(math.sqrt(q) * z) ** 2) ** 2)


@pytest.mark.parametrize("weight_var", [0.5, 1.0, 2.0, 4.0])
def test_tanh_chi1_at_depth(weight_var):
    """Per-layer delta gain deep in a tanh net (transient gone) within 5% of chi_1."""
    layers = mlp(120, nn.Tanh, normal(weight_var))
    graph, result = predict(layers, (32, WIDTH), independent_output_gradient=True)
    pre = nodes_of(graph, "linear")
    chi = result.nodes[pre[100]].grad_sq / result.nodes[pre[101]].grad_sq
    reference = _tanh_fixed_point_chi(weight_var)
    assert chi == pytest.approx(reference, rel=0.05)
    theory = {2.0: 1.106, 0.5: 0.5, 1.0: 1.0}.get(weight_var)
    if theory is not None:
        assert chi == pytest.approx(theory, rel=0.05)


# THEORY.md: tanh, L = 50, (sigma_w^2, sigma_b^2) -> delta-ratio predicted
MEAN_FIELD_TABLE = [
    ((1.5, 0.0), 0.29),
    ((1.0, 0.0), -1.84),
    ((0.8, 0.0), -5.58),
    ((4.0, 0.0), 6.41),
    ((1.76, 0.05), -0.34),
    ((2.0, 0.05), 0.69),
]


@pytest.mark.parametrize("variances, theory", MEAN_FIELD_TABLE, ids=[str(v) for v, _ in MEAN_FIELD_TABLE])
def test_mean_field_tanh_table(variances, theory):
    predictions, measurements = [], []
    for seed in range(2):
        layers = mlp(50, nn.Tanh, normal(variances[0]), bias_var=variances[1], seed=seed)
        graph, result = predict(layers, (64, WIDTH), independent_output_gradient=True)
        predictions.append(predicted_delta_ratio(graph, result))
        measurements.append(measured_delta_ratio(layers, (64, WIDTH), seed))
    assert np.mean(predictions) == pytest.approx(theory, abs=0.08)
    assert np.mean(measurements) == pytest.approx(np.mean(predictions), abs=0.35)


def test_tanh_weight_gradient_ratio_stays_flat_while_delta_vanishes():
    """THEORY.md: at sigma_w^2 = 1 the weight ratio is ~ +0.10 though the delta-ratio is -1.84."""
    layers = mlp(50, nn.Tanh, normal(1.0))
    _, result = predict(layers, (64, WIDTH))
    assert abs(result.log10_ratio_first_last) < 0.5
    assert result.diagnosis.label == "healthy"


def bn_stack(depth, act, seed=0):
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(WIDTH, WIDTH, bias=False).double(), nn.BatchNorm1d(WIDTH).double(), act()]
    return layers


@pytest.mark.parametrize(
    "act, batch, theory",
    [(nn.ReLU, 16, 1.576), (nn.ReLU, 64, 1.487), (nn.ReLU, 1 << 20, math.pi / (math.pi - 1)), (nn.Tanh, 1 << 20, 1.20)],
)
def test_batchnorm_gradient_growth_per_layer(act, batch, theory):
    graph, result = predict(bn_stack(12, act), (batch, WIDTH))
    pre = nodes_of(graph, "linear")
    growth = [result.nodes[a].grad_sq / result.nodes[b].grad_sq for a, b in zip(pre[2:], pre[3:-1])]
    assert np.exp(np.mean(np.log(growth))) == pytest.approx(theory, rel=0.03)


def test_batchnorm_growth_matches_autograd():
    predictions, measurements = [], []
    for seed in range(2):
        layers = bn_stack(12, nn.ReLU, seed)
        graph, result = predict(layers, (64, WIDTH), independent_output_gradient=True)
        predictions.append(predicted_delta_ratio(graph, result))
        measurements.append(measured_delta_ratio(layers, (64, WIDTH), seed))
    assert np.mean(measurements) == pytest.approx(np.mean(predictions), abs=0.3)
    assert np.mean(predictions) > 9 * math.log10(1.4)


def residual_stack(blocks, alpha, width=512, seed=0):
    torch.manual_seed(seed)
    layers = []
    for _ in range(blocks):
        linear = nn.Linear(width, width, bias=False).double()
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        with torch.no_grad():
            linear.weight.mul_(alpha)
        layers.append(Residual(nn.ReLU(), linear))
    return layers


@pytest.mark.parametrize("alpha, theory", [(1.0, 2.0**30), (30**-0.5, (1 + 1 / 30) ** 30), (0.0, 1.0)])
def test_residual_variance_growth(alpha, theory):
    layers = residual_stack(30, alpha)
    _, result = predict(layers, (16, 512))
    assert math.log10(result.output_rms**2) == pytest.approx(math.log10(theory), abs=0.15)
    with torch.no_grad():
        x = torch.randn(16, 512, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        measured = nn.Sequential(*layers)(x).pow(2).mean().item()
    assert math.log10(measured) == pytest.approx(math.log10(result.output_rms**2), abs=0.5)
    if alpha == 1.0:  # exact: a parameter literal, not a result
        assert result.diagnosis.label == "exploding"


def test_batchnorm_inside_residual_branches():
    """THEORY.md: 30 blocks x + Linear(ReLU(BN(x))), gradient gain 77.4 simulated (formula 74.9)."""
    torch.manual_seed(0)
    layers = []
    for _ in range(30):
        linear = nn.Linear(512, 512, bias=False).double()
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        layers.append(Residual(nn.BatchNorm1d(512).double(), nn.ReLU(), linear))
    graph, result = predict(layers, (64, 512), independent_output_gradient=True)
    predicted = result.nodes["x"].grad_sq / result.nodes[nodes_of(graph, "add")[-1]].grad_sq
    assert predicted == pytest.approx(77.4, rel=0.1)
    x = torch.randn(64, 512, dtype=torch.float64, requires_grad=True, generator=torch.Generator().manual_seed(2))
    y = nn.Sequential(*layers)(x)
    y.backward(torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    assert math.log10(x.grad.pow(2).mean().item()) == pytest.approx(math.log10(predicted), abs=0.1)


def rnn_time_ratio(rnn, steps, batch=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, rnn.input_size, generator=gen, dtype=torch.float64, requires_grad=True)
    y, _ = rnn(x)
    (y[:, -1] * torch.randn(y[:, -1].shape, generator=gen, dtype=torch.float64)).sum().backward()
    return math.log10(x.grad[:, 0].norm().item() / x.grad[:, -1].norm().item())


@pytest.mark.parametrize("gain", [0.5, 1.0, 1.5, 2.0, 3.0])
def test_tanh_rnn_orthogonal_gain_over_64_steps(gain):
    """Pascanu et al. 2013, "On the difficulty of training recurrent neural networks", Sec. 2-3.

    W_hh = orthogonal * g over 64 steps. Below g = 1 the gradient reaching the first step
    vanishes (g = 0.5: 10^-25, g = 1: 10^-8.3, since tanh' < 1 even at g = 1). On the exploding
    side the measurement shows saturation at work: g = 3 reaches only 10^+8.4 (about 1.36x per
    step), not the 3^63 ~ 10^30 a linear recurrence would give, because the hidden state
    saturates and E[tanh'^2] falls as g grows; g = 1.5 sits in between at ~10^-0.8 (healthy).
    The mean-field unrolling predicts each within 0.25 + 5% decades.
    """
    torch.manual_seed(0)
    rnn = nn.RNN(WIDTH, WIDTH, batch_first=True).double()
    nn.init.orthogonal_(rnn.weight_hh_l0, gain=gain)
    _, result = predict([rnn], (8, 64, WIDTH))
    (predicted,) = result.recurrent_log10_time_ratio.values()
    measured = np.mean([rnn_time_ratio(rnn, 64, seed=s) for s in range(2)])
    assert predicted == pytest.approx(measured, abs=0.25 + 0.05 * abs(measured))
    expected = "vanishing" if predicted < -3 else "exploding" if predicted > 2 else "healthy"
    assert result.diagnosis.label == expected


@pytest.mark.parametrize(
    "kind, layers, gate_bias",
    [("LSTM", 1, 0.0), ("LSTM", 2, 0.0), ("GRU", 1, 0.0), ("GRU", 2, 0.0), ("LSTM", 2, 1.0), ("GRU", 1, 2.0)],
)
def test_gated_rnn_time_ratio_matches_autograd(kind, layers, gate_bias):
    """PyTorch's default LSTM/GRU (hidden 32, 24 steps), stacked and with a forget (LSTM) or
    update (GRU) gate bias. W_hh is the same at every step, so the carried gradient and the one
    returning through W_hh align (gains_recurrent.coherent: 10^-4.9 for one layer where
    independent paths give 10^-6.5), and a stack's paths down through the layers at any step
    add up (gains_recurrent.time_ratio: two layers reach 10^-3.9)."""
    torch.manual_seed(0)
    rnn = getattr(nn, kind)(16, 32, num_layers=layers, batch_first=True).double()
    with torch.no_grad():
        for layer in range(layers):
            getattr(rnn, f"bias_ih_l{layer}")[32:64] += gate_bias  # the second gate: LSTM forget, GRU update
    _, result = predict([rnn], (8, 24, 16))
    (predicted,) = result.recurrent_log10_time_ratio.values()
    measured = np.mean([rnn_time_ratio(rnn, 24, seed=s) for s in range(3)])
    assert predicted == pytest.approx(measured, abs=0.5)


def test_squared_error_gradient_holds_the_output_in_deep_relu_nets():
    """The default loss's gradient (y - t)/B holds y = J x, so the gradient at x holds J^T J x:
    in a deep He-ReLU stack the spread of J^T J's spectrum (free probability, ~2L + 1 in
    normalised second moment) lifts the first layer's gradient ~1 decade (squared) above the
    mean-field value for an independent output gradient. Predicted and measured with autograd."""
    torch.manual_seed(0)
    layers = mlp(16, nn.ReLU, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")) + [
        nn.Linear(WIDTH, WIDTH).double()
    ]
    graph, result = predict(layers, (16, WIDTH))
    independent = predict(layers, (16, WIDTH), independent_output_gradient=True)[1]
    first, last = nodes_of(graph, "linear")[0], graph.graph["outputs"][0]
    predicted = math.log10(result.nodes[first].grad_sq / result.nodes[last].grad_sq)
    measured = []
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(16, WIDTH, generator=gen, dtype=torch.float64)
        taps = [layers[0](x)]
        taps[0].retain_grad()
        y = nn.Sequential(*layers[1:])(taps[0])
        y.retain_grad()
        (0.5 * (y - torch.randn(y.shape, generator=gen, dtype=torch.float64)).pow(2).sum() / 16).backward()
        measured.append(math.log10(taps[0].grad.pow(2).mean().item() / y.grad.pow(2).mean().item()))
    assert predicted == pytest.approx(np.mean(measured), abs=0.3)
    assert predicted - math.log10(independent.nodes[first].grad_sq / independent.nodes[last].grad_sq) > 0.6
