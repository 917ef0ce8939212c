"""A small, independent re-implementation of the probe's measurement for the sample tests.

It mirrors DESIGN.md's definitions with plain autograd so the samples' promised diagnoses are
checked without depending on gradaudit's probe: k passes in train mode (Dropout off), seeded
N(0, 1) inputs of the example shapes, `gradaudit.loss.default_loss`, grad RMS per weight
(ndim >= 2, first-use order = registration order in the samples), and for every nn.RNN/GRU/LSTM
the through-time ratio log10(|d(y_last . r)/dx_0| / |d(y_last . r)/dx_{T-1}|).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gradaudit.diagnosis import Diagnosis, FlowSummary, diagnose, log10_ratio
from gradaudit.loss import default_loss

RECURRENT_TYPES = (nn.RNN, nn.GRU, nn.LSTM)


@dataclass
class Measurement:
    """The numbers read (in DESIGN.md's units) and the diagnosis they give."""

    flow: FlowSummary
    diagnosis: Diagnosis


def _train_mode_without_dropout(model: nn.Module) -> None:
    model.train()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.eval()


def _fresh_inputs(example: tuple[torch.Tensor, ...], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(x.shape, generator=gen) for x in example]


def _time_ratio(model: nn.Module, rnn: nn.Module, inputs: list[torch.Tensor], seed: int) -> float:
    """log10 of the gradient norm of a random readout of the last step at input step 0 vs T-1."""
    captured: dict[str, torch.Tensor] = {}

    def pre_hook(_module, args):
        x = args[0].detach().requires_grad_(True)
        captured["x"] = x
        return (x,) + tuple(args[1:])

    def hook(_module, _args, output):
        captured["y"] = output[0]

    handles = [rnn.register_forward_pre_hook(pre_hook), rnn.register_forward_hook(hook)]
    try:
        model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    time_axis = 1 if rnn.batch_first else 0
    last = captured["y"].select(time_axis, -1)
    r = torch.randn(last.shape, generator=torch.Generator().manual_seed(seed + 1))
    (grad,) = torch.autograd.grad((last * r).sum(), captured["x"])
    first_norm = grad.select(time_axis, 0).norm().item()
    last_norm = grad.select(time_axis, -1).norm().item()
    return math.log10(first_norm) - math.log10(last_norm)


def measure(model: nn.Module, example: tuple[torch.Tensor, ...], passes: int = 3, seed: int = 0) -> Measurement:
    """Average grad RMS and output RMS over `passes` seeded passes and diagnose them."""
    _train_mode_without_dropout(model)
    weights = [(n, p) for n, p in model.named_parameters() if p.ndim >= 2]
    grad_rms = [0.0] * len(weights)
    output_sq = 0.0
    time_ratios: dict[str, list[float]] = {}
    nonfinite = False
    for k in range(passes):
        inputs = _fresh_inputs(example, seed * 1000 + k)
        model.zero_grad(set_to_none=True)
        output = model(*inputs)
        loss = default_loss([output], ["linear"], [-1], seed * 1000 + k)
        loss.backward()
        nonfinite |= not bool(torch.isfinite(output).all())
        output_sq += output.detach().pow(2).mean().item() / passes
        for i, (_, p) in enumerate(weights):
            grad_rms[i] += (p.grad.norm() / math.sqrt(p.numel())).item() / passes
        for name, module in model.named_modules():
            if isinstance(module, RECURRENT_TYPES):
                ratio = _time_ratio(model, module, inputs, seed * 1000 + k)
                time_ratios.setdefault(name, []).append(ratio)
    flow = FlowSummary(
        log10_ratio_first_last=log10_ratio(grad_rms[0], grad_rms[-1]),
        grad_rms=grad_rms,
        output_rms=math.sqrt(output_sq),
        nonfinite=nonfinite,
        recurrent_log10_time_ratio={name: sum(v) / len(v) for name, v in time_ratios.items()},
    )
    return Measurement(flow, diagnose(flow))
