"""Published results on gradient flow at initialisation, predicted statically and measured.

Complements test_theory.py (THEORY.md's tables on hand-built graphs): here the models go through
the torch loader (or the whole `gradaudit.pipeline`) as a user's would.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradaudit.loaders.torch_loader import from_module
from gradaudit.pipeline import audit
from gradaudit.probe import run_probe
from gradaudit.static import estimate

# models gradaudit fully supports: a gain or ONNX mapping that fails is a bug, not an unknown node
pytestmark = pytest.mark.usefixtures("strict_static")


class Encoder(nn.Module):
    """Token embedding, `depth` nn.TransformerEncoderLayer blocks and a log-softmax vocabulary head."""

    def __init__(self, depth: int, norm_first: bool, d_model: int = 64, vocab: int = 50, xavier: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, 4, 4 * d_model, dropout=0.0, batch_first=True, norm_first=norm_first)
            for _ in range(depth)
        )
        self.final = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, vocab)
        for linear in (m for m in self.modules() if isinstance(m, nn.Linear) and xavier):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return torch.log_softmax(self.head(self.final(x)), dim=-1)


def ffn_profiles(depth: int, norm_first: bool, xavier: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """log10 grad RMS of every block's second FFN weight: predicted and measured (2 seeds)."""
    predicted, measured = [], []
    for seed in range(2):
        torch.manual_seed(seed)
        handle = from_module(Encoder(depth, norm_first, xavier=xavier), (torch.randint(0, 50, (8, 16)),))
        static, probe = estimate(handle.graph, handle.inputs), run_probe(handle, passes=1, seed=seed)
        predicted.append([w.log10_grad_rms for w in static.weights if w.layer.endswith("linear2")])
        measured.append([math.log10(p.grad_rms) for p in probe.layers if p.layer.endswith("linear2")])
    return np.mean(predicted, axis=0), np.mean(measured, axis=0)


def test_xiong_post_ln_vs_pre_ln_gradient_profiles():
    """Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture", Thm. 1 / Fig. 3.

    The last FFN weight's gradient is O(d sqrt(ln d)) in a Post-LN encoder whatever its depth,
    O(d sqrt(ln d / L)) in a Pre-LN one: going from 6 to 24 blocks shrinks Pre-LN's last-layer
    gradient, not Post-LN's. Along the depth, Post-LN gradients sit higher toward the last
    layers than Pre-LN's, whose residual stream adds gradient at every block on the way down.
    Predicted profiles must follow the measured ones in shape layer by layer (and in level
    within 0.35 decades). With PyTorch's default init at d = 64 the measured Post-LN profile is
    flat rather than rising as in Xiong's Fig. 3 (d = 512): the test asserts what is measured,
    the relative growth toward the top against Pre-LN.
    """
    profiles = {(depth, pre): ffn_profiles(depth, pre) for depth in (6, 24) for pre in (False, True)}
    for predicted, measured in profiles.values():
        assert np.max(np.abs((predicted - predicted.mean()) - (measured - measured.mean()))) < 0.15
        assert abs(predicted.mean() - measured.mean()) < 0.35
    for side in (0, 1):  # predicted, then measured
        post6, post24 = profiles[6, False][side], profiles[24, False][side]
        pre6, pre24 = profiles[6, True][side], profiles[24, True][side]
        assert pre24[-1] - pre6[-1] < -0.1  # Pre-LN: the last layer's gradient shrinks with depth
        assert (post24[-1] - post6[-1]) - (pre24[-1] - pre6[-1]) > 0.1  # Post-LN's much less
        # Post-LN rises toward the top relative to Pre-LN
        assert (post24[-1] - post24[0]) - (pre24[-1] - pre24[0]) > 0.05


def test_collapsed_post_ln_encoder_gradients_add_up_coherently():
    """A deep Xavier-initialised Post-LN encoder collapses its tokens onto one representation
    (rank collapse: attention averages, LayerNorm keeps the common part). Every row then gets
    the same softmax p, so the loss gradient's batch mean p - label frequency is shared by all
    rows, passes attention's value averaging whole, and adds up coherently in every weight
    gradient: measured FFN gradients sit ~1 decade above an independent-rows estimate."""
    predicted, measured = ffn_profiles(16, norm_first=False, xavier=True)
    assert np.max(np.abs(predicted - measured)) < 0.35


def hidden_width_sum(graph) -> float:
    """Hanin's beta = sum of 1/width over the hidden (activation-feeding) layers of the LayerGraph."""
    return sum(
        1.0 / graph.nodes[node]["attrs"]["fan_out"]
        for node in graph.nodes
        if graph.nodes[node]["op"] == "linear"
            and any(graph.nodes[s]["op"] == "activation" for s in graph.successors(node))
    )


def relu_stack(width: int, depth: int) -> nn.Sequential:
    layers = []
    for _ in range(depth):
        linear = nn.Linear(width, width, bias=False).double()
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers)


