"""Loss ONNX ops, as training-mode exports contain them (the loss is the last differentiable output).

ONNX defines both on scores of shape (N, C, d1, ..., dk) and integer targets (N, d1, ..., dk),
with torch's reductions: 'mean' divides by the summed weights of the targets not ignored.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from gradaudit.onnx_exec.op_registry import OpContext, optional_input, register


def _nll(log_prob: torch.Tensor, inputs: Sequence[Any], attrs: dict[str, Any]) -> torch.Tensor:
    target = inputs[1].long()
    weight = optional_input(inputs, 2)
    ignore = attrs.get("ignore_index")
    if ignore is not None:
        target = torch.where(target == ignore, torch.full_like(target, -100), target)  # torch's ignore value
    elif bool((target == -100).any()):
        raise ValueError("target -100 without ignore_index is out of range")
    return F.nll_loss(log_prob, target, weight, ignore_index=-100, reduction=attrs.get("reduction", "mean"))


@register("NegativeLogLikelihoodLoss", setting_slots=(2,))
def negative_log_likelihood_loss(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return _nll(inputs[0], inputs, attrs)


@register("SoftmaxCrossEntropyLoss", setting_slots=(2,))
def softmax_cross_entropy_loss(
    inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs the loss and the log-probabilities (softmax over the class axis 1)."""
    log_prob = F.log_softmax(inputs[0], dim=1)
    return _nll(log_prob, inputs, attrs), log_prob
