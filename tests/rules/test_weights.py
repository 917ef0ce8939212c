"""GA2xx: init scale vs activation, non-finite weights, symmetric weights; the critical variance."""

import math

import pytest
import torch
import torch.nn as nn

from gradaudit.rules import run_rules
from gradaudit.rules.critical_variance import critical_weight_variance
from tests.rules.fixtures import chain_static, mlp, residual_handle, sequential_handle


def _only(findings, code):
    return [f for f in findings if f.code == code]


def _audit(model):
    handle = sequential_handle(model)
    return handle, run_rules(handle, chain_static(handle), None)


@pytest.mark.parametrize("fn, fan_in_var", [("relu", 2.0), ("leaky_relu", 2.0), ("selu", 0.92), ("gelu", 2.04)])
def test_critical_variance_matches_known_inits(fn, fan_in_var):
    assert critical_weight_variance(fn, {}, 128, 1.0) * 128 == pytest.approx(fan_in_var, rel=0.03)
    assert critical_weight_variance(None, {}, 128, 1.0) == pytest.approx(1 / 128)


def test_ga201_flags_n01_weights_with_the_rescale_that_fixes_them():
    _, findings = _audit(mlp(64, 3, std=1.0))
    (finding,) = _only(findings, "GA201")
    assert finding.severity == "error" and finding.layers == ("0", "2", "4")
    layer = finding.evidence["layers"]["2"]
    assert layer["chi"] == pytest.approx(64 * layer["weight_var"] * 0.5, rel=0.02)
    assert layer["rescale"] == pytest.approx(1 / math.sqrt(32), rel=0.05)
    assert layer["target_var"] * 64 == pytest.approx(2.0, rel=0.02)


def test_ga201_default_init_warns_or_fails_with_depth():
    _, shallow = _audit(mlp(64, 3))  # chi = 1/6: -0.39 decades per layer, -1.2 compounded
    assert _only(shallow, "GA201")[0].severity == "warning"
    _, deep = _audit(mlp(64, 12))
    assert _only(deep, "GA201")[0].severity == "error"


@pytest.mark.parametrize("act, fan_in_var", [(nn.ReLU, 2.0), (nn.SELU, 1.0), (nn.Tanh, 1.0)])
def test_ga201_matching_inits_are_clean(act, fan_in_var):
    _, findings = _audit(mlp(64, 6, act=act, std=math.sqrt(fan_in_var / 64)))
    assert not _only(findings, "GA201")


def test_ga202_nonfinite_weights():
    model = mlp(16, 3, std=0.3)
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
        model[2].bias[1] = float("inf")
    (finding,) = _only(_audit(model)[1], "GA202")
    assert finding.severity == "error" and finding.layers == ("2",) and finding.evidence["count"] == 2
    assert not _only(_audit(mlp(16, 3))[1], "GA202")


def test_ga203_constant_and_identical_rows():
    model = mlp(16, 3, std=0.3)
    with torch.no_grad():
        model[0].weight.fill_(0.01)
        model[2].weight.copy_(torch.randn(1, 16).expand(16, 16))
    (finding,) = _only(_audit(model)[1], "GA203")  # one finding for all broken layers
    assert finding.layers == ("0", "2") and finding.severity == "error"
    per_layer = finding.evidence["layers"]
    assert per_layer["0"]["kind"] == "constant" and per_layer["2"]["kind"] == "identical-row"
    assert not _only(_audit(mlp(16, 3, std=0.3))[1], "GA203")


def test_ga203_zero_init_is_deliberate_only_before_a_sum_or_output():
    head = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
    nn.init.zeros_(head[2].weight)
    assert not _only(_audit(head)[1], "GA203")  # zero head
    interior = mlp(16, 3, std=0.3)
    nn.init.zeros_(interior[2].weight)
    assert _only(_audit(interior)[1], "GA203")[0].evidence["layers"]["2"]["kind"] == "all-zero"
    branch = residual_handle(4, width=16, branch_scale=0.0)  # SkipInit-style zero branch ends
    assert not _only(run_rules(branch, chain_static(branch), None), "GA203")


def test_ga201_normalisation_stops_the_compounding():
    layers = []
    for _ in range(12):
        layers += [nn.Linear(64, 64), nn.ReLU(), nn.LayerNorm(64)]  # default init: chi = 1/6 each
    assert not _only(_audit(nn.Sequential(*layers))[1], "GA201")


