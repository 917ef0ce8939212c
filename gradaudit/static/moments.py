"""The per-element statistics the static estimator carries forward and backward.

Forward, a signal is described by three numbers so normalisations can be told apart
(see THEORY.md, "Normalisation"): the global mean `mu`, the within-unit variance `v` (over the
batch, what BatchNorm divides by) and the spread `s` of per-unit means (fixed offsets such as a
layer's bias or `mu * row sum`, which BatchNorm removes but which count for everything else).
The second moment is q = v + s + mu^2.

Backward, a gradient is described by its mean square and its mean: a gradient that is common to
all units (the squared-error loss of an output with a large mean, say) adds up coherently through
constant weights, which a mean square alone cannot tell.

Mean field takes a gradient independent of the weights it flows back through. The squared-error
loss breaks this: its gradient (y - t)/B holds the output y itself, and where the network is
positively homogeneous (ReLU, linear maps) y = J x, so the gradient at x holds J^T J x, whose
mean square exceeds the independent estimate by the normalised second moment of J^T J's
spectrum (free probability: a random dense map of aspect r = n_in/n_out takes the spectrum's
normalised variance V to r (1 + V), a diagonal map with slope variance s to V + s; a deep ReLU
stack reaches ~2L). `Grad.aligned` carries that part and `Grad.spread` the V it has met.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable


@dataclass(frozen=True)
class Moments:
    """Forward statistics of one tensor, per element."""

    mu: float = 0.0
    v: float = 0.0
    s: float = 0.0
    # How free a batch's sample mean and variance of this signal are to fluctuate, relative to
    # independent Gaussian values (1): 0 right after BatchNorm, which pins them over its set of
    # values, and in between for a per-unit function of such a signal (quadrature.batch_freedom).
    # BatchNorm reads them for E[1/sigma_B^2] (gains_norm.inverse_variance_factor).
    free_mean: float = 1.0
    free_var: float = 1.0

    @property
    def q(self) -> float:
        return self.v + self.s + self.mu * self.mu

    @property
    def var(self) -> float:
        """Variance around the global mean (within-unit plus between-unit)."""
        return self.v + self.s

    def scaled(self, factor: float) -> "Moments":
        """The statistics of `factor * x` (a scale leaves the batch freedoms as they are)."""
        return replace(self, mu=self.mu * factor, v=self.v * factor * factor, s=self.s * factor * factor)


def with_total(q: float, mu: float, v_share: float) -> Moments:
    """Moments of second moment `q` and mean `mu`, splitting the variance by `v_share` in [0, 1]."""
    var = max(q - mu * mu, 0.0)
    return Moments(mu, var * v_share, var * (1.0 - v_share))


def within_share(m: Moments) -> float:
    """Fraction of the variance that varies over the batch (1 for a centred input)."""
    return m.v / m.var if m.var > 0 else 1.0


@dataclass(frozen=True)
class Spectrum:
    """How an op's Jacobian treats the loss's own-output part of a gradient (module docstring)."""

    retained: float = 1.0  # share that stays of the form J^T J x (1 for a homogeneous op)
    spread: float = 0.0  # normalised variance the op's own Jacobian adds (1 for iid dense weights)
    dims_ratio: float = 1.0  # n_in / n_out of the map


IDENTITY = Spectrum()


@dataclass(frozen=True)
class Grad:
    """Backward statistics of a gradient tensor, per element.

    `sq` = E[g^2]; `mean` = E[g]; `unit_sq` = mean over units of (the unit's batch-mean
    gradient)^2. The last is what adds up coherently over the batch in a weight gradient when
    the layer's input also has per-unit offsets (deep ReLU stacks, whose examples grow alike),
    and what BatchNorm's backward removes.
    """

    sq: float = 0.0
    mean: float = 0.0
    unit_sq: float = 0.0
    aligned: float = 0.0  # part of sq that is the loss's own output carried back (module doc)
    spread: float = 0.0  # normalised variance of J^T J's spectrum from here to the output

    @property
    def unit_mean_sq(self) -> float:
        return max(self.unit_sq, self.mean * self.mean)

    def scaled(
        self, factor_sq: float, factor_mean: float | None = None, factor_unit_sq: float | None = None,
        spectrum: Spectrum | None = None
    ) -> "Grad":
        """The gradient after an elementwise map with E[d^2] = factor_sq and E[d] = factor_mean.

        `factor_unit_sq` is the mean over units of (the unit's batch-mean d)^2, by default
        factor_mean^2; it is larger when a unit's derivative is set by its own offset (a ReLU
        unit on for every example of a batch whose examples have become alike), which keeps the
        per-unit gradient coherent layer after layer. Without a `spectrum` the op is not
        homogeneous and the own-output part becomes an ordinary one.
        """
        mean_factor = math.sqrt(factor_sq) if factor_mean is None else factor_mean
        unit_factor = mean_factor * mean_factor if factor_unit_sq is None else factor_unit_sq
        plain = Grad(self.sq * factor_sq, self.mean * mean_factor, self.unit_mean_sq * unit_factor)
        return plain if spectrum is None else plain.carrying(self, factor_sq, spectrum)

    def carrying(self, out: "Grad", gain_sq: float, spectrum: Spectrum) -> "Grad":
        """This independently propagated input gradient, plus the growth of the output gradient
        `out`'s own-output part through an op of mean-square gain `gain_sq` (module docstring)."""
        aligned = out.aligned * gain_sq * spectrum.retained
        spread = spectrum.dims_ratio * (1.0 + out.spread) - 1.0 + spectrum.spread
        growth = (1.0 + spread) / ((1.0 + out.spread) * spectrum.dims_ratio)
        return Grad(self.sq + aligned * (growth - 1.0), self.mean, self.unit_sq, aligned * growth, spread)

    def summed_over(self, copies: float) -> "Grad":
        """The gradient of a tensor broadcast to `copies` positions (a per-channel time embedding
        added to every pixel): the sum of theirs. Their fluctuations add in mean square, the part
        common to a unit (its mean over the batch) in amplitude."""
        if copies <= 1.0:
            return self
        common = self.unit_mean_sq
        fluctuation = max(self.sq - common, 0.0)
        return Grad(copies * fluctuation + copies * copies * common, copies * self.mean, copies * copies * common,
                    copies * self.aligned, self.spread)

    def centred_over_units(self, factor_sq: float) -> "Grad":
        """After a per-example centring over units (LayerNorm): the common mean goes, unit spread stays."""
        return Grad(self.sq * factor_sq, 0.0, (self.unit_mean_sq - self.mean * self.mean) * factor_sq)


