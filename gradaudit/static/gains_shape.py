"""Gain rules of ops that mix positions: pooling, reductions and softmax.

Averaging k uncorrelated values divides the within-unit variance by k (per-unit offsets
survive); a gradient is shared back over the k inputs. Max pooling takes order statistics of
k Gaussians and routes the gradient to one winner. Softmax's gradient depends on how
concentrated it is (quadrature.softmax_stats): the gradient reaching the logits shrinks as the
softmax saturates.
"""

from __future__ import annotations

import math

from gradaudit.static.gain_registry import GainContext, Transfer, elementwise, gain, numel
from gradaudit.static.moments import Moments
from gradaudit.static.quadrature import max_order_stats, softmax_stats


def _window(ctx: GainContext) -> tuple[int, int]:
    """Elements per pooling window and the input elements per output position (stride product)."""
    if ctx.fn in ("global_avg", "global_max"):
        shape = ctx.in_shapes[0] if ctx.in_shapes else None
        area = math.prod(shape[2:]) if shape and len(shape) > 2 else 1
        return area, area
    kernel = ctx.attrs.get("kernel", 1)
    kernel = list(kernel) if isinstance(kernel, (list, tuple)) else [kernel]
    stride = ctx.attrs.get("stride") or kernel
    stride = list(stride) if isinstance(stride, (list, tuple)) else [stride] * len(kernel)
    return max(math.prod(kernel), 1), max(math.prod(stride), 1e-12)


@gain("pool")
def pool(ctx: GainContext) -> Transfer:
    """Average or max pooling over windows of k elements with stride product `step`."""
    k, step = _window(ctx)
    x = ctx.x
    if ctx.fn in ("avg", "global_avg"):
        # each input is in k/step windows and gets 1/k of each window's gradient
        return Transfer(Moments(x.mu, x.v / k, x.s), elementwise(1.0 / (k * step), 1.0 / step, len(ctx.inputs)))
    if ctx.fn in ("max", "global_max"):
        shift, var_factor = max_order_stats(k)
        sd = math.sqrt(x.v)
        # each input wins 1/k of the k/step windows it belongs to
        back = elementwise(1.0 / step, 1.0 / step, len(ctx.inputs))
        return Transfer(Moments(x.mu + shift * sd, x.v * var_factor, x.s), back)
    return Transfer(x, elementwise(1.0, 1.0, len(ctx.inputs)), known=False)


@gain("reduce")
def reduce(ctx: GainContext) -> Transfer:
    """Mean or sum over k = (input size / output size) elements, taken as uncorrelated."""
    n_in, n_out = numel(ctx.in_shapes[0] if ctx.in_shapes else None), numel(ctx.out_shape)
    k = float(n_in / n_out) if n_in and n_out else 1.0
    x = ctx.x
    if ctx.fn == "mean":
        return Transfer(Moments(x.mu, x.v / k, x.s), elementwise(1.0 / (k * k), 1.0 / k, len(ctx.inputs)))
    if ctx.fn == "sum":
        return Transfer(Moments(k * x.mu, k * x.v, k * k * x.s), elementwise(1.0, 1.0, len(ctx.inputs)))
    return Transfer(x, elementwise(1.0, 1.0, len(ctx.inputs)), known=False)


def softmax_classes(ctx: GainContext) -> int:
    """Size of the softmax axis (1 for an axis past the last one: before opset 13, axis = rank
    is valid and normalises over an empty, one-element tail)."""
    shape = ctx.out_shape or (ctx.in_shapes[0] if ctx.in_shapes else None)
    axis = int(ctx.attrs.get("axis", -1))
    if not shape or not -len(shape) <= axis < len(shape):
        return 1
    return int(shape[axis])


@gain("softmax")
def softmax(ctx: GainContext) -> Transfer:
    """Softmax or log-softmax inside the network (as a model output, propagate.py seeds the loss)."""
    classes = softmax_classes(ctx)
    x = ctx.x
    stats = softmax_stats(x.var, classes)
    if ctx.fn == "log_softmax":
        # log p = x - logsumexp(x), unsaturated logsumexp ~ mu + log C + var / 2;
        # dx = dy - p sum(dy): E[dx^2] = (1 - 2/C + sum p^2) E[dy^2]
        out = Moments(-math.log(classes) - x.var / 2.0, x.v, x.s)
        return Transfer(out, elementwise(1.0 - 2.0 / classes + stats.participation, 0.0, len(ctx.inputs)))
    r = stats.participation
    out = Moments(1.0 / classes, max(r / classes - 1.0 / classes**2, 0.0), 0.0)
    return Transfer(out, elementwise(stats.backward, 0.0, len(ctx.inputs)))
