"""Gain rules of elementwise and combining ops: sources, activations, sums, products, constants.

Activations are integrated by quadrature (quadrature.py), so no function needs a closed form.
Sums treat distinct producers as uncorrelated (a residual branch is uncorrelated with its skip in
mean field) and repeated uses of one producer as fully correlated (x + x doubles the amplitude).
"""

from __future__ import annotations

import math
import sys
from collections import Counter

from gradaudit.activations import ACTIVATIONS
from gradaudit.static.gain_registry import GainContext, Transfer, elementwise, gain, numel
from gradaudit.static.moments import IDENTITY, Grad, Moments, Spectrum, with_total, within_share
from gradaudit.static.quadrature import activation_stats


def _pass_through(ctx: GainContext, known: bool = True) -> Transfer:
    return Transfer(ctx.x, elementwise(1.0, 1.0, len(ctx.inputs), spectrum=IDENTITY if known else None), known=known)


@gain("input")
def model_input(ctx: GainContext) -> Transfer:
    """Float inputs are N(0, 1) elements, integer ones uniform on [0, high) (what the probe
    feeds): an embedding reads only which rows they pick, arithmetic on them (a diffusion
    model's timestep under its sinusoidal embedding) reads their values."""
    if ctx.spec is None or ctx.spec.is_float:
        return Transfer(Moments(0.0, 1.0, 0.0), lambda g: [])
    high = ctx.spec.high or 1
    return Transfer(Moments((high - 1) / 2.0, (high * high - 1) / 12.0, 0.0), lambda g: [])


@gain("constant")
def constant(ctx: GainContext) -> Transfer:
    """A fixed tensor: all its variance is per-unit offset (the same for every example).

    The loaders give its statistics as a ParamStats (a trainable initializer) or as attrs
    mean / rms (and value, for a scalar).
    """
    stats = next((p for p in ctx.params.values() if p.numel > 0), None)
    if stats is not None:
        return Transfer(Moments(stats.mean, 0.0, stats.std**2), lambda g: [])
    if "mean" in ctx.attrs and "rms" in ctx.attrs:
        mean, rms = float(ctx.attrs["mean"]), float(ctx.attrs["rms"])
        return Transfer(Moments(mean, 0.0, max(rms * rms - mean * mean, 0.0)), lambda g: [])
    if "value" in ctx.attrs:
        return Transfer(Moments(float(ctx.attrs["value"]), 0.0, 0.0), lambda g: [])
    return Transfer(Moments(), lambda g: [], known=False)


@gain("dropout", "identity", "output")
def pass_through(ctx: GainContext) -> Transfer:
    """Copies elements (dropout at its expected value): gain 1 both ways."""
    return _pass_through(ctx)


@gain("reshape")
def reshape(ctx: GainContext) -> Transfer:
    """Moves, copies or selects elements. Selecting n_out of n_in (a class token, the last time
    step, one part of a split) leaves the gradient zero at the inputs not taken: the input's mean
    square gradient is n_out / n_in of the output's (the parts of a split add back up to 1)."""
    n_in, n_out = numel(ctx.in_shapes[0] if ctx.in_shapes else None), numel(ctx.out_shape)
    if n_in and n_out and n_out < n_in:
        kept = n_out / n_in
        return Transfer(ctx.x, elementwise(kept, kept, len(ctx.inputs)))
    return _pass_through(ctx)


@gain("activation")
def activation(ctx: GainContext) -> Transfer:
    """phi(z) for z with the input's moments: E[phi^2] forward, E[phi'^2] backward."""
    if ctx.fn not in ACTIVATIONS:
        return _pass_through(ctx, known=False)
    stats = activation_stats(ctx.fn, ctx.attrs, ctx.x)
    spectrum = Spectrum(stats.homogeneity, stats.slope_spread)
    return Transfer(
        stats.out, elementwise(stats.dphi_sq, stats.dphi_mean, len(ctx.inputs), stats.dphi_unit_sq, spectrum)
    )


