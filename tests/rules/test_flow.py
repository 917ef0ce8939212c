"""GA1xx: predicted and measured flow, non-finite values, disagreement, recurrent through time."""

import math

import pytest

from gradaudit.results import NodeEstimate
from gradaudit.rules import RuleConfig, run_rules
from tests.rules.fixtures import chain_static, flow_static, mlp, probe_result, recurrent_handle, sequential_handle


def _only(findings, code):
    return [f for f in findings if f.code == code]


def test_ga101_predicted_exploding_names_where_the_gain_concentrates():
    handle = sequential_handle(mlp(16, 4))
    static = flow_static(handle, 5.0, {"4": 3.0, "5": 0.4, "2": 0.2})
    (finding,) = _only(run_rules(handle, static, None), "GA101")
    assert finding.severity == "error" and finding.layers == ("4",)
    assert finding.evidence["log10_ratio"] == pytest.approx(5.0) and finding.evidence["layer_log10_gains"]["4"] > 2.0
    assert _only(run_rules(handle, flow_static(handle, 3.5, {"4": 3.5}), None), "GA101")[0].severity == "warning"
    assert not _only(run_rules(handle, flow_static(handle, 2.5, {"4": 2.5}), None), "GA101")


def test_a_prediction_the_probe_contradicts_is_a_note():
    """torchvision mobilenet_v2 and densenet121 (complete estimates, 10^2.02 and 10^2.19) and a
    partial GPT-2 graph (10^+154) failed the gate while the probe measured them healthy and they
    train: where the probe ran, the gate follows it (DESIGN.md) and the prediction is a note."""
    handle = sequential_handle(mlp(16, 4))
    static = flow_static(handle, 5.0, {"4": 3.0})
    healthy = probe_result(handle, [1e-2, 1e-2, 1e-2, 1e-2])
    assert _only(run_rules(handle, static, healthy), "GA101")[0].severity == "info"
    static.partial = True
    assert _only(run_rules(handle, static, healthy), "GA101")[0].severity == "info"
    assert _only(run_rules(handle, static, None), "GA101")[0].severity == "error"  # nothing contradicts it
    exploding = probe_result(handle, [1e4, 1.0, 0.5, 0.1])
    assert _only(run_rules(handle, static, exploding), "GA101")[0].severity == "error"  # the probe agrees
    growing = probe_result(handle, [1e3, 1.0, 0.5, 0.1])  # measured 10^3.0: a warning
    assert _only(run_rules(handle, static, growing), "GA101")[0].severity == "warning"  # capped by it


def test_ga101_absolute_scale_explodes_with_a_flat_ratio():
    handle = sequential_handle(mlp(16, 4))
    (finding,) = _only(run_rules(handle, flow_static(handle, 0.0, {}, output_rms=1e6), None), "GA101")
    assert finding.severity == "error" and "output RMS" in finding.message


def test_ga102_predicted_vanishing_default_init_vs_he():
    handle = sequential_handle(mlp(64, 12))  # PyTorch default Linear init in front of ReLU
    (finding,) = _only(run_rules(handle, chain_static(handle), None), "GA102")
    assert finding.severity == "error" and len(finding.layers) == 12
    assert all(g < -0.3 for g in finding.evidence["layer_log10_gains"].values())
    he = sequential_handle(mlp(64, 12, std=math.sqrt(2 / 64)))
    assert not _only(run_rules(he, chain_static(he), None), "GA102")


def test_ga102_band_is_shifted_by_the_head_offset():
    handle = sequential_handle(mlp(16, 4))
    assert _only(run_rules(handle, flow_static(handle, -4.5, {"0": -4.5}), None), "GA102")[0].severity == "warning"
    assert not _only(run_rules(handle, flow_static(handle, -3.5, {"0": -3.5}), None), "GA102")


def test_ga103_ga104_measured_flow_and_config_thresholds():
    handle = sequential_handle(mlp(16, 4))
    exploding = probe_result(handle, [1e4, 1.0, 0.5, 0.1])
    (finding,) = _only(run_rules(handle, None, exploding), "GA103")
    assert finding.severity == "error" and finding.layers == ("2",)
    relaxed = RuleConfig(measured_fail_decades=6.0)
    assert _only(run_rules(handle, None, exploding, relaxed), "GA103")[0].severity == "warning"
    vanishing = probe_result(handle, [1e-8, 1e-3, 1e-2, 1e-2])
    (finding,) = _only(run_rules(handle, None, vanishing), "GA104")
    assert finding.severity == "error" and finding.layers == ("2",)
    healthy = probe_result(handle, [0.01, 0.02, 0.03, 0.05])
    assert not _only(run_rules(handle, None, healthy), "GA103") + _only(run_rules(handle, None, healthy), "GA104")


