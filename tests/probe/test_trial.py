"""Trial runs at a planned learning rate, the rate search, and the loss they train under."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from gradaudit.loaders import load
from gradaudit.loaders.torch_loader import from_module
from gradaudit.loss import default_loss
from gradaudit.probe import run_probe, trial
from gradaudit.probe.trial import (
    SAFETY_FACTOR,
    SEARCH_FACTOR,
    UNDECIDED_EXTENSION,
    TrialRun,
    plan_trials,
    search_rate,
    teacher_copy,
    trial_run,
)
from tests.probe.sequential import sequential_handle

X = torch.randn(32, 6, generator=torch.Generator().manual_seed(0)) * torch.tensor([3.0, 1.0, 1.0, 0.5, 0.5, 0.2])


def _quadratic():
    """L = (1/B) sum 1/2 (w.x_b - t_b)^2 on a fixed batch: Hessian X^T X / B, so SGD diverges above
    2/lambda and trains below it. The weights start far from the optimum (w = 0 against fresh
    N(0, 1) targets), so a rate that trains lowers the loss well beyond the targets' noise."""
    model = nn.Sequential(nn.Linear(6, 1, bias=False))
    nn.init.constant_(model[0].weight, 3.0)
    handle = sequential_handle(model, (32, 6))
    return handle, float(torch.linalg.eigvalsh(X.T @ X / 32).max())


def test_a_model_diverges_at_a_rate_and_trains_at_a_lower_one():
    handle, top = _quadratic()
    high = trial_run(handle, 3.0 / top, "sgd", steps=50, data=(X,))
    low = trial_run(handle, 0.5 / top, "sgd", steps=50, data=(X,))
    assert high.diverged_at is not None and high.diverged_at <= 10 and high.outcome.startswith("diverges at step")
    assert not high.trains
    assert low.diverged_at is None and low.trains and low.losses[-1] < low.losses[0]
    assert low.record()["outcome"] == "trains" and len(low.losses) == 50


def test_audited_weights_untouched_by_trials_and_search():
    handle, top = _quadratic()
    before = {k: v.clone() for k, v in handle.module.state_dict().items()}
    plan_trials(handle, 3.0 / top, "momentum", steps=20, seed=0, data=(X,), loss="auto", deadline=None).search()
    after = handle.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # exact: nothing may write to them


def test_onnx_executor_module_untouched_by_a_trial():
    handle = load("samples/healthy_bn_cnn.onnx")
    before = {k: v.clone() for k, v in handle.module.state_dict().items()}
    trial = trial_run(handle, 0.1, "adam", steps=3)
    assert len(trial.losses) == 3
    assert all(torch.equal(before[k], v) for k, v in handle.module.state_dict().items())  # exact: untouched


def test_deadline_stops_a_trial_after_one_step():
    handle, top = _quadratic()
    trial = trial_run(handle, 0.5 / top, "sgd", steps=50, data=(X,), deadline=0.0)
    assert len(trial.losses) == 1 and not trial.completed and "timeout" in trial.outcome


def _fake(edge: float, warm_edge: float | None = None, peak: float | None = None):
    """An attempt that trains below `edge` (below `warm_edge` once warmed up) and diverges above;
    the loss goes down the more the closer the rate is to `peak` (the higher, without one)."""
    calls = []

    def attempt(lr, warmup):
        calls.append((lr, warmup))
        limit = warm_edge if warmup and warm_edge else edge
        diverged = 3 if lr > limit else None
        closeness = lr if peak is None else 1.0 / (1.0 + abs(math.log10(lr / peak)))
        losses = (2.0, 50.0) if diverged else (2.0,) * 10 + (2.0 / (1.0 + closeness),) * 20
        return TrialRun(lr, "sgd", 30, warmup, losses, (1.0,) * len(losses), diverged, 0.0)

    return attempt, calls


def test_search_goes_down_to_the_largest_rate_that_trains():
    attempt, _ = _fake(edge=0.2)
    search = search_rate(attempt, 1.0)
    assert [t.outcome for t in search.trials][:3] == ["diverges at step 3", "diverges at step 3", "trains"]
    assert search.best.lr == pytest.approx(1.0 / SEARCH_FACTOR**2)
    assert search.recommended == pytest.approx(SAFETY_FACTOR * search.best.lr)


