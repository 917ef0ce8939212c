"""Remedies: every error finding gets a concrete recommendation whose snippet runs and works."""

import math
import re

import pytest
import torch
import torch.nn as nn

from gradaudit.remedies import REMEDY_KINDS, recommend
from gradaudit.remedies.amounts import memory_gate_slice
from gradaudit.results import Finding
from gradaudit.rules import run_rules
from tests.rules.fixtures import (
    chain_static,
    flow_static,
    mlp,
    probe_result,
    recurrent_handle,
    residual_handle,
    sequential_handle,
)


def _scenarios():
    """(handle, static, probe) triples whose findings include every error-capable rule."""
    n01 = sequential_handle(mlp(64, 3, std=1.0))
    default = sequential_handle(mlp(64, 12))
    small = sequential_handle(mlp(16, 4))
    nan = mlp(16, 3, std=0.3)
    with torch.no_grad():
        nan[2].weight[0, 0] = float("nan")
        nan[0].weight.fill_(0.01)
    nan_handle = sequential_handle(nan)
    rnn, lstm = recurrent_handle("rnn_tanh"), recurrent_handle("lstm")
    return [
        (n01, chain_static(n01), probe_result(n01, [0.01, 0.01, 0.01], grad_norm=2.5)),
        (default, chain_static(default), None),
        (small, flow_static(small, 5.0, {"4": 3.5, "6": 0.15, "7": 0.1}), probe_result(small, [1e4, 1.0, 0.5, 0.01])),
        (small, None, probe_result(small, [1e-8, 1e-3, 1e-2, 1e-2], sharpness=40.0)),
        (small, None, probe_result(small, nonfinite=True, first_nonfinite="2")),
        (small, None, probe_result(small, nonfinite=True, grad_norm=None)),
        (small, None, probe_result(small, **{"2": {"dead_frac": 0.95, "act_mean": -2.0},
                                             "4": {"saturated_frac": 0.9, "act_std": 20.0}})),
        (nan_handle, chain_static(nan_handle), None),
        (rnn, None, probe_result(rnn, recurrent_log10_time_ratio={"rnn": 3.0})),
        (rnn, flow_static(rnn, 3.0, {"rnn": 3.0}), None),
        (rnn, None, probe_result(rnn, recurrent_log10_time_ratio={"rnn": -4.0})),
        (lstm, None, probe_result(lstm, recurrent_log10_time_ratio={"rnn": -7.0})),
        (residual_handle(10), chain_static(residual_handle(10)), None),
    ]


def test_every_error_finding_gets_a_concrete_recommendation():
    codes = set()
    for handle, static, probe in _scenarios():
        for finding in run_rules(handle, static, probe):
            recommendations = recommend([finding], handle, static, probe)
            if finding.severity != "error":
                continue
            codes.add(finding.code)
            assert recommendations, finding
            for rec in recommendations:
                assert rec.remedy in REMEDY_KINDS and rec.layers and rec.finding == finding.code
                assert re.search(r"\d", rec.action), rec.action
                compile(rec.snippet, "<snippet>", "exec")
    assert codes >= {"GA101", "GA102", "GA103", "GA104", "GA105", "GA107", "GA108", "GA201", "GA202", "GA203",
                     "GA401", "GA402"}


def test_recommendations_are_deduplicated():
    handle = sequential_handle(mlp(64, 3, std=1.0))
    static = chain_static(handle)
    findings = run_rules(handle, static, None)
    once = recommend(findings, handle, static, None)
    twice = recommend(findings + findings, handle, static, None)
    assert once, "the scenario must produce recommendations, or this test proves nothing"
    assert len(once) == len(twice) and len({(r.remedy, tuple(r.layers)) for r in twice}) == len(twice)


def _layer_gains(model: nn.Sequential, width: int) -> list[float]:
    """Measured E[h_out^2] / E[h_in^2] of each Linear+ReLU pair on a large Gaussian batch."""
    torch.manual_seed(1)
    h, gains = torch.randn(4096, width), []
    with torch.no_grad():
        for linear, act in zip(model[0::2], model[1::2]):
            out = act(linear(h))
            gains.append(float(out.pow(2).mean() / h.pow(2).mean()))
            h = out
    return gains


