"""Gain rules of layers with a weight matrix: linear, conv, embedding, and activation products.

THEORY.md: forward E[y^2] = fan_in E[w^2] E[x^2] + E[b^2], backward E[dx^2] = fan_out E[w^2]
E[dy^2]. The split into within-unit variance and per-unit offsets follows the weights' actual
statistics: an input mean mu gives output unit i the fixed offset mu * (row sum of w_i), whose
mean square is `ParamStats.row_sum_sq`, so constant weights grow a signal coherently while
zero-mean random weights turn the mean into per-unit spread that BatchNorm removes.
"""

from __future__ import annotations

import math
from dataclasses import replace

from gradaudit.graph import ParamStats
from gradaudit.static.gain_registry import GainContext, Transfer, gain, rows_per_unit
from gradaudit.static.moments import Grad, Moments, Spectrum


def dense_forward(x: Moments, w: ParamStats, fan_in: float, bias: ParamStats | None) -> Moments:
    """Output moments of y = W x + b for input moments `x`."""
    w_sq = w.rms**2
    row_mean = fan_in * w.mean
    b_mean, b_sq = (bias.mean, bias.rms**2) if bias else (0.0, 0.0)
    mu = x.mu * row_mean + b_mean
    offset_sq = x.mu**2 * w.row_sum_sq + fan_in * w_sq * x.s + b_sq + 2.0 * x.mu * row_mean * b_mean
    return Moments(mu, fan_in * w_sq * x.v, max(offset_sq - mu * mu, 0.0))


def dense_backward(g: Grad, w: ParamStats, fan_out: float, spectrum: Spectrum | None = None) -> Grad:
    """Input gradient of y = W x: fluctuations see fan_out E[w^2], a common part the column sums.

    Given the map's `spectrum`, the loss's own-output part grows by it (moments.py); without
    one that part becomes an ordinary gradient.
    """
    col_mean = fan_out * w.mean
    col_sq = col_mean**2 + fan_out * w.std**2
    fluctuation = max(g.sq - g.mean**2, 0.0)
    unit_spread = max(g.unit_mean_sq - g.mean**2, 0.0)
    gain_sq = fan_out * w.rms**2
    plain = Grad(gain_sq * fluctuation + g.mean**2 * col_sq, g.mean * col_mean,
                 gain_sq * unit_spread + g.mean**2 * col_sq)
    return plain if spectrum is None else plain.carrying(g, gain_sq, spectrum)


def weight_spectrum(out: Moments, bias: ParamStats | None, fan_in: float, fan_out: float) -> Spectrum | None:
    """iid weights spread W^T W's spectrum by Marchenko-Pastur (normalised variance 1 at aspect
    fan_in / fan_out); a bias is the share of the output that is not W x. None without fans."""
    if fan_in <= 0 or fan_out <= 0:
        return None
    own = 1.0 - (bias.rms**2 / out.q if bias is not None and out.q > 0 else 0.0)
    return Spectrum(max(own, 0.0), 1.0, fan_in / fan_out)


def summed_outer_product(count: float, delta: Grad, x: Moments) -> float:
    """E[(sum over `count` samples of delta * x)^2]: the mean-square gradient of one weight.

    Independent terms add `count` times; the per-unit means of delta and x add coherently,
    count^2 times.
    """
    coherent = delta.unit_mean_sq * (x.s + x.mu * x.mu)
    return count * delta.sq * x.q + count * (count - 1.0) * coherent


def _fans(ctx: GainContext, w: ParamStats, coverage: float) -> tuple[float, float]:
    """Forward and backward fans, scaled by the share of taps that read input values."""
    fan_in = float(ctx.attrs.get("fan_in") or w.numel / max(w.shape[0], 1))
    fan_out = float(ctx.attrs.get("fan_out") or w.shape[0])
    return fan_in * coverage, fan_out * coverage