def test_search_goes_up_and_tries_warm_up_above_the_edge():
    attempt, calls = _fake(edge=0.5, warm_edge=5.0)
    search = search_rate(attempt, 0.1)
    assert calls[-1][1] > 0  # the last trial warms up to the first rate that diverged cold
    assert search.best.warmup > 0 and search.best.lr == pytest.approx(0.1 * SEARCH_FACTOR**2)
    assert len(search.trials) == len(calls) and search.records()[-1]["warmup_steps"] > 0


def test_search_stops_past_the_rate_that_lowers_the_loss_most():
    """Higher rates still train, but less: the peak is the rate, not the largest that trains."""
    attempt, calls = _fake(edge=100.0, peak=0.1)
    search = search_rate(attempt, 0.01)
    assert search.best.lr == pytest.approx(0.1)
    assert [lr for lr, _ in calls] == pytest.approx([0.01, 0.01 * SEARCH_FACTOR, 0.1, 0.1 * SEARCH_FACTOR])


def test_search_with_no_rate_that_trains_recommends_none():
    attempt, calls = _fake(edge=0.0)
    search = search_rate(attempt, 1.0)
    assert search.best is None and search.recommended is None and len(calls) == 6


def test_cross_entropy_reads_the_last_axis_as_logits():
    logits = torch.zeros(4, 10)
    value = default_loss([logits], ["linear"], [-1], seed=0, loss="cross-entropy")
    assert float(value) == pytest.approx(math.log(10.0), rel=1e-6)  # uniform logits: log C per sample
    bce = default_loss([torch.zeros(4, 3)], ["linear"], [-1], seed=0, loss="bce")
    assert float(bce) == pytest.approx(3 * math.log(2.0), rel=1e-6)


def test_the_loss_option_changes_the_sharpness():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 10))
    nn.init.normal_(model[2].weight, std=1.0)  # large logits: cross-entropy saturates, squared error does not
    handle = sequential_handle(model, (32, 6))
    mse = run_probe(handle, passes=1, sharpness=True, loss="mse")
    ce = run_probe(handle, passes=1, sharpness=True, loss="cross-entropy")
    assert ce.loss.startswith("cross-entropy") and mse.loss.startswith("mse")
    assert ce.sharpness < 0.5 * mse.sharpness


def test_teacher_copy_shuffles_each_parameter_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    teacher = teacher_copy(model, seed=0)
    for name, param in teacher.named_parameters():
        original = dict(model.named_parameters())[name]
        assert torch.equal(param.flatten().sort().values, original.flatten().sort().values)  # exact: a permutation
        assert not torch.equal(param, original)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # exact: untouched
    assert not torch.allclose(teacher(X), model(X), atol=1e-3)


def test_teacher_outputs_give_the_labels_and_the_regression_targets():
    teacher = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    confident = 30.0 * nn.functional.one_hot(teacher.argmax(dim=1), 5).float()
    ce = default_loss([confident], ["linear"], [-1], seed=0, loss="cross-entropy", teacher=[teacher])
    wrong = default_loss([-confident], ["linear"], [-1], seed=0, loss="cross-entropy", teacher=[teacher])
    assert float(ce) < 1e-6 and float(wrong) > 10.0
    unit_rms = teacher / teacher.square().mean().sqrt()
    assert float(default_loss([unit_rms], ["linear"], [-1], seed=0, loss="mse", teacher=[teacher])) < 1e-9
    assert float(default_loss([unit_rms], ["linear"], [-1], seed=0, loss="mse")) > 0.5  # seeded N(0, 1) targets


def _deep_gelu_classifier():
    torch.manual_seed(0)
    layers = []
    for _ in range(12):
        layers += [nn.Linear(16, 16), nn.GELU()]
    model = nn.Sequential(*layers, nn.Linear(16, 10))
    for sub in model:
        if isinstance(sub, nn.Linear):
            nn.init.kaiming_normal_(sub.weight, nonlinearity="relu")
            nn.init.zeros_(sub.bias)
    return from_module(model, (torch.randn(16, 16),), "gelu12")