def _graph(edges: list[tuple[str, str, list[str]]]):
    """A LayerGraph from (node, op, inputs) in forward order."""
    from gradaudit.graph import add_node, new_graph

    graph = new_graph("torch")
    for node, op, inputs in edges:
        add_node(graph, node, name=node, op=op, source=op, inputs=inputs)
    return graph


def test_a_skip_concatenation_stops_compounding_like_a_residual_sum():
    """U-Net: an encoder level's output reaches the decoder through a concat as well as through
    the deeper levels; its layers get their gradient across the skip, so an init error does not
    compound through the levels below (GA201 failed healthy U-Nets on 14 'compounded' layers)."""
    from gradaudit.rules.topology import longest_chain, scale_resets

    layers = {"e1", "e2", "bottom", "d2"}
    unet = _graph([("x", "input", []), ("e1", "linear", ["x"]), ("e2", "linear", ["e1"]), ("bottom", "linear", ["e2"]),
                   ("cat", "concat", ["e2", "bottom"]), ("d2", "linear", ["cat"])])
    assert {"cat", "e2"} <= scale_resets(unet)
    assert len(longest_chain(unet, scale_resets(unet), layers)) == 1
    inception = _graph([("x", "input", []), ("e1", "linear", ["x"]), ("b1", "linear", ["e1"]), ("b2", "linear", ["e1"]),
                        ("cat", "concat", ["b1", "b2"]), ("d2", "linear", ["cat"])])
    assert not scale_resets(inception)  # parallel branches of one input: no skip
    assert len(longest_chain(inception, set(), {"e1", "b1", "b2", "d2"})) == 3


class _AdaLNZeroBlock(nn.Module):
    """DiT's block: a zero-initialised modulation whose output gates the residual branch."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.branch, self.modulation = nn.Linear(width, width), nn.Linear(width, 2 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shift, gate = self.modulation(torch.relu(x)).chunk(2, dim=-1)
        return x + gate * torch.tanh(self.branch(x + shift))


def test_ga203_a_zero_gate_of_a_residual_branch_is_deliberate():
    from gradaudit.loaders.torch_loader import from_module
    from gradaudit.static import estimate

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), _AdaLNZeroBlock(), _AdaLNZeroBlock(), nn.Linear(16, 2))
    handle = from_module(model, (torch.randn(4, 8),))
    assert not _only(run_rules(handle, estimate(handle.graph, handle.inputs), None), "GA203")
    gated_nowhere = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    nn.init.zeros_(gated_nowhere[1].weight)
    handle = from_module(gated_nowhere, (torch.randn(4, 8),))
    assert _only(run_rules(handle, estimate(handle.graph, handle.inputs), None), "GA203")


class _SmallInitResidualAfterPatchStem(nn.Module):
    """A ConvNeXt in miniature: a patchify convolution stem, then a residual MLP whose first layer
    is initialised 5x too small for its GELU."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.pool = nn.Conv2d(3, 32, 4, stride=4), nn.AdaptiveAvgPool2d(1)
        nn.init.normal_(self.stem.weight, std=0.1)
        self.fc1, self.fc2, self.head = nn.Linear(32, 64), nn.Linear(64, 32), nn.Linear(32, 4)
        nn.init.normal_(self.fc1.weight, std=0.02 / 5)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.stem(x)).flatten(1)
        return self.head(h + self.fc2(self.act(self.fc1(h))))


def test_ga201_is_answered_by_the_measured_gradient_not_the_relative_update():
    """The stem's relative update per position reads more than a decade below the head's, but the
    gradient itself flows (a residual absorbs the small fc1): GA201 is a note, not a warning."""
    from gradaudit.loaders.torch_loader import from_module
    from gradaudit.pipeline import run_audit

    audit = run_audit(from_module(_SmallInitResidualAfterPatchStem(), (torch.randn(8, 3, 32, 32),)))
    (finding,) = _only(audit.findings, "GA201")
    assert finding.evidence["compound_decades"] < -1
    assert audit.probe.log10_update_ratio_first_last < -1 < audit.probe.log10_ratio_first_last
    assert finding.severity == "info"