@gain("scale")
def scale(ctx: GainContext) -> Transfer:
    """Multiplication by a constant c of RMS `value` and mean `mean` (a positive scalar when the
    loader gives no mean): value^2 on both passes, and the mean keeps its sign.

    A per-element c is the same for every example, so its spread is per-unit offset:
    E[(x c)^2] = E[x^2] value^2 and E[x c] = mu mean. The sign is what keeps exp(delta * A) of a
    selective scan (delta > 0, A < 0) below 1.
    """
    value = float(ctx.attrs.get("value", 1.0))
    mean = float(ctx.attrs.get("mean", value))
    constant = Moments(mean, 0.0, max(value * value - mean * mean, 0.0))
    return Transfer(
        product_moments(ctx.x, constant), elementwise(value * value, mean, len(ctx.inputs), spectrum=IDENTITY)
    )


@gain("add")
def add(ctx: GainContext) -> Transfer:
    """Sum: distinct producers add in variance, a producer used c times counts c^2; gain 1 back.

    Of the loss's own-output part of the gradient (moments.py), each input keeps the share of
    the output it makes up: a residual branch's input gradient is mostly the skip's signal.
    """
    mu = v = s = 0.0
    counts = Counter(ctx.producers)
    for producer, count in counts.items():
        m = ctx.inputs[ctx.producers.index(producer)]
        mu += count * m.mu
        v += count * count * m.v
        s += count * count * m.s
    out = Moments(mu, v, s)
    shares = [counts[p] ** 2 * m.q / out.q if out.q > 0 else 0.0 for p, m in zip(ctx.producers, ctx.inputs)]
    copies = broadcast_copies(ctx)
    return Transfer(
        out, lambda g: [g.scaled(1.0, 1.0, spectrum=Spectrum(share)).summed_over(k) for share, k in zip(shares, copies)]
    )


def broadcast_copies(ctx: GainContext) -> list[float]:
    """For each input, how many output elements each of its elements reaches (broadcasting):
    its gradient is their sum."""
    n_out = numel(ctx.out_shape)
    return [n_out / n_in if n_out and (n_in := numel(shape)) and n_out > n_in else 1.0 for shape in ctx.in_shapes]


def _square(m: Moments) -> Moments:
    """Moments of x * x for Gaussian x: E[x^4] = mu^4 + 6 mu^2 var + 3 var^2."""
    var = m.var
    q = m.mu**4 + 6.0 * m.mu**2 * var + 3.0 * var * var
    return Moments(m.q, max(q - m.q**2, 0.0), 0.0)


def product_moments(a: Moments, b: Moments) -> Moments:
    """Moments of a * b for independent a, b; per-unit means multiply too."""
    mu = a.mu * b.mu
    unit_sq = (a.s + a.mu**2) * (b.s + b.mu**2)
    return Moments(mu, max(a.q * b.q - unit_sq, 0.0), max(unit_sq - mu * mu, 0.0))


@gain("mul")
def mul(ctx: GainContext) -> Transfer:
    """Product of activations (gates): each input's gradient is scaled by the other operand."""
    if len(ctx.inputs) != 2:
        return _pass_through(ctx, known=False)
    a, b = ctx.inputs
    out = _square(a) if ctx.producers[0] == ctx.producers[1] else product_moments(a, b)
    copies = broadcast_copies(ctx)
    return Transfer(
        out,
        lambda g: [
            Grad(g.sq * b.q, g.mean * b.mu).summed_over(copies[0]),
            Grad(g.sq * a.q, g.mean * a.mu).summed_over(copies[1]),
        ],
    )


@gain("divide")
def divide(ctx: GainContext) -> Transfer:
    """a / b of two activations, taken independent: E[(a/b)^2] = E[a^2] E[1/b^2].

    E[1/b^2] is read as 1/E[b^2], Jensen's lower bound, exact for a denominator whose size
    varies little (a normaliser: a norm, a sum of positive weights such as RWKV's WKV
    denominator), and finite where b may cross zero. Backward d(a/b)/da = 1/b and
    d(a/b)/db = -a/b^2.
    """
    if len(ctx.inputs) != 2:
        return _pass_through(ctx, known=False)
    a, b = ctx.inputs
    if b.q <= 0.0:
        return _pass_through(ctx, known=False)
    out = Moments(a.mu * b.mu / b.q, a.v / b.q, a.s / b.q)
    return Transfer(
        out, lambda g: [Grad(g.sq / b.q, g.mean * b.mu / b.q), Grad(g.sq * a.q / b.q**2, -g.mean * a.mu / b.q)]
    )


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _normal_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


