"""vanishing_lstm_closed_gate: an LSTM (hidden 32, 20 steps) whose forget-gate bias is -3, head on the last step.

Diagnosis: vanishing through time. The forget gate sigmoid(-3) ~ 0.05 wipes the cell state at
every step, so the gradient reaching the first time step is orders of magnitude below the last
step's (the memory is closed). Setting the forget-gate bias to 1 (Jozefowicz et al. 2015) opens it.
Measured: see samples/README.md.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH, STEPS, IN_FEATURES, HIDDEN, OUT_FEATURES = 16, 20, 8, 32, 10
FORGET_BIAS = -3.0


class ClosedGateLSTM(nn.Module):
    """A single-layer LSTM with its forget gate shut at init, read out on the last time step."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(IN_FEATURES, HIDDEN, batch_first=True)
        with torch.no_grad():  # torch stacks the gate biases i, f, g, o; only the recurrent one is set
            self.lstm.bias_hh_l0[HIDDEN:2 * HIDDEN].fill_(FORGET_BIAS)
        self.head = nn.Linear(HIDDEN, OUT_FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(x)
        return self.head(states[:, -1])


def build(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A freshly seeded model and a batch of example input sequences (batch, time, features)."""
    torch.manual_seed(seed)
    return ClosedGateLSTM(), (torch.randn(BATCH, STEPS, IN_FEATURES),)