def _spread(grads: list[Grad]) -> float:
    """The spectrum variance of a sum of gradients, weighted by their own-output parts."""
    total = sum(g.aligned for g in grads)
    return sum(g.aligned * g.spread for g in grads) / total if total > 0 else 0.0


def coherent_sum(grads: Iterable[Grad]) -> Grad:
    """Gradients of one tensor used in several slots of one op (x + x): they add in amplitude."""
    grads = list(grads)
    amplitude = sum(math.sqrt(max(g.sq, 0.0)) for g in grads)
    unit_amplitude = sum(math.sqrt(g.unit_mean_sq) for g in grads)
    aligned_amplitude = sum(math.sqrt(max(g.aligned, 0.0)) for g in grads)
    return Grad(amplitude * amplitude, sum(g.mean for g in grads), unit_amplitude * unit_amplitude,
                aligned_amplitude**2, _spread(grads))


def fork_sum(grads: Iterable[Grad]) -> Grad:
    """Gradients arriving from different consumers: uncorrelated, their mean squares add."""
    grads = list(grads)
    mean = sum(g.mean for g in grads)
    fluctuation = sum(max(g.sq - g.mean * g.mean, 0.0) for g in grads)
    unit_spread = sum(g.unit_mean_sq - g.mean * g.mean for g in grads)
    return Grad(fluctuation + mean * mean, mean, unit_spread + mean * mean, sum(g.aligned for g in grads),
                _spread(grads))
