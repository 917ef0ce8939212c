"""GA3xx: deep plain stacks (depth and Hanin's beta), unnormalised residual accumulation."""

import math

import torch
import torch.nn as nn

from gradaudit.remedies import recommend
from gradaudit.rules import run_rules
from tests.rules.fixtures import chain_static, mlp, residual_handle, sequential_handle


def _only(handle, code, static=True):
    return [f for f in run_rules(handle, chain_static(handle) if static else None, None) if f.code == code]


def test_ga301_deep_or_narrow_plain_stacks():
    (deep,) = _only(sequential_handle(mlp(256, 24, std=math.sqrt(2 / 256))), "GA301")
    assert deep.evidence["plain_depth"] == 24 and deep.layers[0] == "0" and len(deep.layers) == 24
    (narrow,) = _only(sequential_handle(mlp(16, 12)), "GA301")  # beta = 11/16
    assert narrow.evidence["beta"] > 0.265
    assert not _only(sequential_handle(mlp(256, 12)), "GA301")  # wide and moderately deep


def test_ga301_normalisation_breaks_the_chain():
    layers = []
    for _ in range(24):
        layers += [nn.Linear(16, 16), nn.LayerNorm(16), nn.ReLU()]
    assert not _only(sequential_handle(nn.Sequential(*layers)), "GA301")
    assert not _only(residual_handle(24, width=16), "GA301")


def test_ga302_geometric_residual_growth():
    (finding,) = _only(residual_handle(10), "GA302")
    assert finding.evidence["growth_per_add"] > 1.9 and finding.evidence["adds"] == 10
    assert finding.evidence["branch_scale"] == 1 / math.sqrt(10)
    assert finding.evidence["branch_layers"] == [f"blocks.{b}.fc" for b in range(10)]
    assert not _only(residual_handle(10, branch_scale=1 / math.sqrt(10)), "GA302")
    assert not _only(residual_handle(10, norm_after_add=True), "GA302")
    assert not _only(residual_handle(10), "GA302", static=False)


def _encoder(norm_first: bool, layers: int):
    from gradaudit.loaders.torch_loader import from_module
    from gradaudit.static import estimate

    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=norm_first)
    handle = from_module(nn.TransformerEncoder(block, layers, enable_nested_tensor=False), (torch.randn(4, 8, 32),))
    return handle, estimate(handle.graph, handle.inputs)


def test_ga303_post_ln_stack_needs_warmup():
    handle, static = _encoder(norm_first=False, layers=6)
    (finding,) = [f for f in run_rules(handle, static, None) if f.code == "GA303"]
    assert finding.evidence["sums"] == 12 and finding.severity == "warning"
    recs = recommend([finding], handle, static, None)
    assert any(r.remedy == "lr_adaptation" and "warm-up" in r.action for r in recs)


def test_ga303_not_for_pre_ln_or_shallow_post_ln():
    for norm_first, layers in ((True, 6), (False, 2)):
        handle, static = _encoder(norm_first, layers)
        assert not [f for f in run_rules(handle, static, None) if f.code == "GA303"]
