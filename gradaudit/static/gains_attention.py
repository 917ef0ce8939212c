"""Gain rule of a fused multi-head attention block (nn.MultiheadAttention as one node).

Paths: in_proj (dense, fan E) to Q, K, V; logits scale * Q.K over the head dimension, so their
variance is scale^2 d_head E[Q^2] E[K^2]; a softmax over T keys whose participation r grows as
the logits' variance does (saturation); the value average keeps r of V's within-unit variance;
out_proj. Backward: the value path receives r of the output gradient's row-independent part
and all of a part common to every row (collapsed representations), the query/key paths the
softmax's share (quadrature.softmax_stats) of dP = dO . V, summed over T and scaled back by scale^2.
"""

from __future__ import annotations

from gradaudit.static.gain_registry import GainContext, Transfer, gain, rows_per_unit
from gradaudit.static.gains_dense import dense_backward, dense_forward, summed_outer_product
from gradaudit.static.moments import Grad, Moments, fork_sum
from gradaudit.static.quadrature import softmax_stats


def sequence_length(shape: tuple[int, ...] | None, batch: int, batch_first: bool | None) -> int:
    """Length of the sequence axis of a (L, B, E) or (B, L, E) tensor."""
    if not shape or len(shape) < 3:
        return 1
    if batch_first is None:
        batch_first = shape[0] == batch and shape[1] != batch
    return int(shape[1] if batch_first else shape[0])


@gain("attention")
def attention(ctx: GainContext) -> Transfer:
    """Multi-head attention with its projections, softmax saturation and value averaging."""
    w_in, w_out = ctx.param("in_proj_weight"), ctx.param("out_proj_weight")
    if w_in is None or w_out is None or not ctx.inputs:
        return Transfer(ctx.x, lambda g: [g] * len(ctx.inputs), known=False)
    embed = float(ctx.attrs.get("embed_dim") or w_out.shape[0])
    heads = int(ctx.attrs.get("num_heads", 1))
    head_dim = embed / heads
    scale = float(ctx.attrs.get("scale") or head_dim**-0.5)
    keys = sequence_length(ctx.in_shapes[-1] if len(ctx.in_shapes) > 1 else ctx.in_shapes[0], ctx.batch,
                           ctx.attrs.get("batch_first"))
    qx, kx, vx = (ctx.inputs * 3)[:3] if len(ctx.inputs) < 3 else ctx.inputs[:3]
    # one stacked in_proj, or q/k/v projections of their own when key/value sizes differ
    projections = (w_in, ctx.param("k_proj_weight") or w_in, ctx.param("v_proj_weight") or w_in)
    bias_in, bias_out = ctx.param("in_proj_bias"), ctx.param("out_proj_bias")
    q, k, v = (dense_forward(x, w, w.shape[-1], bias_in) for x, w in zip((qx, kx, vx), projections))
    soft = softmax_stats(scale * scale * head_dim * q.q * k.q, keys)
    r = soft.participation
    mixed = Moments(v.mu, r * v.v, v.s)
    out = dense_forward(mixed, w_out, embed, bias_out)
    samples = rows_per_unit(ctx.out_shape, -1, ctx.batch)

    def input_grads(g: Grad) -> tuple[Grad, Grad, Grad, Grad]:
        g_mixed = dense_backward(g, w_out, embed)
        # a value gets sum_i p_ij g_i: independent query gradients keep r of their mean square,
        # a part common to every row (the same for all queries) passes whole
        common = g_mixed.unit_mean_sq
        g_v = Grad(r * max(g_mixed.sq - common, 0.0) + common, g_mixed.mean, common)
        g_logits = soft.backward * head_dim * g_mixed.sq * v.q
        g_q = Grad(scale * scale * keys * g_logits * k.q)
        g_k = Grad(scale * scale * keys * g_logits * q.q)
        return g_q, g_k, g_v, g_mixed

    def backward(g: Grad) -> list[Grad]:
        g_q, g_k, g_v, _ = input_grads(g)
        per_path = [dense_backward(d, w, embed) for d, w in zip((g_q, g_k, g_v), projections)]
        if len(ctx.inputs) >= 3:
            return per_path + [Grad()] * (len(ctx.inputs) - 3)
        return [fork_sum(per_path)] * len(ctx.inputs)

    def weight_grads(g: Grad) -> dict[str, float]:
        g_q, g_k, g_v, g_mixed = input_grads(g)
        in_proj = sum(summed_outer_product(samples, d, x) for d, x in ((g_q, qx), (g_k, kx), (g_v, vx))) / 3.0
        return {"in_proj_weight": in_proj, "out_proj_weight": summed_outer_product(samples, g, mixed)}

    return Transfer(out, backward, weight_grads)
