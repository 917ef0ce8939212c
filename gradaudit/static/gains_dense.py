"""Gain rules of layers with a weight matrix: linear, conv, embedding, and activation products.

THEORY.md: forward E[y^2] = fan_in E[w^2] E[x^2] + E[b^2], backward E[dx^2] = fan_out E[w^2]
E[dy^2]. The split into within-unit variance and per-unit offsets follows the weights' actual
statistics: an input mean mu gives output unit i the fixed offset mu * (row sum of w_i), whose
mean square is `ParamStats.row_sum_sq`, so constant weights grow a signal coherently while
zero-mean random weights turn the mean into per-unit spread that BatchNorm removes.
"""

from __future__ import annotations

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


def _fans(ctx: GainContext, w: ParamStats) -> tuple[float, float]:
    fan_in = float(ctx.attrs.get("fan_in") or w.numel / max(w.shape[0], 1))
    fan_out = float(ctx.attrs.get("fan_out") or w.shape[0])
    return fan_in, fan_out


def _weighted(ctx: GainContext, channel_axis: int) -> Transfer:
    w = ctx.param("weight")
    if w is None:
        return Transfer(ctx.x, lambda g: [g] * len(ctx.inputs), known=False)
    fan_in, fan_out = _fans(ctx, w)
    x, bias = ctx.x, ctx.param("bias")
    samples = rows_per_unit(ctx.out_shape, channel_axis, ctx.batch)
    extra_slots = len(ctx.inputs) - 1  # a weight fed as an activation input gets no gradient here
    out = dense_forward(x, w, fan_in, bias)
    spectrum = weight_spectrum(out, bias, fan_in, fan_out)
    return Transfer(
        out,
        lambda g: [dense_backward(g, w, fan_out, spectrum)] + [Grad()] * extra_slots,
        weight_grads=lambda g: {"weight": summed_outer_product(samples, g, x)},
    )


@gain("linear")
def linear(ctx: GainContext) -> Transfer:
    """Dense layer on the last axis; a (B, T, d) input shares the weight over T positions."""
    return _weighted(ctx, channel_axis=-1)


@gain("conv")
def conv(ctx: GainContext) -> Transfer:
    """Convolution: per-element fans from graph.conv_fans, weight shared over spatial positions."""
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
