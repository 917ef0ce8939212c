"""The transformer ops of opset 23 and later: Attention, RotaryEmbedding and TensorScatter (the
KV-cache write), as LLM exports now write them instead of MatMul/Softmax chains.

Each follows onnx's reference implementation (`onnx.reference.ops`), which is also what the
conformance measure compares against. Attention keeps every gradient finite: a query row whose
keys are all masked yields zeros, as the reference defines it, without the NaN a plain softmax
of an all -inf row would send back through the weights.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from gradaudit.onnx_exec.op_registry import OpContext, OpResult, register
from gradaudit.onnx_exec.ops_elementwise import torch_dtype


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, seq, heads * size) -> (batch, heads, seq, size)."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _allowed_bias(allowed: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """0 where attention is allowed, -inf where it is not."""
    return torch.where(allowed, torch.zeros((), dtype=like.dtype), torch.full((), -math.inf, dtype=like.dtype))


def _window_bias(
    q_len: int, kv_len: int, offset: torch.Tensor | int, attrs: dict[str, Any], like: torch.Tensor
) -> torch.Tensor | None:
    """The causal and sliding-window biases, aligned bottom-right by `offset` (past length, or
    per batch the unpadded kv length minus the query length)."""
    left, right = attrs.get("left_window_size", -1), attrs.get("right_window_size", -1)
    if not attrs.get("is_causal", 0) and left < 0 and right < 0:
        return None
    rows = torch.arange(q_len).reshape(q_len, 1)
    if isinstance(offset, torch.Tensor):
        rows = rows + offset.reshape(-1, 1, 1, 1)
    else:
        rows = rows + offset
    diff = rows - torch.arange(kv_len)  # query position minus key position
    allowed = torch.ones_like(diff, dtype=torch.bool)
    if attrs.get("is_causal", 0):
        allowed &= diff >= 0
    if left >= 0:
        allowed &= diff <= left
    if right >= 0:
        allowed &= -diff <= right
    return _allowed_bias(allowed, like)


@register("Attention")
def attention(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> OpResult:
    """softmax(Q K^T * scale + bias) V with grouped KV heads, a past KV cache, masks (bool or
    additive), causal and sliding windows, softcap, and the optional present-KV and QK outputs."""
    q, k, v = inputs[:3]
    mask, past_key, past_value, nonpad = (list(inputs[3:7]) + [None] * 4)[:4]
    three_d = q.dim() == 3
    if three_d:
        q, k, v = _heads(q, attrs["q_num_heads"]), _heads(k, attrs["kv_num_heads"]), _heads(v, attrs["kv_num_heads"])
    scale = attrs.get("scale", 1 / math.sqrt(q.shape[-1]))
    root = math.sqrt(scale)
    present_key = k if past_key is None else torch.cat([past_key, k], 2)
    present_value = v if past_value is None else torch.cat([past_value, v], 2)
    q_len, kv_len = q.shape[2], present_key.shape[2]
    bias = torch.zeros((q_len, kv_len), dtype=q.dtype)
    if mask is not None:
        if mask.shape[-1] < kv_len:  # a mask shorter than past + new keys masks the rest
            fill = False if mask.dtype == torch.bool else -math.inf
            mask = torch.nn.functional.pad(mask, (0, kv_len - mask.shape[-1]), value=fill)
        bias = bias + (_allowed_bias(mask, q) if mask.dtype == torch.bool else mask.to(q.dtype))
    offset: torch.Tensor | int = past_key.shape[2] if past_key is not None else 0
    if nonpad is not None:
        offset = nonpad.reshape(-1) - q_len
    window = _window_bias(q_len, kv_len, offset, attrs, q)
    if window is not None:
        bias = bias + window
    if nonpad is not None:
        bias = bias + _allowed_bias(torch.arange(kv_len) < nonpad.reshape(-1, 1, 1, 1), q)
    groups = q.shape[1] // present_key.shape[1]
    keys, values = present_key.repeat_interleave(groups, 1), present_value.repeat_interleave(groups, 1)
    scores = (q * root) @ (keys * root).transpose(-1, -2)
    softcap = attrs.get("softcap", 0.0)
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    biased = scores + bias
    masked = torch.isneginf(bias.amax(-1, keepdim=True))  # rows with every key masked: zeros
    logits = torch.where(masked, torch.zeros_like(biased), biased)
    precision = torch_dtype(attrs["softmax_precision"]) if "softmax_precision" in attrs else logits.dtype
    weights = torch.softmax(logits.to(precision), -1).to(q.dtype)
    weights = torch.where(masked, torch.zeros_like(weights), weights)
    y = weights @ values
    if three_d:
        y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1)
    if ctx.used_outputs == 1:
        return y
    qk = {2: biased, 3: weights}.get(attrs.get("qk_matmul_output_mode", 0), scores)
    return (y, present_key, present_value, qk)[: ctx.n_outputs]


@register("RotaryEmbedding")
def rotary_embedding(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Rotates the first rotary_embedding_dim features of every head by the cached cos/sin
    (indexed by position_ids when given), in halves or interleaved pairs."""
    x, cos, sin = inputs[:3]
    positions = inputs[3] if len(inputs) > 3 else None
    shape = x.shape
    x = (
        x.transpose(1, 2) if x.dim() == 4 else x.reshape(shape[0], shape[1], attrs["num_heads"], -1)
    )  # (batch, seq, heads, size)
    dim = attrs.get("rotary_embedding_dim", 0) or x.shape[-1]
    if positions is not None:
        cos, sin = cos[positions.long()], sin[positions.long()]
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    rotated, kept = x[..., :dim], x[..., dim:]
    interleaved = attrs.get("interleaved", 0)
    x1, x2 = (rotated[..., 0::2], rotated[..., 1::2]) if interleaved else rotated.chunk(2, -1)
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    rotated = torch.stack([real, imag], -1).reshape(rotated.shape) if interleaved else torch.cat([real, imag], -1)
    out = torch.cat([rotated, kept], -1)
    return out.reshape(shape) if len(shape) == 3 else out.transpose(1, 2)


@register("ai.onnx.preview:FlexAttention")
def flex_attention(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """softmax(score_mod(Q K^T * scale)) V with an optional prob_mod on the probabilities (the
    preview domain's FlexAttention): the mods are subgraphs, run like control-flow bodies;
    half types compute in float32 unless softmax_precision says otherwise."""
    q, k, v = inputs[:3]
    scale = attrs.get("scale", 1 / math.sqrt(q.shape[-1]))
    root = torch.tensor(math.sqrt(scale), dtype=torch.float32).to(q.dtype)
    groups = q.shape[1] // k.shape[1]
    keys, values = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    if "softmax_precision" in attrs:
        precision = torch_dtype(attrs["softmax_precision"])
    else:
        precision = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) or q.element_size() < 4 else q.dtype
    scores = ((q * root) @ (keys * root).transpose(-1, -2)).to(precision)
    if "score_mod" in attrs:
        scores = attrs["score_mod"]([scores], ctx.scope)[0].to(precision)
    probs = torch.softmax(scores, -1)
    if "prob_mod" in attrs:
        probs = attrs["prob_mod"]([probs], ctx.scope)[0].to(precision)
    return (probs @ values.to(precision)).to(v.dtype)
