"""Gradient through time of recurrent layers."""

import torch
from torch import nn

from gradaudit.probe import run_probe
from tests.probe.sequential import TakeFirst, sequential_handle


def _rnn(recurrent_scale: float, batch_first: bool = False) -> nn.Sequential:
    model = nn.Sequential(nn.RNN(8, 32, batch_first=batch_first), TakeFirst(), nn.Linear(32, 4))
    with torch.no_grad():
        model[0].weight_hh_l0.mul_(recurrent_scale)
    return model


def test_small_recurrent_weights_vanish_through_time():
    result = run_probe(sequential_handle(_rnn(0.1), (20, 4, 8)))
    ratio = result.recurrent_log10_time_ratio["layer0"]
    assert ratio < -10  # roughly 19 steps of ||W_hh|| ~ 0.1
    assert result.diagnosis.label == "vanishing"
    assert {layer.param for layer in result.layers} >= {"0.weight_ih_l0", "0.weight_hh_l0"}


def test_time_axis_is_honoured_for_batch_first():
    result = run_probe(sequential_handle(_rnn(0.1, batch_first=True), (4, 20, 8)))
    assert result.recurrent_log10_time_ratio["layer0"] < -10


def test_orthogonal_recurrence_keeps_gradient_through_time():
    model = _rnn(1.0)
    with torch.no_grad():
        nn.init.orthogonal_(model[0].weight_hh_l0)
        model[0].weight_ih_l0.mul_(0.1)  # small inputs keep tanh in its linear range
    result = run_probe(sequential_handle(model, (10, 4, 8)))
    assert -1.0 < result.recurrent_log10_time_ratio["layer0"] <= 0.5


class TimeMajor(nn.Module):
    """(batch, time, features) -> (time, batch, features), as models often do before an RNN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1)


def test_sequence_derived_from_the_input_is_differentiated():
    model = _rnn(0.1)
    model.insert(0, TimeMajor())
    result = run_probe(sequential_handle(model, (4, 20, 8)))
    assert result.recurrent_log10_time_ratio["layer1"] < -10
