"""GA602 judged by the trial run (sharpness as evidence); learning-rate advice for a broken init."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from gradaudit.config import resolve
from gradaudit.errors import InputError
from gradaudit.loaders.torch_loader import from_module
from gradaudit.pipeline import AuditOptions, run_audit
from gradaudit.probe import run_probe
from gradaudit.probe.trial import PlannedTrials, TrialRun
from gradaudit.remedies.remedy_registry import LR_AFTER_INIT
from gradaudit.rules import run_rules
from gradaudit.rules.planned_run import planned_config, stability_limit


def _mlp(depth: int, std: float) -> nn.Sequential:
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        linear = nn.Linear(32, 32)
        nn.init.normal_(linear.weight, std=std / math.sqrt(32))
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(32, 10))


def _ga602(handle, probe, lr: float, trial: TrialRun):
    config = planned_config(None, lr, "sgd", trials=PlannedTrials(lambda rate, warmup: None, lr, trial))
    return [f for f in run_rules(handle, None, probe, config) if f.code == "GA602"]


def _trial(lr: float, diverged_at: int | None) -> TrialRun:
    losses = (2.0, 40.0) if diverged_at else (2.0,) * 25 + (1.5,) * 25
    return TrialRun(lr, "sgd", 50, 0, losses, (1.0,) * len(losses), diverged_at, 0.0)


def test_above_the_bound_is_a_warning_when_the_trial_trains_and_an_error_when_it_diverges():
    handle = from_module(_mlp(2, math.sqrt(2.0)), (torch.randn(16, 32),))
    probe = run_probe(handle, passes=1, sharpness=True, loss="cross-entropy")
    above = 3.0 * stability_limit(probe.sharpness, "sgd")
    (warning,) = _ga602(handle, probe, above, _trial(above, None))
    assert warning.severity == "warning" and "did not diverge" in warning.message
    assert "cross-entropy" in warning.message  # the sharpness says under which loss
    (error,) = _ga602(handle, probe, above, _trial(above, 7))
    assert error.severity == "error" and "diverges in a trial run at step 7" in error.message
    assert error.evidence["trial"]["outcome"] == "diverges at step 7"
    below = 0.5 * stability_limit(probe.sharpness, "sgd")
    assert _ga602(handle, probe, below, _trial(below, None)) == []


def test_no_learning_rate_for_a_broken_init_and_it_comes_last():
    handle = from_module(_mlp(24, 0.5), (torch.randn(16, 32),))
    audit = run_audit(handle, AuditOptions(lr=0.1, optimizer="sgd", trial_steps=5))
    assert audit.diagnosis.label == "vanishing"
    lr_recs = [r for r in audit.recommendations if getattr(r, "change", "") == LR_AFTER_INIT]
    assert lr_recs and "not the fix until the initialisation is" in lr_recs[0].action
    assert audit.recommendations[-1] is lr_recs[-1] and len(audit.recommendations) > 1
    assert not any("peak learning rate" in r.action for r in audit.recommendations)


def test_loss_is_a_config_option_checked_against_its_choices(tmp_path):
    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.gradaudit]\nloss = "cross-entropy"\ntrial-steps = 20\n')
    settings = resolve({}, str(config), environ={})
    assert settings["loss"] == "cross-entropy" and settings["trial-steps"] == 20
    config.write_text('[tool.gradaudit]\nloss = "hinge"\n')
    with pytest.raises(InputError, match="'loss' must be one of"):
        resolve({}, str(config), environ={})


def test_a_given_loss_fn_wins_over_the_loss_option():
    handle = from_module(_mlp(2, math.sqrt(2.0)), (torch.randn(16, 32),))
    own = dataclasses.replace(handle, loss_fn=lambda outputs, inputs: outputs.pow(2).mean())
    assert run_probe(own, passes=1, loss="cross-entropy").loss == "model's own loss"


def test_a_trial_the_timeout_cut_short_says_so_instead_of_a_rate():
    handle = from_module(_mlp(2, math.sqrt(2.0)), (torch.randn(16, 32),))
    audit = run_audit(handle, AuditOptions(lr=10.0, optimizer="sgd", timeout=1e-9))
    (rec,) = [r for r in audit.recommendations if r.remedy == "lr_adaptation"]
    assert "timeout stopped the trial runs" in rec.action and not rec.verified["trains"]
    assert rec.verified["trial_runs"][0]["steps"] == 1
