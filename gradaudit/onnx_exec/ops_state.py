"""Stateful sequence-model ops of opset 27 (Mamba, Gated DeltaNet exports): a causal depthwise
convolution carrying its last k - 1 inputs, and linear attention with its recurrent state.

Both run their recurrence step by step in torch, so autograd sees every step (the chunked
kernels an accelerator would use compute the same numbers).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from gradaudit.onnx_exec.op_registry import OpContext, optional_input, register
from gradaudit.onnx_exec.ops_contrib import split_heads


@register("CausalConvWithState", weight_slots=(1, 2))
def causal_conv_with_state(
    inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise conv1d over (past_state | input) (zeros without a state), optional SiLU;
    present_state is the last k - 1 positions of that padded input."""
    x, weight = inputs[0], inputs[1]
    bias, past = optional_input(inputs, 2), optional_input(inputs, 3)
    if past is None:
        past = x.new_zeros((x.shape[0], x.shape[1], weight.shape[2] - 1))
    padded = torch.cat((past.to(x.dtype), x), dim=2)
    y = F.conv1d(padded, weight, bias, groups=x.shape[1])
    if attrs.get("activation", "none") in ("silu", "swish"):
        y = F.silu(y)
    return y, padded[:, :, padded.shape[2] - (weight.shape[2] - 1) :]


@register("LinearAttention", setting_slots=(3,))
def linear_attention(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple[torch.Tensor, torch.Tensor]:
    """S_t = exp(g_t) S_{t-1} + k_t (x) v'_t with v'_t = beta_t (v_t - exp(g_t) S_{t-1}^T k_t) for the
    delta rules (v'_t = v_t otherwise; no decay for the ungated rules); o_t = scale q_t^T S_t, the
    KV-head state shared by q_num_heads / kv_num_heads query heads. Computed in float32."""
    query, key, value = inputs[0], inputs[1], inputs[2]
    past, decay, beta = optional_input(inputs, 3), optional_input(inputs, 4), optional_input(inputs, 5)
    q_heads, kv_heads = attrs["q_num_heads"], attrs["kv_num_heads"]
    rule = attrs.get("update_rule", "gated_delta")
    batch, steps, _ = query.shape
    q, k, v = (split_heads(t.float(), h) for t, h in ((query, q_heads), (key, kv_heads), (value, kv_heads)))
    d_k, d_v = q.shape[-1], v.shape[-1]
    scale = attrs.get("scale", 0.0) or 1.0 / math.sqrt(d_k)
    if rule in ("gated", "gated_delta"):
        per_key = decay.shape[-1] != kv_heads
        decay = (
            split_heads(decay.float(), kv_heads) if per_key else decay.float().transpose(1, 2).unsqueeze(-1)
        )  # (B, H, T, d_k | 1)
    if rule in ("delta", "gated_delta"):
        beta = beta.float().transpose(1, 2).unsqueeze(-1)  # (B, H | 1, T, 1)
    state = past.float() if past is not None else q.new_zeros((batch, kv_heads, d_k, d_v))
    group = q_heads // kv_heads
    outputs = []
    for t in range(steps):
        k_t, v_t = k[:, :, t], v[:, :, t]
        if rule in ("gated", "gated_delta"):
            state = state * torch.exp(decay[:, :, t]).unsqueeze(-1)
        if rule in ("delta", "gated_delta"):
            v_t = beta[:, :, t] * (v_t - torch.einsum("bhdm,bhd->bhm", state, k_t))
        state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        read = state.repeat_interleave(group, dim=1) if group > 1 else state
        outputs.append(scale * torch.einsum("bhd,bhdm->bhm", q[:, :, t], read))
    y = torch.stack(outputs, dim=2).transpose(1, 2).reshape(batch, steps, q_heads * d_v)
    return y.to(query.dtype), state.to(past.dtype if past is not None else query.dtype)