def test_ga105_nonfinite_names_the_first_layer():
    handle = sequential_handle(mlp(16, 3))
    probe = probe_result(handle, nonfinite=True, first_nonfinite="2")
    (finding,) = _only(run_rules(handle, None, probe), "GA105")
    assert finding.severity == "error" and finding.layers == ("2",)
    assert not _only(run_rules(handle, None, probe), "GA103")  # not double-reported
    static = chain_static(handle)
    static.nodes["n4"] = NodeEstimate(math.inf, 0.0, 1.0, 0.0)
    static.nodes["n5"] = NodeEstimate(math.inf, 0.0, 1.0, 0.0)
    (finding,) = _only(run_rules(handle, static, None), "GA105")
    assert finding.layers == ("4",) and finding.evidence["source"] == "static"
    assert not _only(run_rules(handle, chain_static(handle), probe_result(handle)), "GA105")


def test_ga106_disagreement():
    handle = sequential_handle(mlp(16, 3))
    static = flow_static(handle, 0.0, {})
    (finding,) = _only(run_rules(handle, static, probe_result(handle, [1e-7, 1e-4, 1e-2])), "GA106")
    assert finding.evidence["measured_diagnosis"] == "vanishing" and finding.evidence["gap_decades"] > 4
    assert _only(run_rules(handle, static, probe_result(handle, [1.0, 0.05, 0.03])), "GA106")  # 1.5 decades
    assert not _only(run_rules(handle, static, probe_result(handle, [0.01, 0.02, 0.03])), "GA106")


def test_ga107_ga108_recurrent_through_time():
    handle = recurrent_handle("rnn_tanh", seq_len=51)
    probe = probe_result(handle, recurrent_log10_time_ratio={"rnn": 3.0})
    (finding,) = _only(run_rules(handle, None, probe), "GA107")
    assert finding.severity == "error" and finding.layers == ("rnn",)
    assert abs(finding.evidence["log10_per_step"] - 0.06) < 1e-9
    mild = probe_result(handle, recurrent_log10_time_ratio={"rnn": 1.5})
    assert _only(run_rules(handle, None, mild), "GA107")[0].severity == "warning"
    assert not _only(run_rules(handle, None, probe_result(handle, recurrent_log10_time_ratio={"rnn": 0.2})), "GA107")
    lstm = recurrent_handle("lstm")
    static = flow_static(lstm, 0.0, {}, recurrent={"rnn": -7.0})
    (finding,) = _only(run_rules(lstm, static, None), "GA108")
    assert finding.evidence["cell"] == "lstm" and finding.evidence["source"] == "static"
    assert finding.severity == "error"


def test_ga108_default_init_lstm_reach_warns():
    """nn.LSTM / nn.GRU at default init measure 10^-3.9 / 10^-4.9 through 24 steps and train
    with Adam (benchmarks/train_labels.json): a warning; the error starts below 10^-6."""
    lstm = recurrent_handle("lstm")
    probe = probe_result(lstm, recurrent_log10_time_ratio={"rnn": -4.9})
    assert _only(run_rules(lstm, None, probe), "GA108")[0].severity == "warning"
    probe = probe_result(lstm, recurrent_log10_time_ratio={"rnn": -6.5})
    assert _only(run_rules(lstm, None, probe), "GA108")[0].severity == "error"
    relaxed = RuleConfig(recurrent_vanishing_fail_decades=8.0)
    assert _only(run_rules(lstm, None, probe, relaxed), "GA108")[0].severity == "warning"
    assert not _only(run_rules(lstm, flow_static(lstm, 0.0, {}, recurrent={"rnn": -1.0}), None), "GA108")


def test_scale_runaway_is_located_by_forward_growth():
    handle = sequential_handle(mlp(64, 3, std=1.0))  # each Linear+ReLU multiplies the RMS by ~5.7
    static = chain_static(handle)
    static.output_rms = 1e6  # past the absolute scale while the ratio stays flat
    (finding,) = _only(run_rules(handle, static, None), "GA101")
    assert finding.evidence["gain_kind"] == "forward" and finding.layers == ("0", "2", "4")
    gains = finding.evidence["layer_log10_gains"].values()
    assert all(g == pytest.approx(0.5 * math.log10(32), abs=0.05) for g in gains)


def test_ga104_first_layer_gradient_underflow_is_vanishing():
    handle = sequential_handle(mlp(16, 4))
    probe = probe_result(handle, [0.0, 1e-3, 1e-2, 1e-2])  # float32 underflow: no finite ratio
    (finding,) = _only(run_rules(handle, None, probe), "GA104")
    assert finding.severity == "error" and finding.evidence["log10_ratio"] is None


def test_ga106_says_what_each_label_rests_on_when_the_labels_differ():
    """Equal first/last ratios with different labels (a recurrent layer's reach through time
    decided one side) read as 'predicted vanishing (10^-1.0), measured healthy (10^-1.0)'."""
    handle = sequential_handle(mlp(16, 4))
    static = flow_static(handle, -1.0, {}, recurrent={"lstm": -7.5})
    probe = probe_result(handle, [1e-2, 1e-2, 1e-2, 1e-2])
    (finding,) = _only(run_rules(handle, static, probe), "GA106")
    assert static.diagnosis.label == "vanishing" and static.diagnosis.reasons[0] in finding.message
    assert "measured healthy (first/last 10^+0.0)" in finding.message