def test_a_learnable_task_shows_a_divergence_random_labels_hide(monkeypatch):
    """The logits grow while the model learns the teacher's labels and the run overshoots
    (measured: this model diverges in a real run at lr 1 with momentum); on random labels there
    is nothing to learn and the trial stays finite."""
    handle = _deep_gelu_classifier()
    taught = trial_run(handle, 1.0, "momentum", steps=50, loss="cross-entropy")
    assert taught.diverged_at is not None
    monkeypatch.setattr(trial, "teacher_copy", lambda module, seed: None)
    untaught = trial_run(handle, 1.0, "momentum", steps=50, loss="cross-entropy")
    assert untaught.diverged_at is None


def test_the_models_own_loss_takes_no_teacher(monkeypatch):
    handle, _ = _quadratic()
    seen = []
    handle = dataclasses.replace(handle, loss_fn=lambda outputs, inputs: seen.append(1) or outputs.square().mean())
    monkeypatch.setattr(trial, "teacher_copy", lambda module, seed: pytest.fail("a teacher for the model's own loss"))
    run = trial_run(handle, 0.01, "sgd", steps=4, data=(X,))
    assert len(seen) == 4 and len(run.losses) == 4


def test_an_undecided_trial_runs_on_and_a_decided_one_stops():
    handle, top = _quadratic()
    stalled = trial_run(handle, 1e-12, "sgd", steps=20, data=(X,))
    assert len(stalled.losses) == 20 * UNDECIDED_EXTENSION and stalled.outcome == "loss does not decrease"
    settled = trial_run(handle, 0.5 / top, "sgd", steps=20, data=(X,))
    assert len(settled.losses) == 20 and settled.trains


def _sigmoid_stack(gain: float) -> nn.Sequential:
    """Ten Linear -> Sigmoid layers with weights N(0, (gain/sqrt(16))^2) and a linear head."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(10):
        linear = nn.Linear(16, 16)
        nn.init.normal_(linear.weight, std=gain / 4.0)
        layers += [linear, nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(16, 4))


def test_a_vanishing_model_whose_head_lowers_the_loss_stalls_through_depth():
    handle = from_module(_sigmoid_stack(0.1), (torch.randn(16, 16),))
    plain = trial_run(handle, 0.01, "momentum", steps=30)
    judged = trial_run(handle, 0.01, "momentum", steps=30, through_depth=True)
    assert plain.trains and judged.losses == pytest.approx(plain.losses, rel=1e-5)  # the head lowers the loss
    assert judged.depth_decades < -6 and judged.stalls and not judged.trains  # the first layer's updates underflow
    assert judged.outcome.startswith("stalls: the first layer") and plain.outcome == "trains"
    assert judged.record()["first_layer_change"] < 1e-6 * judged.record()["last_layer_change"]


def test_a_model_that_learns_through_depth_trains_when_judged_so():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    judged = trial_run(from_module(model, (torch.randn(16, 16),)), 0.01, "momentum", steps=30, through_depth=True)
    assert judged.trains and judged.outcome == "trains" and abs(judged.depth_decades) < 2


@pytest.mark.parametrize(("moved", "outcome"), [
    ((0.0, 0.0), "stalls: the first layer does not move (the head learns alone)"),
    ((1e-5, 0.1), "stalls: the first layer moves 10^-4.0 as much as the last (the head learns alone)"),
    ((1e3, 0.5), "unstable: the first layer moves 10^3.3 as much as the last"),
    ((0.01, 0.5), "trains"),
])
def test_depth_judgement_of_a_falling_loss(moved, outcome):
    run = TrialRun(0.01, "sgd", 4, 0, (4.0, 3.0, 2.0, 1.0), (1.0,) * 4, None, 0.0, moved, through_depth=True)
    assert run.outcome == outcome and run.trains == (outcome == "trains")
    assert dataclasses.replace(run, through_depth=False).trains  # not judged through depth: the loss fell