def test_rescale_snippet_brings_measured_gain_to_one():
    model = mlp(64, 3, std=1.0)
    assert all(g > 20 for g in _layer_gains(model, 64))
    handle = sequential_handle(model)
    static = chain_static(handle)
    (rec,) = [r for r in recommend(run_rules(handle, static, None), handle, static, None)
              if r.finding == "GA201" and r.remedy == "reinitialization"]
    assert rec.layers == ["0", "2", "4"] and "0.175" in rec.action
    exec(rec.snippet, {"model": model})
    assert all(0.8 < g < 1.25 for g in _layer_gains(model, 64))


def test_prune_snippet_keeps_the_stated_weight_energy():
    handle = sequential_handle(mlp(16, 4))
    static = flow_static(handle, 5.0, {"4": 0.1, "6": 0.08})
    (finding,) = [f for f in run_rules(handle, static, None) if f.code == "GA101"]
    (rec,) = [r for r in recommend([finding], handle, static, None) if r.remedy == "pruning"]
    torch.manual_seed(0)
    model = mlp(16, 4, std=0.25)
    before = model[4].weight.detach().pow(2).sum()
    exec(rec.snippet, {"model": model})
    kept = float(model[4].weight.detach().pow(2).sum() / before)
    assert kept == pytest.approx(10 ** -0.2, abs=0.05)
    stated = float(re.search(r"4 (\d+)%", rec.action).group(1)) / 100
    assert float((model[4].weight == 0).float().mean()) == pytest.approx(stated, abs=0.05)


def test_normalization_snippet_inserts_a_norm_that_runs():
    model = mlp(16, 12)
    handle = sequential_handle(model)
    (finding,) = [f for f in run_rules(handle, chain_static(handle), None) if f.code == "GA301"]
    (rec,) = recommend([finding], handle, chain_static(handle), None)
    assert rec.remedy == "normalization" and "LayerNorm(16)" in rec.action and len(rec.layers) == 12
    exec(rec.snippet, {"model": model})
    assert isinstance(model[0], nn.Sequential) and isinstance(model[0][1], nn.LayerNorm)
    out = model(torch.randn(8, 16))
    assert out.shape == (8, 16) and torch.isfinite(out).all()


def test_batch_shift_snippet_recentres_the_bias():
    model = mlp(16, 3)
    handle = sequential_handle(model)
    probe = probe_result(handle, **{"2": {"act_mean": 2.5, "act_std": 1.0}})
    (finding,) = [f for f in run_rules(handle, None, probe) if f.code == "GA403"]
    (rec,) = recommend([finding], handle, None, probe)
    assert rec.remedy == "batch_shift" and "-2.5" in rec.action
    exec(rec.snippet, {"model": model})
    assert torch.allclose(model[2].bias, torch.full((16,), -2.5))


def test_lstm_memory_gate_and_clipping_and_lr_snippets_run():
    handle = recurrent_handle("lstm", hidden=16)
    probe = probe_result(handle, recurrent_log10_time_ratio={"rnn": -7.0})
    (finding,) = [f for f in run_rules(handle, None, probe) if f.code == "GA108"]
    (rec,) = recommend([finding], handle, None, probe)
    module = nn.Module()
    module.rnn = nn.LSTM(8, 16, batch_first=True)
    exec(rec.snippet, {"model": module})
    assert torch.all(module.rnn.bias_hh_l0[16:32] == 1.0) and not torch.all(
        module.rnn.bias_hh_l0[:16] == 1.0
    )  # exact: the snippet fills 1.0

    small = sequential_handle(mlp(16, 4))
    probe = probe_result(small, [1e4, 1.0, 0.5, 0.01], grad_norm=3.0, sharpness=40.0)
    recs = {r.remedy: r for r in recommend(run_rules(small, None, probe), small, None, probe)}
    assert "3" in recs["gradient_clipping"].action and "x to" in recs["lr_adaptation"].action
    assert "2/sharpness" not in recs["lr_adaptation"].action  # a sharpness at an exploding init bounds nothing
    model = mlp(16, 4)
    model(torch.randn(4, 16)).pow(2).sum().backward()
    scope = {"model": model}
    exec(recs["gradient_clipping"].snippet, scope)
    exec(recs["lr_adaptation"].snippet, scope)
    assert len(scope["optimizer"].param_groups) == 5