def _taps_in_bounds(size_in: int, size_out: int, kernel: int, stride: int, dilation: int) -> int:
    """(output position, tap) pairs of one axis reading an input value rather than padding; the
    padding is what the sizes imply, split evenly (torch pads both sides alike; when a stride's
    floor drops a padded value at the end, the odd one left is the one before)."""
    padding = max((size_out - 1) * stride + dilation * (kernel - 1) + 1 - size_in, 0)
    before = (padding + 1) // 2
    pairs = 0
    for tap in range(kernel):
        offset = before - tap * dilation  # input o * stride - offset must lie in [0, size_in)
        first = max(-(-offset // stride), 0)
        last = min((size_in - 1 + offset) // stride, size_out - 1)
        pairs += max(last - first + 1, 0)
    return pairs


def tap_coverage(ctx: GainContext) -> float:
    """The share of a convolution's kernel taps that read input values, not zero padding.

    Output y_o = sum over taps t of W_t x_(o s - p + t d); a tap over the padding adds nothing,
    so with c = (in-bounds (o, t) pairs) / (outputs x taps) E[y^2] = c fan_in E[w^2] E[x^2] and
    each input gets c fan_out E[w^2] E[dy^2] back. A 3x3 convolution at 1x1 reads its centre
    tap alone (c = 1/9), at 2x2 c = 4/9, at 8x8 0.84, at 32x32 0.96. Transposed convolutions keep c = 1.
    """
    in_shape = ctx.in_shapes[0] if ctx.in_shapes else None
    out_shape, kernel = ctx.out_shape, ctx.attrs.get("kernel")
    if ctx.attrs.get("transposed") or not in_shape or not out_shape or not kernel:
        return 1.0
    kernel = list(kernel)
    dims = len(kernel)
    if len(in_shape) != dims + 2 or len(out_shape) != dims + 2:
        return 1.0
    stride = list(ctx.attrs.get("stride") or [1] * dims)
    dilation = list(ctx.attrs.get("dilation") or [1] * dims)
    coverage = 1.0
    for axis in range(dims):
        size_out, k = int(out_shape[axis + 2]), int(kernel[axis])
        pairs = _taps_in_bounds(int(in_shape[axis + 2]), size_out, k, int(stride[axis]), int(dilation[axis]))
        coverage *= pairs / max(size_out * k, 1)
    return coverage


def _weighted(ctx: GainContext, channel_axis: int) -> Transfer:
    w = ctx.param("weight")
    if w is None:
        return Transfer(ctx.x, lambda g: [g] * len(ctx.inputs), known=False)
    coverage = tap_coverage(ctx) if ctx.op == "conv" else 1.0
    fan_in, fan_out = _fans(ctx, w, coverage)
    x, bias = ctx.x, ctx.param("bias")
    # a tap's gradient sums over the outputs it reads an input value for
    samples = rows_per_unit(ctx.out_shape, channel_axis, ctx.batch) * coverage
    extra_slots = len(ctx.inputs) - 1  # a weight fed as an activation input gets no gradient here
    out = dense_forward(x, w, fan_in, bias)
    if channel_axis == 1 and _scales_each_channel(ctx, w):
        out = replace(out, free_mean=x.free_mean, free_var=x.free_var)
    spectrum = weight_spectrum(out, bias, fan_in, fan_out)
    return Transfer(
        out,
        lambda g: [dense_backward(g, w, fan_out, spectrum)] + [Grad()] * extra_slots,
        weight_grads=lambda g: {"weight": summed_outer_product(samples, g, x)},
    )


def _scales_each_channel(ctx: GainContext, w: ParamStats) -> bool:
    """A depthwise convolution each of whose outputs reads one input value (a 1x1 kernel at stride
    1, or any kernel over a single position with the rest padding): it scales each channel, so
    the batch statistics BatchNorm pinned before it stay pinned (moments.Moments)."""
    in_shape = ctx.in_shapes[0] if ctx.in_shapes else None
    if len(w.shape) < 3 or w.shape[1] != 1 or not in_shape or len(in_shape) != len(w.shape):
        return False
    if in_shape[1] != w.shape[0]:  # not one output channel per input channel
        return False
    same_positions = ctx.out_shape is not None and tuple(ctx.out_shape[2:]) == tuple(in_shape[2:])
    return math.prod(in_shape[2:]) == 1 or (math.prod(w.shape[2:]) == 1 and same_positions)


@gain("linear")
def linear(ctx: GainContext) -> Transfer:
    """Dense layer on the last axis; a (B, T, d) input shares the weight over T positions."""
    return _weighted(ctx, channel_axis=-1)


@gain("conv")
def conv(ctx: GainContext) -> Transfer:
    """Convolution: per-element fans from graph.conv_fans times the taps that read input values
    (tap_coverage), weight shared over spatial positions."""
    return _weighted(ctx, channel_axis=1)


@gain("embedding")
def embedding(ctx: GainContext) -> Transfer:
    """Rows picked by integer ids: output moments are the table's; a row's gradient sums its uses."""
    w = ctx.param("weight")
    if w is None:
        return Transfer(Moments(), lambda g: [Grad()] * len(ctx.inputs), known=False)
    rows = float(ctx.attrs.get("num_embeddings") or w.shape[0])
    tokens = rows_per_unit(ctx.out_shape, -1, ctx.batch)
    uses = tokens / rows  # mean number of tokens per row (Poisson)

    def weight_grads(g: Grad) -> dict[str, float]:
        coherent = g.unit_mean_sq  # a column's batch-mean gradient adds up over a row's uses
        return {"weight": uses * max(g.sq - coherent, 0.0) + (uses * uses + uses) * coherent}

    return Transfer(Moments(w.mean, w.std**2, 0.0), lambda g: [Grad()] * len(ctx.inputs), weight_grads)


@gain("matmul")
def matmul(ctx: GainContext) -> Transfer:
    """A @ B of two activations with contraction k: E[y^2] = k E[a^2] E[b^2].

    Backward, dA = dY B^T sums over the N output columns and dB = A^T dY over the M rows.
    """
    if len(ctx.inputs) != 2:
        return Transfer(ctx.x, lambda g: [g] * len(ctx.inputs), known=False)
    a, b = ctx.inputs
    k = float(ctx.attrs.get("contraction") or (ctx.in_shapes[0] or (1,))[-1])
    rows, cols = (ctx.out_shape[-2], ctx.out_shape[-1]) if ctx.out_shape and len(ctx.out_shape) >= 2 else (k, k)
    q = k * a.q * b.q
    mu = k * a.mu * b.mu
    out = Moments(mu, max(q - mu * mu, 0.0), 0.0)

    def backward(g: Grad) -> list[Grad]:
        return [Grad(cols * g.sq * b.q, cols * g.mean * b.mu), Grad(rows * g.sq * a.q, rows * g.mean * a.mu)]

    return Transfer(out, backward)
