"""The `com.microsoft` ops onnxruntime's transformer optimiser and onnxruntime-genai exports write.

Semantics follow onnxruntime's contrib-op specs (docs/ContribOperators.md) and its CPU kernels,
which the tests use as the oracle. Registered as `com.microsoft:Op` (`executor.op_key`); other
ops of that domain stay unsupported and are named in the one-line error. SimplifiedLayerNormalization
is registered by onnxruntime in the default domain, and is here too.

Covered: FusedMatMul (transposes and alpha), the Gelu family,
Skip(Simplified)LayerNormalization, Attention (packed QKV weights, key-length / raw / 3-D masks,
past state, attention bias), MultiHeadAttention (separate or pre-projected keys, bias, key
padding mask, past state), GroupQueryAttention (grouped KV heads, KV cache, rotary, causal and
local window, softcap) and RotaryEmbedding.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from gradaudit.onnx_exec.op_registry import OpContext, optional_input, register
from gradaudit.onnx_exec.ops_nn import rms_normalized

MS = "com.microsoft:"
DEFAULT_MASK_FILTER = -10000.0


# --- dense products and activations ----------------------------------------------------------
@register(MS + "FusedMatMul", weight_slots=(1,))
def fused_matmul(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """alpha * op(A) @ op(B). The batch transposes (transBatchA/B, which onnxruntime's optimiser
    does not emit from standard exports) are refused with the node named."""
    a, b = inputs
    if attrs.get("transBatchA", 0) or attrs.get("transBatchB", 0):
        raise ValueError("FusedMatMul with transBatchA/transBatchB is not supported")
    a = a.transpose(-1, -2) if attrs.get("transA", 0) else a
    b = b.transpose(-1, -2) if attrs.get("transB", 0) else b
    return attrs.get("alpha", 1.0) * torch.matmul(a, b)


def _with_bias(inputs: Sequence[Any]) -> torch.Tensor:
    bias = optional_input(inputs, 1)
    return inputs[0] if bias is None else inputs[0] + bias


register(MS + "Gelu")(lambda inputs, attrs, ctx: F.gelu(inputs[0]))
register(MS + "BiasGelu", weight_slots=(1,))(lambda inputs, attrs, ctx: F.gelu(_with_bias(inputs)))
register(MS + "FastGelu", weight_slots=(1,))(lambda inputs, attrs, ctx: F.gelu(_with_bias(inputs), approximate="tanh"))
register(MS + "QuickGelu")(lambda inputs, attrs, ctx: inputs[0] * torch.sigmoid(attrs.get("alpha", 1.702) * inputs[0]))


# --- normalisation -----------------------------------------------------------------------------
def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float, axis: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """onnxruntime's RMS norm: normalised in float32 at least, scaled in x's type; (y, inverse rms)."""
    normed, inverse = rms_normalized(x, eps, axis)
    return normed.to(x.dtype) * scale, inverse


def _skip_sum(inputs: Sequence[Any], bias_slot: int) -> torch.Tensor:
    total = inputs[0] + inputs[1]
    bias = optional_input(inputs, bias_slot)
    return total if bias is None else total + bias


@register(MS + "SkipLayerNormalization", weight_slots=(2, 3, 4))
def skip_layer_norm(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple[torch.Tensor, ...]:
    """LayerNorm(input + skip + bias) * gamma + beta over the last axis; outputs y, mean,
    inverse std, and the sum."""
    total = _skip_sum(inputs, 4)
    eps = attrs.get("epsilon", 1e-12)
    y = F.layer_norm(total, total.shape[-1:], inputs[2], optional_input(inputs, 3), eps)
    mean = total.mean(dim=-1, keepdim=True)
    inv_std = torch.rsqrt(total.var(dim=-1, unbiased=False, keepdim=True) + eps)
    return y, mean, inv_std, total


@register("SimplifiedLayerNormalization", MS + "SimplifiedLayerNormalization", weight_slots=(1,))
def simplified_layer_norm(
    inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm: outputs y and the inverse rms."""
    return rms_norm(inputs[0], inputs[1], attrs.get("epsilon", 1e-5), attrs.get("axis", -1))