def test_onnx_sources_say_so_once():
    from pathlib import Path

    from gradaudit.loaders import load
    from gradaudit.pipeline import AuditOptions, run_audit
    from gradaudit.remedies.remedy_registry import ONNX_NOTE

    sample = Path(__file__).resolve().parents[2] / "samples" / "exploding_mlp_normal_init.onnx"
    audit = run_audit(load(str(sample)), AuditOptions(static_only=True))
    assert audit.recommendations and audit.notes.count(ONNX_NOTE) == 1
    assert not any("ONNX model" in r.action for r in audit.recommendations)


def test_residual_branch_scale_snippet():
    handle = residual_handle(10)
    static = chain_static(handle)
    (finding,) = [f for f in run_rules(handle, static, None) if f.code == "GA302"]
    recs = {r.remedy: r for r in recommend([finding], handle, static, None)}
    assert recs["reinitialization"].layers == [f"blocks.{b}.fc" for b in range(10)]
    assert f"{1 / math.sqrt(10):.3g}" in recs["reinitialization"].action
    assert "normalization" in recs


def test_no_clipping_at_an_exploded_norm_and_no_rescale_of_recurrent_layers():
    small = sequential_handle(mlp(16, 4))
    probe = probe_result(small, [1e4, 1.0, 0.5, 0.01], grad_norm=1e9)
    recs = recommend(run_rules(small, None, probe), small, None, probe)
    assert recs and not [r for r in recs if r.remedy == "gradient_clipping"]
    rnn = recurrent_handle("rnn_tanh")
    static = flow_static(rnn, 5.0, {"rnn": 5.0})
    recs = recommend(run_rules(rnn, static, None), rnn, static, None)
    assert not [r for r in recs if "rnn" in r.layers and r.remedy in ("reinitialization", "normalization", "pruning")]
    (lr,) = [r for r in recs if r.finding == "GA101"]  # static gradients still set per-layer rates
    assert lr.remedy == "lr_adaptation" and lr.layers == ["rnn", "head"]


def test_overlapping_recommendations_of_one_kind_are_not_applied_twice():
    handle = sequential_handle(mlp(64, 12))  # GA102 and GA201 both rescale the same layers
    static = chain_static(handle)
    recs = recommend(run_rules(handle, static, None), handle, static, None)
    recs = [r for r in recs if r.remedy == "reinitialization"]
    layers = [layer for r in recs for layer in r.layers]
    assert len(layers) == len(set(layers)) == 12


def test_memory_gate_slice_follows_each_format_gate_order():
    assert memory_gate_slice("torch", "lstm", 16) == (16, 32)  # i f g o
    assert memory_gate_slice("onnx", "lstm", 16) == (96, 112)  # B = [Wb | Rb], each i o f c
    assert memory_gate_slice("onnx", "gru", 16) == (48, 64)  # Rb's z of z r h


def test_dead_units_are_shifted_by_the_pre_activation_mean():
    model = mlp(16, 3)
    handle = sequential_handle(model)
    probe = probe_result(handle, **{"2": {"dead_frac": 1.0, "act_mean": -3.0, "act_std": 5.0}})
    (finding,) = [f for f in run_rules(handle, None, probe) if f.code == "GA401"]  # mean within a std: no GA403
    (rec,) = [r for r in recommend([finding], handle, None, probe) if r.remedy == "batch_shift"]
    assert (
        rec.change == "bias_shift" and "+3" in rec.action and [e.value for e in rec.edits] == [3.0]
    )  # exact: minus the literal
    exec(rec.snippet, {"model": model})
    assert torch.allclose(model[2].bias, torch.full((16,), 3.0))


def test_a_failing_remedy_is_skipped_with_a_warning():
    handle = sequential_handle(mlp(16, 3))
    broken = Finding("GA403", "warning", "m", ("2",),
                     {"count": 1, "worst_layer": "2", "worst": 2.0, "layers": {"2": "not numbers"}})
    with pytest.warns(RuntimeWarning, match="batch_shift"):
        assert recommend([broken], handle, None, None) == []