@gain("maximum")
def maximum(ctx: GainContext) -> Transfer:
    """max(a, b) of independent Gaussians (Clark 1961): with t^2 = var a + var b and
    alpha = (mu_a - mu_b) / t, E[max] = mu_a P + mu_b (1 - P) + t phi(alpha) and
    E[max^2] = E[a^2] P + E[b^2] (1 - P) + (mu_a + mu_b) t phi(alpha), P = Phi(alpha) the chance
    a wins. Backward the gradient goes to the winner: P of it to a, 1 - P to b."""
    if len(ctx.inputs) != 2:
        return _pass_through(ctx, known=False)
    a, b = ctx.inputs
    spread = math.sqrt(a.var + b.var)
    if spread == 0.0:
        wins = 1.0 if a.mu >= b.mu else 0.0
        return Transfer(a if wins else b, lambda g: [g.scaled(wins, wins), g.scaled(1.0 - wins, 1.0 - wins)])
    alpha = (a.mu - b.mu) / spread
    wins, density = _normal_cdf(alpha), _normal_pdf(alpha)
    mu = a.mu * wins + b.mu * (1.0 - wins) + spread * density
    q = a.q * wins + b.q * (1.0 - wins) + (a.mu + b.mu) * spread * density
    return Transfer(with_total(q, mu, 0.5 * (within_share(a) + within_share(b))),
                    lambda g: [g.scaled(wins, wins), g.scaled(1.0 - wins, 1.0 - wins)])


def _log_normal_cdf(z: float) -> float:
    """log Phi(z), finite far into the lower tail (Mills ratio past erfc's underflow)."""
    if z > -30.0:
        return math.log(max(0.5 * math.erfc(-z / math.sqrt(2.0)), sys.float_info.min))
    return -0.5 * z * z - math.log(-z * math.sqrt(2.0 * math.pi))


def _truncated_exp_moment(k: float, mu: float, sd: float) -> float:
    """E[exp(k d); d < 0] for d ~ N(mu, sd^2): exp(k mu + k^2 sd^2 / 2) Phi(-(mu + k sd^2) / sd)."""
    return math.exp(min(k * mu + 0.5 * k * k * sd * sd + _log_normal_cdf(-(mu + k * sd * sd) / sd), 700.0))


@gain("exp_gap")
def exp_gap(ctx: GainContext) -> Transfer:
    """w = exp(x - max(x, y)) = exp(min(d, 0)), d = x - y of independent x, y: a stabilised
    log-sum-exp's weight, in (0, 1] however wide d is (exp of a Gaussian min(d, 0) would not be).
    With P = P(d > 0): E[w^k] = P + E[exp(k d); d < 0]; backward dw/dx = w 1{d < 0} = -dw/dy."""
    if len(ctx.inputs) != 2:
        return _pass_through(ctx, known=False)
    x, y = ctx.inputs
    mu, var = x.mu - y.mu, x.var + y.var
    if var == 0.0:
        w = math.exp(min(mu, 0.0))
        slope = w if mu < 0.0 else 0.0
        return Transfer(
            Moments(w, 0.0, 0.0), lambda g: [g.scaled(slope * slope, slope), g.scaled(slope * slope, -slope)]
        )
    sd = math.sqrt(var)
    above = _normal_cdf(mu / sd)
    mean_slope, slope_sq = _truncated_exp_moment(1.0, mu, sd), _truncated_exp_moment(2.0, mu, sd)
    out = with_total(above + slope_sq, above + mean_slope, 0.5 * (within_share(x) + within_share(y)))
    return Transfer(out, lambda g: [g.scaled(slope_sq, mean_slope), g.scaled(slope_sq, -mean_slope)])


@gain("concat")
def concat(ctx: GainContext) -> Transfer:
    """Joined tensors: moments averaged by each part's share; parts' different means become spread."""
    axis = int(ctx.attrs.get("axis", 1))
    sizes = [float(shape[axis]) if shape and len(shape) > abs(axis) else 1.0 for shape in ctx.in_shapes]
    total = sum(sizes) or 1.0
    shares = [n / total for n in sizes]
    mu = sum(w * m.mu for w, m in zip(shares, ctx.inputs))
    v = sum(w * m.v for w, m in zip(shares, ctx.inputs))
    unit_sq = sum(w * (m.s + m.mu**2) for w, m in zip(shares, ctx.inputs))
    return Transfer(Moments(mu, v, max(unit_sq - mu * mu, 0.0)), elementwise(1.0, 1.0, len(ctx.inputs)))
