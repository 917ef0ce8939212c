"""exploding_tanh_rnn: a tanh nn.RNN (hidden 64, 50 steps) with recurrent weight = orthogonal * 2.

Diagnosis: exploding through time. Every singular value of W_hh is 2, more than tanh' <= 1 can
take back while the state stays out of saturation, so the gradient reaching the first time step
is orders of magnitude larger than the last step's (Pascanu et al. 2013, THEORY.md).
Measured (tests/samples/sample_flow.py: 3 train-mode passes, default loss, model seed 0):
through-time ratio log10 |dy_T/dx_0| / |dy_T/dx_{T-1}| = +3.63 (seeds 0..4:
+3.63..+3.75), log10 first/last grad ratio +2.93, output RMS 0.43, grad RMS 0.21..178.
At gain 1.2 the same RNN measures -0.7 (vanishing through time), at 1.5 only +1.35.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH, STEPS, IN_FEATURES, HIDDEN, OUT_FEATURES = 16, 50, 8, 64, 10
RECURRENT_GAIN = 2.0


class TanhRNNRegressor(nn.Module):
    """A single-layer tanh RNN read out by a linear head on the last time step."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(IN_FEATURES, HIDDEN, nonlinearity="tanh", batch_first=True)
        nn.init.orthogonal_(self.rnn.weight_hh_l0, gain=RECURRENT_GAIN)
        self.head = nn.Linear(HIDDEN, OUT_FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(x)
        return self.head(states[:, -1])


def build(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A freshly seeded model and a batch of example input sequences (batch, time, features)."""
    torch.manual_seed(seed)
    return TanhRNNRegressor(), (torch.randn(BATCH, STEPS, IN_FEATURES),)
