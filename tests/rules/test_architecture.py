"""GA3xx: deep plain stacks (depth and Hanin's beta), unnormalised residual accumulation."""

import math

import torch.nn as nn

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