@register(MS + "SkipSimplifiedLayerNormalization", weight_slots=(2, 3))
def skip_simplified_layer_norm(
    inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext
) -> tuple[torch.Tensor, ...]:
    """RMSNorm(input + skip + bias) * gamma; outputs y, mean (unused: empty), inverse rms, sum."""
    total = _skip_sum(inputs, 3)
    y, inv = rms_norm(total, inputs[2], attrs.get("epsilon", 1e-12))
    return y, torch.zeros(0, dtype=total.dtype), inv, total


# --- rotary embedding --------------------------------------------------------------------------
def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """Rotate the leading 2 * cos.shape[-1] features of x (..., S, H) by the angles of cos/sin
    (broadcast as (..., S, rotary/2)): pairs (2i, 2i+1) when interleaved, else halves."""
    rotary = 2 * cos.shape[-1]
    head, rest = x[..., :rotary], x[..., rotary:]
    if interleaved:
        even, odd = head[..., 0::2], head[..., 1::2]
        turned = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)
    else:
        first, second = head[..., : rotary // 2], head[..., rotary // 2 :]
        turned = torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)
    return torch.cat((turned, rest), dim=-1)


def _positions(position_ids: torch.Tensor | None, batch: int, seq: int, start: int = 0) -> torch.Tensor:
    """(B, S) positions: given per token, a single start offset, or start + arange(S)."""
    if position_ids is None or position_ids.numel() == 1:
        offset = start if position_ids is None else int(position_ids.reshape(-1)[0])
        return (offset + torch.arange(seq)).expand(batch, seq)
    return position_ids.long().expand(batch, seq)


