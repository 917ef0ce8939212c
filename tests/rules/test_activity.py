"""GA4xx: dead units, saturated units, activation mean shift (from the probe)."""

import torch.nn as nn

from gradaudit.rules import run_rules
from tests.rules.fixtures import mlp, probe_result, sequential_handle


def _only(overrides, code):
    handle = sequential_handle(mlp(16, 3))
    return [f for f in run_rules(handle, None, probe_result(handle, **overrides)) if f.code == code]


def test_ga401_dead_units():
    assert _only({"2": {"dead_frac": 0.5}}, "GA401")[0].severity == "warning"
    (finding,) = _only({"2": {"dead_frac": 0.95, "act_mean": -2.0}, "4": {"dead_frac": 0.3}}, "GA401")
    assert finding.severity == "error" and finding.layers == ("2", "4") and finding.evidence["worst_layer"] == "2"
    assert (finding.evidence["layers"]["2"]["act_mean"] == -2.0
            and "95%" in finding.message)  # exact: the fixture's literal, passed through
    assert not _only({"2": {"dead_frac": 0.05}}, "GA401")


def test_ga402_saturated_units():
    assert _only({"0": {"saturated_frac": 0.3}}, "GA402")[0].severity == "warning"
    assert _only({"0": {"saturated_frac": 0.8, "act_std": 20.0}}, "GA402")[0].severity == "error"
    assert not _only({"0": {"saturated_frac": 0.02}}, "GA402")


def test_ga403_mean_shift():
    (finding,) = _only({"4": {"act_mean": 2.0, "act_std": 1.0}}, "GA403")
    assert (finding.evidence["layers"]["4"]["bias_shift"] == -2.0
            and finding.evidence["worst"] == 2.0)  # exact: the fixture's literal, negated
    assert not _only({"4": {"act_mean": 0.5, "act_std": 1.0}}, "GA403")
    assert not _only({"4": {"act_mean": None, "act_std": None}}, "GA403")


def test_ga403_ignores_layers_a_norm_recentres():
    model = nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    handle = sequential_handle(model)
    probe = probe_result(handle, **{"0": {"act_mean": 3.0}, "3": {"act_mean": 3.0}})
    (finding,) = [f for f in run_rules(handle, None, probe) if f.code == "GA403"]
    assert finding.layers == ("3",)