def log_gradient_gain(model: nn.Sequential, seed: int) -> float:
    """ln(||dL/dx||^2 / ||dL/dy||^2) of one example for a random output gradient."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, model[0].in_features, generator=gen, dtype=torch.float64, requires_grad=True)
    y = model(x)
    grad_y = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (grad_x,) = torch.autograd.grad(y, x, grad_y)
    return math.log(grad_x.pow(2).sum().item() / grad_y.pow(2).sum().item())


def test_hanin_narrow_deep_relu_nets_fluctuate_more():
    """Hanin 2018, "Which neural net architectures give rise to exploding and vanishing gradients?".

    For He-initialised ReLU nets the log of the squared gradient size fluctuates over
    initialisations with variance ~ 5 beta, beta = sum of 1/width over hidden layers (THEORY.md,
    "Width"): at equal depth a narrow net is riskier than a wide one. beta comes from the
    LayerGraph; the variance is measured over seeds.
    """
    depth = 10
    results = {}
    for width, seeds in ((32, 300), (256, 40)):
        torch.manual_seed(0)
        model = relu_stack(width, depth)
        beta = hidden_width_sum(from_module(model, (torch.randn(4, width, dtype=torch.float64),)).graph)
        gains = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            gains.append(log_gradient_gain(relu_stack(width, depth), seed))
        results[width] = (beta, np.var(gains))
    (beta_narrow, var_narrow), (beta_wide, var_wide) = results[32], results[256]
    assert beta_narrow > 4 * beta_wide
    assert var_narrow > 4 * var_wide
    for beta, variance in results.values():
        assert variance == pytest.approx(5 * beta, rel=0.45)


def plain_relu_net(depth: int, init) -> nn.Sequential:
    layers = []
    for _ in range(depth):
        linear = nn.Linear(128, 128)
        init(linear.weight)
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(128, 10))


def test_he_xavier_relu_net_flagged_kaiming_passes():
    """He et al. 2015, "Delving Deep into Rectifiers", Sec. 2.2 / Fig. 3.

    Xavier init halves a ReLU net's forward variance per layer; at 30 layers the signal and
    every gradient collapse (He et al.'s 30-layer Xavier net did not learn), while Kaiming's
    2/fan_in keeps it. The whole audit fails the first; the second passes the gate (warnings about
    its depth without normalisation or its dead units may remain, no errors).
    """
    x = torch.randn(16, 128)
    torch.manual_seed(0)
    xavier = audit(plain_relu_net(30, nn.init.xavier_normal_), x, passes=1)
    torch.manual_seed(0)
    kaiming = audit(plain_relu_net(30, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")), x, passes=1)
    assert xavier.static.diagnosis.label == xavier.probe.diagnosis.label == "vanishing"
    assert xavier.verdict == "fail"
    assert kaiming.static.diagnosis.label == kaiming.probe.diagnosis.label == "healthy"
    assert kaiming.verdict != "fail" and not any(f.severity == "error" for f in kaiming.findings)


class ResidualStack(nn.Module):
    """A linear stem, then `blocks` unnormalised blocks x + alpha * Linear(ReLU(Linear(x))), He init."""

    def __init__(self, blocks: int, alpha: float, zero_last: bool = False, width: int = 128):
        super().__init__()
        self.stem = nn.Linear(32, width)
        self.branches = nn.ModuleList()
        for _ in range(blocks):
            first, second = nn.Linear(width, width), nn.Linear(width, width)
            for linear in (first, second):
                nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
                nn.init.zeros_(linear.bias)
            if zero_last:
                nn.init.zeros_(second.weight)
            self.branches.append(nn.Sequential(first, nn.ReLU(), second))
        self.alpha = alpha
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for branch in self.branches:
            x = x + self.alpha * branch(x)
        return self.head(x)


@pytest.mark.parametrize(
    "alpha, zero_last, expected",
    [(1.0, False, "exploding"), (30**-0.5, False, "healthy"), (1.0, True, "healthy")],
    ids=["plain", "one-over-sqrt-L", "zero-init"],
)
def test_fixup_residual_branches(alpha, zero_last, expected):
    """Zhang et al. 2019, "Fixup Initialization: Residual Learning Without Normalization".

    Without normalisation each variance-preserving block adds its input's variance again (a
    two-layer He branch triples it): 30 blocks explode. Scaling branches by 1/sqrt(L) keeps the
    growth at ~(1 + c/L)^L, and a zero-initialised last layer (Fixup, SkipInit) makes every
    block the identity at init: both are predicted healthy by the static estimate of the audit.
    Behind a zero-initialised layer a branch's first layer gets exactly no gradient until the
    first update, as in Fixup; the stem (Fixup's ResNets have one) is the first weight layer.
    """
    torch.manual_seed(0)
    result = audit(ResidualStack(30, alpha, zero_last), torch.randn(16, 32), static_only=True)
    assert result.static.diagnosis.label == expected
    if expected == "exploding":
        assert result.static.output_rms > 1e4