@register(MS + "RotaryEmbedding", setting_slots=(2, 3))
def rotary_embedding(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Input (B, S, hidden) or (B, N, S, H); position_ids (B, S) or one start offset."""
    x, position_ids, cos_cache, sin_cache = inputs
    heads_first = x.dim() == 4
    batch, seq = x.shape[0], x.shape[2] if heads_first else x.shape[1]
    num_heads = attrs.get("num_heads", 0)
    if not heads_first:
        head_size = x.shape[-1] // num_heads if num_heads else 2 * cos_cache.shape[-1]
        x = x.reshape(batch, seq, -1, head_size).transpose(1, 2)
    rotary = attrs.get("rotary_embedding_dim", 0) or 2 * cos_cache.shape[-1]
    pos = _positions(position_ids, batch, seq)
    cos = cos_cache[pos][..., : rotary // 2].unsqueeze(1)
    sin = sin_cache[pos][..., : rotary // 2].unsqueeze(1)
    y = rotate(x, cos.to(x.dtype), sin.to(x.dtype), bool(attrs.get("interleaved", 0)))
    return y if heads_first else y.transpose(1, 2).reshape(batch, seq, -1)


# --- attention ---------------------------------------------------------------------------------
def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, S, N*H) -> (B, N, S, H)."""
    batch, seq, hidden = x.shape
    return x.reshape(batch, seq, num_heads, hidden // num_heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, N, S, H) -> (B, S, N*H)."""
    batch, heads, seq, size = x.shape
    return x.transpose(1, 2).reshape(batch, seq, heads * size)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None, bias: torch.Tensor | None,
           softcap: float = 0.0) -> torch.Tensor:
    """softmax(q k^T * scale [softcapped] + bias) v on (B, N, S, H) tensors; a fully masked row
    (every bias -inf) gives zeros, not NaN."""
    scale = scale or 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if softcap:
        scores = softcap * torch.tanh(scores / softcap)
    if bias is not None:
        scores = scores + bias
    weights = torch.softmax(scores.float(), dim=-1).nan_to_num(0.0).to(q.dtype)
    return torch.matmul(weights, v)


def _causal(query_len: int, key_len: int, past: int) -> torch.Tensor:
    """(S, T) bool: query i (at absolute position past + i) sees keys j <= past + i."""
    return torch.arange(key_len).unsqueeze(0) <= (past + torch.arange(query_len)).unsqueeze(1)


def _additive(allowed: torch.Tensor, fill: float, dtype: torch.dtype) -> torch.Tensor:
    return torch.where(allowed, torch.zeros((), dtype=dtype), torch.full((), fill, dtype=dtype))


def _mask_index_bias(
    mask: torch.Tensor, batch: int, query_len: int, key_len: int, fill: float, dtype: torch.dtype
) -> torch.Tensor:
    """Attention's mask_index as an additive (B, 1, S, T) bias: key lengths (B), end and start
    positions (2B), a raw 0/1 mask (B, T) or (B, S, T)."""
    keys = torch.arange(key_len)
    if mask.dim() == 1:
        allowed = keys.unsqueeze(0) < mask[:batch].long().unsqueeze(1)
        if mask.numel() == 2 * batch:
            allowed &= keys.unsqueeze(0) >= mask[batch:].long().unsqueeze(1)
        allowed = allowed[:, None, None, :]
    elif mask.dim() == 2:
        allowed = mask.bool()[:, None, None, :]
    else:
        allowed = mask.bool()[:, None, :, :]
    return _additive(allowed.expand(batch, 1, query_len, key_len), fill, dtype)


def _combine(*biases: torch.Tensor | None) -> torch.Tensor | None:
    present = [b for b in biases if b is not None]
    if not present:
        return None
    total = present[0]
    for bias in present[1:]:
        total = total + bias
    return total


@register(MS + "Attention", weight_slots=(1, 2), setting_slots=(3, 6))
def attention(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention with packed QKV weights (in, q + k + v hidden); outputs y (B, S, v hidden)
    and present (2, B, N, P + S, H)."""
    x, weights = inputs[0], inputs[1]
    bias, mask, past, attention_bias = (
        optional_input(inputs, 2),
        optional_input(inputs, 3),
        optional_input(inputs, 4),
        optional_input(inputs, 5),
    )
    num_heads = attrs["num_heads"]
    sizes = attrs.get("qkv_hidden_sizes") or [weights.shape[1] // 3] * 3
    qkv = torch.matmul(x, weights) if bias is None else torch.matmul(x, weights) + bias
    q, k, v = (split_heads(t, num_heads) for t in torch.split(qkv, list(sizes), dim=-1))
    past_len = 0
    if past is not None:
        past_len = past.shape[3]
        k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
    batch, query_len, key_len = x.shape[0], q.shape[2], k.shape[2]
    fill = attrs.get("mask_filter_value", DEFAULT_MASK_FILTER)
    causal = _additive(_causal(query_len, key_len, past_len), fill, q.dtype) if attrs.get("unidirectional", 0) else None
    masked = None if mask is None else _mask_index_bias(mask, batch, query_len, key_len, fill, q.dtype)
    y = attend(q, k, v, attrs.get("scale"), _combine(causal, masked, attention_bias))
    present = torch.stack((k, v)) if past is not None or ctx.used_outputs > 1 else torch.zeros(0, dtype=x.dtype)
    return _merge(y), present


@register(MS + "MultiHeadAttention", weight_slots=(3,), setting_slots=(4, 5))
def multi_head_attention(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple[torch.Tensor, ...]:
    """Query (B, S, D); key and value (B, L, D) to project into heads, or (B, N, L, H) already in
    heads (cross-attention caches); bias (3D) added to the projected q, k, v; key_padding_mask
    (B, L) with 0 for padding; past_key/past_value (B, N, P, H) are prepended."""
    query, key, value = inputs[0], inputs[1], inputs[2]
    bias, padding, attention_bias = optional_input(inputs, 3), optional_input(inputs, 4), optional_input(inputs, 5)
    past_key, past_value = optional_input(inputs, 6), optional_input(inputs, 7)
    num_heads = attrs["num_heads"]
    if bias is not None:
        q_bias, k_bias, v_bias = torch.split(
            bias, [query.shape[-1], query.shape[-1], bias.shape[0] - 2 * query.shape[-1]]
        )
        query = query + q_bias
        if key.dim() == 3:
            key, value = key + k_bias, value + v_bias
    q = split_heads(query, num_heads)
    k = key if key.dim() == 4 else split_heads(key, num_heads)
    v = value if value.dim() == 4 else split_heads(value, num_heads)
    past_len = 0
    if past_key is not None and past_value is not None:
        past_len = past_key.shape[2]
        k, v = torch.cat((past_key, k), dim=2), torch.cat((past_value, v), dim=2)
    batch, query_len, key_len = q.shape[0], q.shape[2], k.shape[2]
    fill = attrs.get("mask_filter_value", DEFAULT_MASK_FILTER)
    causal = _additive(_causal(query_len, key_len, past_len), fill, q.dtype) if attrs.get("unidirectional", 0) else None
    masked = None if padding is None else _mask_index_bias(padding, batch, query_len, key_len, fill, q.dtype)
    y = attend(q, k, v, attrs.get("scale"), _combine(causal, masked, attention_bias))
    return _merge(y), k, v


@register(MS + "GroupQueryAttention", setting_slots=(5, 6, 7, 8, 9, 10))
def group_query_attention(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple[torch.Tensor, ...]:
    """Grouped-KV attention with a KV cache, as onnxruntime-genai writes it: query (B, S, D), or
    packed q|k|v when key is absent; past_key/past_value (B, kvN, P, H) hold the first
    total_sequence_length - S positions; seqlens_k[b] + 1 keys are valid for batch entry b
    (right padding). Causal, with an optional local window, rotary (do_rotary with
    cos/sin caches, positions from position_ids or the cache length) and softcap."""
    query, key, value = inputs[0], optional_input(inputs, 1), optional_input(inputs, 2)
    past_key, past_value = optional_input(inputs, 3), optional_input(inputs, 4)
    seqlens_k, total_length = inputs[5], int(inputs[6].reshape(-1)[0])
    cos_cache, sin_cache, position_ids = optional_input(inputs, 7), optional_input(inputs, 8), optional_input(inputs, 9)
    attention_bias = optional_input(inputs, 10)
    num_heads, kv_heads = attrs["num_heads"], attrs["kv_num_heads"]
    if key is None:
        head_size = query.shape[-1] // (num_heads + 2 * kv_heads)
        query, key, value = torch.split(
            query, [num_heads * head_size, kv_heads * head_size, kv_heads * head_size], dim=-1
        )
    q, k, v = split_heads(query, num_heads), split_heads(key, kv_heads), split_heads(value, kv_heads)
    batch, query_len = q.shape[0], q.shape[2]
    past_len = total_length - query_len
    if attrs.get("do_rotary", 0):
        pos = _positions(position_ids, batch, query_len, past_len).unsqueeze(1)
        interleaved = bool(attrs.get("rotary_interleaved", 0))
        q = rotate(q, cos_cache[pos].to(q.dtype), sin_cache[pos].to(q.dtype), interleaved)
        k = rotate(k, cos_cache[pos].to(k.dtype), sin_cache[pos].to(k.dtype), interleaved)
    if past_key is not None and past_value is not None and past_len:
        k = torch.cat((past_key[:, :, :past_len], k), dim=2)
        v = torch.cat((past_value[:, :, :past_len], v), dim=2)
    key_len = k.shape[2]
    allowed = _causal(query_len, key_len, past_len).unsqueeze(0)
    window = attrs.get("local_window_size", -1)
    if window >= 0:
        allowed = allowed & (
            torch.arange(key_len).unsqueeze(0) > (past_len + torch.arange(query_len)).unsqueeze(1) - window
        )
    allowed = allowed & (torch.arange(key_len) <= seqlens_k.long().reshape(-1, 1, 1))
    fill = torch.finfo(q.dtype).min
    bias = _combine(_additive(allowed.unsqueeze(1), fill, q.dtype), attention_bias)
    group = num_heads // kv_heads
    y = attend(q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1), attrs.get("scale"), bias,
               attrs.get("softcap", 0.0))
    return _merge(y), k, v
