"""Network ONNX ops: convolution, dense products, normalisation, pooling, resizing, padding.

ONNX pads are `[x1_begin, x2_begin, ..., x1_end, x2_end]`; torch takes symmetric padding or,
through `F.pad`, pairs from the last dimension backwards. Asymmetric pads (old Caffe2 exports,
`auto_pad=SAME_*`) are therefore applied explicitly before the torch op.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from gradaudit.onnx_exec.op_registry import OpContext, OpResult, register


def _spatial_pads(
    x: torch.Tensor, attrs: dict[str, Any], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> list[int]:
    """The ONNX begin/end pads of the spatial dims, resolving `auto_pad`."""
    dims = len(kernel)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            begins.append(small if auto_pad == "SAME_UPPER" else large)
            ends.append(large if auto_pad == "SAME_UPPER" else small)
        return begins + ends
    if auto_pad == "VALID":
        return [0] * (2 * dims)
    return list(attrs.get("pads", [0] * (2 * dims)))


def torch_pad_order(pads: Sequence[int]) -> list[int]:
    """ONNX [b1..bn, e1..en] to F.pad's (bn, en, ..., b1, e1)."""
    n = len(pads) // 2
    order: list[int] = []
    for axis in reversed(range(n)):
        order += [int(pads[axis]), int(pads[axis + n])]
    return order


def _symmetric(pads: Sequence[int]) -> list[int] | None:
    n = len(pads) // 2
    return list(pads[:n]) if list(pads[:n]) == list(pads[n:]) else None


def _geometry(x: torch.Tensor, attrs: dict[str, Any], kernel: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    dims = len(kernel)
    strides = list(attrs.get("strides", [1] * dims))
    dilations = list(attrs.get("dilations", [1] * dims))
    return strides, dilations, _spatial_pads(x, attrs, kernel, strides, dilations)


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@register("Conv", weight_slots=(1, 2))
def conv(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    kernel = list(attrs.get("kernel_shape", w.shape[2:]))
    strides, dilations, pads = _geometry(x, attrs, kernel)
    padding = _symmetric(pads)
    if padding is None:
        x, padding = F.pad(x, torch_pad_order(pads)), [0] * len(kernel)
    return _CONV[len(kernel)](x, w, bias, strides, padding, dilations, attrs.get("group", 1))


@register("ConvTranspose", weight_slots=(1, 2))
def conv_transpose(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Symmetric pads map to torch `padding`; asymmetric pads, `output_shape` and `auto_pad`
    crop (or zero-extend) the unpadded result, the way onnx's reference places it."""
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    kernel = list(attrs.get("kernel_shape", w.shape[2:]))
    dims = len(kernel)
    strides = list(attrs.get("strides", [1] * dims))
    dilations = list(attrs.get("dilations", [1] * dims))
    pads = list(attrs.get("pads", [0] * (2 * dims)))
    out_pad = list(attrs.get("output_padding", [0] * dims))
    group = attrs.get("group", 1)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    padding = _symmetric(pads)
    if padding is not None and "output_shape" not in attrs and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        return _CONV_T[dims](x, w, bias, strides, padding, out_pad, group, dilations)
    y = _CONV_T[dims](x, w, None, strides, 0, 0, group, dilations)
    full = [s * (n - 1) + (k - 1) * d + 1 for s, n, k, d in zip(strides, x.shape[2:], kernel, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        sizes = list(attrs.get("output_shape", [n * s for n, s in zip(x.shape[2:], strides)]))[-dims:]
        totals = [f + p - o for f, p, o in zip(full, out_pad, sizes)]
        begins = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in totals]
    elif "output_shape" in attrs:
        sizes, begins = list(attrs["output_shape"])[-dims:], pads[:dims]
    else:
        begins = pads[:dims]
        sizes = [f + p - b - e for f, p, b, e in zip(full, out_pad, pads[:dims], pads[dims:])]
    # F.pad crops where its pads are negative and zero-fills where they are positive
    y = F.pad(y, torch_pad_order([-b for b in begins] + [b + o - f for b, o, f in zip(begins, sizes, full)]))
    return y if bias is None else y + bias.reshape((-1,) + (1,) * dims)


@register("Gemm", weight_slots=(1, 2))
def gemm(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    a, b = inputs[0], inputs[1]
    a = a.t() if attrs.get("transA", 0) else a
    b = b.t() if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * (a @ b)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + attrs.get("beta", 1.0) * inputs[2]
    return y


@register("MatMul", weight_slots=(1,))
def matmul(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return torch.matmul(inputs[0], inputs[1])


@register("Einsum")
def einsum(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    equation = attrs["equation"]
    return torch.einsum(equation.decode() if isinstance(equation, bytes) else equation, *inputs)


@register("BatchNormalization", weight_slots=(1, 2), stat_slots=(3, 4))
def batch_norm(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> OpResult:
    """Train mode, or a node exported with training_mode=1, normalises with batch statistics
    (the module's running stats stay untouched).

    A node exported in training mode (opset 14+, three outputs) also yields the updated running
    statistics, `running * momentum + batch * (1 - momentum)` with the population variance, when
    a reader needs them.
    """
    x, scale, bias, mean, var = inputs[:5]
    eps = attrs.get("epsilon", 1e-5)
    if ctx.train_mode or attrs.get("training_mode", 0):
        y = F.batch_norm(x, None, None, scale, bias, training=True, eps=eps)
    else:
        y = F.batch_norm(x, mean, var, scale, bias, training=False, eps=eps)
    if ctx.used_outputs == 1 or not attrs.get("training_mode", 0):
        return y
    dims = [d for d in range(x.dim()) if d != 1]
    momentum = attrs.get("momentum", 0.9)
    batch_var, batch_mean = torch.var_mean(x.detach(), dim=dims, correction=0)
    return y, mean * momentum + batch_mean * (1 - momentum), var * momentum + batch_var * (1 - momentum)


@register("InstanceNormalization", weight_slots=(1, 2))
def instance_norm(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x, scale, bias = inputs
    return F.instance_norm(x, weight=scale, bias=bias, eps=attrs.get("epsilon", 1e-5))


@register("LayerNormalization", weight_slots=(1, 2))
def layer_norm(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> OpResult:
    """Normalises over the dims from `axis` on (negative counts from the end), in float32 for
    half types (stash_type 1); the optional Mean and InvStdDev outputs keep the reduced dims."""
    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    axis = attrs.get("axis", -1) % x.dim()
    shape = tuple(x.shape[axis:])
    eps = attrs.get("epsilon", 1e-5)
    wide = x.float() if x.dtype in (torch.float16, torch.bfloat16) and attrs.get("stash_type", 1) == 1 else x
    if ctx.used_outputs == 1:
        y = F.layer_norm(
            wide,
            shape,
            scale.expand(shape).to(wide.dtype),
            None if bias is None else bias.expand(shape).to(wide.dtype),
            eps,
        )
        return y.to(x.dtype)
    dims = tuple(range(axis, x.dim()))
    var, mean = torch.var_mean(wide, dim=dims, keepdim=True, correction=0)
    inv_std = torch.rsqrt(var + eps)
    y = (wide - mean) * inv_std * scale
    y = y if bias is None else y + bias
    return y.to(x.dtype), mean, inv_std


def rms_normalized(
    x: torch.Tensor, eps: float, axis: int = -1, widen: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / sqrt(mean(x^2) + eps), the inverse rms) over the dims from `axis` on, in float32 for
    half types when `widen`; RMSNormalization and onnxruntime's RMS norms share it."""
    wide = x.float() if widen and x.dtype in (torch.float16, torch.bfloat16) else x
    inverse = torch.rsqrt(wide.square().mean(dim=tuple(range(axis % x.dim(), x.dim())), keepdim=True) + eps)
    return wide * inverse, inverse


@register("RMSNormalization", weight_slots=(1,))
def rms_norm(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * scale over the dims from `axis` on (opset 23), in float32
    for half types (stash_type 1)."""
    x, scale = inputs[0], inputs[1]
    normed, _ = rms_normalized(x, attrs.get("epsilon", 1e-5), attrs.get("axis", -1), attrs.get("stash_type", 1) == 1)
    return (normed * scale).to(x.dtype)


@register("GroupNormalization", weight_slots=(1, 2))
def group_norm(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Opset 18 gives per-group affines, opset 21 per-channel ones: expand to channels."""
    x, scale, bias = inputs
    groups = attrs["num_groups"]
    channels = x.shape[1]
    if scale.numel() != channels:
        scale = scale.repeat_interleave(channels // groups)
        bias = bias.repeat_interleave(channels // groups)
    return F.group_norm(x, groups, scale, bias, attrs.get("epsilon", 1e-5))


@register("LRN")
def lrn(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return F.local_response_norm(
        inputs[0], attrs["size"], attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0)
    )


_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _pooled_sizes(
    x: torch.Tensor,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int],
    ceil: bool,
) -> list[int]:
    """ONNX pool output sizes; in ceil mode a last window that would start in the end padding
    is dropped."""
    dims, sizes = len(kernel), []
    for axis, (n, k, s, d) in enumerate(zip(x.shape[2:], kernel, strides, dilations)):
        span = n + pads[axis] + pads[axis + dims] - ((k - 1) * d + 1)
        out = (math.ceil(span / s) if ceil else span // s) + 1
        if ceil and (out - 1) * s >= n + pads[axis]:
            out -= 1
        sizes.append(out)
    return sizes


def _window_sums(
    x: torch.Tensor,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int],
    sizes: Sequence[int],
    fill: float = 0.0,
) -> torch.Tensor:
    """Per-channel sums over every (dilated) window, by a grouped convolution with a kernel of
    ones: torch's avg/lp pools take no dilations. `fill` pads the declared pads; the ceil-mode
    overhang is always zero."""
    dims = len(kernel)
    extra = [max((o - 1) * s + (k - 1) * d + 1 - (n + b + e), 0)
             for o, s, k, d, n, b, e in zip(sizes, strides, kernel, dilations, x.shape[2:], pads[:dims], pads[dims:])]
    x = F.pad(F.pad(x, torch_pad_order(pads), value=fill), torch_pad_order([0] * dims + extra))
    channels = x.shape[1]
    ones = torch.ones((channels, 1) + tuple(kernel), dtype=x.dtype, device=x.device)
    summed = _CONV[dims](x, ones, None, list(strides), 0, list(dilations), channels)
    return summed[(slice(None), slice(None)) + tuple(slice(0, o) for o in sizes)]


@register("MaxPool")
def max_pool(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> OpResult:
    """The optional Indices output flattens over the whole input (row-major, or column-major
    over the spatial dims with storage_order=1), counting positions of the unpadded input."""
    x = inputs[0]
    kernel = list(attrs["kernel_shape"])
    strides, dilations, pads = _geometry(x, attrs, kernel)
    padding = _symmetric(pads)
    spatial = tuple(x.shape[2:])
    begins = [0] * len(kernel)
    if padding is None or any(2 * p > k for p, k in zip(padding, kernel)):
        x, padding, begins = F.pad(x, torch_pad_order(pads), value=-math.inf), [0] * len(kernel), pads[: len(kernel)]
    ceil = bool(attrs.get("ceil_mode", 0))
    if ctx.used_outputs < 2:
        return _MAX_POOL[len(kernel)](x, kernel, strides, padding, dilations, ceil_mode=ceil)
    y, flat = _MAX_POOL[len(kernel)](x, kernel, strides, padding, dilations, ceil_mode=ceil, return_indices=True)
    coords = torch.unravel_index(flat, tuple(x.shape[2:]))
    coords = [c - b for c, b in zip(coords, begins)]
    if attrs.get("storage_order", 0):
        coords, spatial = coords[::-1], spatial[::-1]
    index = torch.zeros_like(flat)
    for c, n in zip(coords, spatial):
        index = index * n + c
    planes = torch.arange(y.shape[0] * y.shape[1], device=y.device).reshape(y.shape[:2] + (1,) * len(kernel))
    return y, index + planes * math.prod(spatial)


@register("AveragePool")
def avg_pool(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Pads are applied explicitly; without count_include_pad the divisor counts real elements.
    Dilated windows (opset 19) and ceil mode go through window sums, which follow ONNX's sizes."""
    x = inputs[0]
    kernel = list(attrs["kernel_shape"])
    strides, dilations, pads = _geometry(x, attrs, kernel)
    ceil = bool(attrs.get("ceil_mode", 0))
    pool = _AVG_POOL[len(kernel)]
    if any(d != 1 for d in dilations) or ceil:
        sizes = _pooled_sizes(x, kernel, strides, dilations, pads, ceil)
        summed = _window_sums(x, kernel, strides, dilations, pads, sizes)
        ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
        counted = _window_sums(
            ones, kernel, strides, dilations, pads, sizes, fill=float(attrs.get("count_include_pad", 0))
        )
        return summed / counted
    if not any(pads):
        return pool(x, kernel, strides, 0)
    order = torch_pad_order(pads)
    summed = pool(F.pad(x, order), kernel, strides, 0)
    if attrs.get("count_include_pad", 0):
        return summed
    ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
    return summed / pool(F.pad(ones, order), kernel, strides, 0)


@register("GlobalAveragePool")
def global_avg_pool(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x = inputs[0]
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool")
def global_max_pool(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x = inputs[0]
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


def _reduce_axes(inputs: Sequence[Any], attrs: dict[str, Any]) -> list[int] | None:
    """Axes are an attribute until opset 13 (ReduceSum) / 18 (the others), an input after."""
    if len(inputs) > 1 and inputs[1] is not None and inputs[1].numel():
        return [int(a) for a in inputs[1].tolist()]
    axes = attrs.get("axes")
    return list(axes) if axes else None


def _reduce(fn):
    def run(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
        x = inputs[0]
        axes = _reduce_axes(inputs, attrs)
        if axes is None and attrs.get("noop_with_empty_axes", 0):
            return x
        dims = tuple(axes) if axes is not None else tuple(range(x.dim()))
        return fn(x, dims, bool(attrs.get("keepdims", 1)))

    return run


register("ReduceMean")(_reduce(lambda x, d, k: x.mean(dim=d, keepdim=k)))
register("ReduceSum")(_reduce(lambda x, d, k: x.sum(dim=d, keepdim=k)))
def _extreme(fn, empty: float):
    """amax/amin, with ONNX's value for an empty reduction (-inf for max, inf for min; False /
    True for bool) where torch refuses one."""

    def run(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
        if x.numel() and all(x.shape[d] for d in dims):
            return fn(x, dim=dims, keepdim=keep)
        reduced = {a % x.dim() for a in dims}
        shape = [1 if d in reduced else n for d, n in enumerate(x.shape) if keep or d not in reduced]
        if x.dtype == torch.bool:
            value: Any = empty > 0
        elif x.is_floating_point():
            value = empty
        else:
            value = torch.iinfo(x.dtype).max if empty > 0 else torch.iinfo(x.dtype).min
        return torch.full(shape, value, dtype=x.dtype, device=x.device)

    return run


register("ReduceMax")(_reduce(_extreme(torch.amax, -math.inf)))
register("ReduceMin")(_reduce(_extreme(torch.amin, math.inf)))
register("ReduceProd")(_reduce(lambda x, d, k: _prod(x, d, k)))
register("ReduceL2")(_reduce(lambda x, d, k: torch.sqrt((x * x).sum(dim=d, keepdim=k))))
register("ReduceSumSquare")(_reduce(lambda x, d, k: (x * x).sum(dim=d, keepdim=k)))
register("ReduceL1")(_reduce(lambda x, d, k: x.abs().sum(dim=d, keepdim=k)))
register("ReduceLogSum")(_reduce(lambda x, d, k: torch.log(x.sum(dim=d, keepdim=k))))
register("ReduceLogSumExp")(_reduce(lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k)))


@register("MeanVarianceNormalization")
def mean_variance_normalization(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """(x - mean) / sqrt(population var) over `axes` (default batch and spatial), eps 1e-9."""
    x = inputs[0]
    axes = tuple(attrs.get("axes", [0, 2, 3]))
    var, mean = torch.var_mean(x, dim=axes, keepdim=True, correction=0)
    return (x - mean) / (var.sqrt() + 1e-9)


@register("LpNormalization")
def lp_normalization(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x = inputs[0]
    norm = torch.linalg.vector_norm(x, ord=attrs.get("p", 2), dim=attrs.get("axis", -1), keepdim=True)
    return x / torch.where(norm == 0, torch.ones_like(norm), norm)  # an all-zero slice stays zero


@register("Hardmax")
def hardmax(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """One-hot of the first maximum; before opset 13 over the input flattened at `axis`."""
    x = inputs[0]
    if ctx.opset < 13:
        axis = attrs.get("axis", 1) % x.dim()
        flat = x.reshape(math.prod(x.shape[:axis]), -1)
        return F.one_hot(flat.argmax(-1), flat.shape[-1]).to(x.dtype).reshape(x.shape)
    axis = attrs.get("axis", -1) % x.dim()
    return F.one_hot(x.argmax(axis), x.shape[axis]).to(x.dtype).movedim(-1, axis)


@register("GlobalLpPool")
def global_lp_pool(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x = inputs[0]
    return torch.linalg.vector_norm(x, ord=attrs.get("p", 2), dim=tuple(range(2, x.dim())), keepdim=True)


@register("LpPool")
def lp_pool(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """(sum over the window of |x|^p)^(1/p), pads applied explicitly, windows dilated."""
    x = inputs[0]
    p = attrs.get("p", 2)
    kernel = list(attrs["kernel_shape"])
    strides, dilations, pads = _geometry(x, attrs, kernel)
    sizes = _pooled_sizes(x, kernel, strides, dilations, pads, bool(attrs.get("ceil_mode", 0)))
    return _window_sums(x.abs() ** p, kernel, strides, dilations, pads, sizes) ** (1.0 / p)


def _prod(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        x = x.prod(dim=d, keepdim=keep)
    return x


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@register("Pad", setting_slots=(1, 2, 3))
def pad(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Pads/value are attributes before opset 11, inputs after; `axes` (opset 18) selects dims."""
    x = inputs[0]
    mode = attrs.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if len(inputs) > 1:
        pads = [int(p) for p in inputs[1].tolist()]
        value = inputs[2].item() if len(inputs) > 2 and inputs[2] is not None and inputs[2].numel() else 0.0
    else:
        pads, value = list(attrs["pads"]), attrs.get("value", 0.0)
    if len(inputs) > 3 and inputs[3] is not None:
        axes = [int(a) % x.dim() for a in inputs[3].tolist()]
        full = [0] * (2 * x.dim())
        for i, axis in enumerate(axes):
            full[axis], full[axis + x.dim()] = pads[i], pads[i + len(axes)]
        pads = full
    order = torch_pad_order(pads)
    while len(order) > 2 and order[-2:] == [0, 0]:
        order = order[:-2]
    if mode == "constant":
        return F.pad(x, order, value=value)
    return F.pad(x, order, mode=_PAD_MODES[mode])


_LINEAR = {3: "linear", 4: "bilinear", 5: "trilinear"}


# ONNX source coordinate of output index i along an axis: (i, scale, n_in, n_out) -> float.
# align_corners and pytorch_half_pixel divide by the unrounded output length n_in * scale.
_COORDINATES = {
    "half_pixel": lambda i, s, n, m: (i + 0.5) / s - 0.5,
    "pytorch_half_pixel": lambda i, s, n, m: (i + 0.5) / s - 0.5 if s * n != 1 else 0.0 * i - 0.5,
    "align_corners": lambda i, s, n, m: i * (n - 1) / (s * n - 1) if s * n != 1 else 0.0 * i,
    "asymmetric": lambda i, s, n, m: i / s,
    "half_pixel_symmetric": lambda i, s, n, m: n / 2 * (1 - m / (s * n)) + (i + 0.5) / s - 0.5,
}
_ROUNDING = {
    "round_prefer_floor": lambda c: torch.ceil(c - 0.5),
    "round_prefer_ceil": lambda c: torch.floor(c + 0.5),
    "floor": torch.floor,
    "ceil": torch.ceil,
}


def _cubic(distance: torch.Tensor, a: float) -> torch.Tensor:
    """Keys' cubic convolution kernel with coefficient a (ONNX cubic_coeff_a)."""
    t = distance.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def axis_weights(
    n_in: int, n_out: int, scale: float, attrs: dict[str, Any], roi: Sequence[float] = (0.0, 1.0)
) -> torch.Tensor:
    """The (n_out, n_in) float64 weights one resized axis applies: row i mixes the inputs of
    output i, for every ONNX mode, coordinate transformation and nearest rounding. With
    `antialias` a downsampling kernel widens by 1/scale (its weights renormalised), as in onnx's
    reference. tf_crop_and_resize samples the `roi` window; rows outside the input are zero
    (`Resize` fills them with extrapolation_value)."""
    mode = attrs.get("mode", "nearest")
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    out = torch.arange(n_out, dtype=torch.float64)
    if coord == "tf_crop_and_resize":
        start, end = roi
        source = (
            out * (end - start) * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0 * out + (end - start) * (n_in - 1) / 2
        )
        source = source + start * (n_in - 1)
    else:
        source = _COORDINATES[coord](out, scale, n_in, n_out)
    if mode == "nearest":
        index = _ROUNDING[attrs.get("nearest_mode", "round_prefer_floor")](source).clamp(0, n_in - 1).long()
        matrix = F.one_hot(index, n_in).double()
    else:
        support = 1 if mode == "linear" else 2
        antialias = bool(attrs.get("antialias", 0))
        stretch = min(scale, 1.0) if antialias else 1.0
        first = math.floor(-support / stretch) + 1
        neighbours = source.floor()[:, None] + torch.arange(first, support + 1 - first, dtype=torch.float64)
        distance = stretch * (source[:, None] - neighbours)
        if mode == "linear":
            weights = (1 - distance.abs()).clamp(min=0)
        else:
            weights = _cubic(distance, attrs.get("cubic_coeff_a", -0.75))
        if attrs.get("exclude_outside", 0):
            weights = weights * ((neighbours >= 0) & (neighbours <= n_in - 1))
        if antialias or attrs.get("exclude_outside", 0):
            weights = weights / weights.sum(1, keepdim=True)
        matrix = torch.zeros(n_out, n_in, dtype=torch.float64).scatter_add_(
            1, neighbours.clamp(0, n_in - 1).long(), weights
        )
    if coord == "tf_crop_and_resize":
        matrix[(source < 0) | (source > n_in - 1)] = 0.0
    return matrix


# Coordinate modes in which torch's own interpolation computes exactly ONNX's linear / cubic.
_TORCH_EXACT = {"half_pixel": False, "align_corners": True}


def _interpolate(x: torch.Tensor, scales: Sequence[float] | None, sizes: Sequence[int] | None, attrs: dict[str, Any],
                 roi: Sequence[float] | None = None) -> torch.Tensor:
    """Resample every axis to `sizes` sampling at `scales` (one may be None: derived).

    Nearest by index selection; linear / cubic by torch where it matches ONNX exactly, else by
    applying each axis's weight matrix. `roi` ([starts..., ends...] over all axes) is read by
    tf_crop_and_resize only."""
    extent: dict[str, Any] | None = None  # how torch is told the output extent, if it can be
    if sizes is None:  # ONNX samples at the given scale, not at the rounded sizes' ratio
        sizes = [math.floor(n * float(s)) for n, s in zip(x.shape, scales)]
        extent = {"scale_factor": [float(s) for s in scales[2:]], "recompute_scale_factor": False}
    elif scales is None:
        scales = [m / n for n, m in zip(x.shape, sizes)]
        extent = {"size": [int(s) for s in sizes[2:]]}
    mode = attrs.get("mode", "nearest")
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    torch_mode = {"linear": _LINEAR.get(x.dim()), "cubic": "bicubic" if x.dim() == 4 else None}.get(mode)
    plain = (
        attrs.get("cubic_coeff_a", -0.75) == -0.75
        and not attrs.get("exclude_outside", 0)
        and not attrs.get("antialias", 0)
    )
    spatial_only = list(sizes[:2]) == list(x.shape[:2]) and list(scales[:2]) == [1, 1]
    # torch's align_corners divides by the rounded output size, ONNX's by n * scale
    exact = coord == "half_pixel" or (coord == "align_corners" and "size" in (extent or {}))
    if (
        extent is not None
        and spatial_only
        and torch_mode
        and exact
        and (mode == "linear" or plain)
        and not attrs.get("antialias", 0)
    ):
        return F.interpolate(x, mode=torch_mode, align_corners=coord == "align_corners", **extent)
    cropping = coord == "tf_crop_and_resize"
    if cropping:
        roi = list(roi) if roi is not None and len(roi) else [0.0] * x.dim() + [1.0] * x.dim()
        filled = torch.ones((1,) * x.dim(), dtype=torch.float64)
    for axis in range(x.dim()):
        if int(sizes[axis]) == x.shape[axis] and float(scales[axis]) == 1.0 and not cropping:
            continue
        window = (float(roi[axis]), float(roi[axis + x.dim()])) if cropping else (0.0, 1.0)
        weights = axis_weights(x.shape[axis], int(sizes[axis]), float(scales[axis]), attrs, window)
        if cropping:  # which output positions sample inside the input, per axis
            inside = (weights.abs().sum(1) > 0).double().reshape((1,) * axis + (-1,) + (1,) * (x.dim() - axis - 1))
            filled = filled * inside
        if mode == "nearest" and not cropping:
            x = x.index_select(axis, weights.argmax(1).to(x.device))
        else:
            x = torch.movedim(torch.tensordot(x, weights.t().to(x.device, x.dtype), dims=([axis], [0])), -1, axis)
    if cropping:
        x = torch.where(filled.to(x.device) > 0, x, torch.full_like(x, attrs.get("extrapolation_value", 0.0)))
    return x


def resize_attrs(op_type: str, attrs: dict[str, Any], opset: int) -> dict[str, Any]:
    """Attributes in Resize-11 form: Upsample and Resize-10 sample at asymmetric coordinates and
    take the nearest input by flooring."""
    if op_type == "Resize" and opset >= 11:
        return attrs
    return {**attrs, "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}


def interpolation_matrix(n_in: int, n_out: int, attrs: dict[str, Any]) -> torch.Tensor:
    """The weights of one axis resized from n_in to n_out (`axis_weights` at scale n_out / n_in)."""
    return axis_weights(n_in, n_out, n_out / n_in, attrs)


@register("Resize", setting_slots=(1, 2, 3))
def resize(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Opset 10: (X, scales); 11+: (X, roi, scales, sizes) with empty inputs for the unused one."""
    x = inputs[0]
    attrs = resize_attrs("Resize", attrs, ctx.opset)
    if ctx.opset < 11:
        return _interpolate(x, inputs[1].tolist(), None, attrs)
    scales = inputs[2].tolist() if len(inputs) > 2 and inputs[2] is not None and inputs[2].numel() else None
    sizes = inputs[3].tolist() if len(inputs) > 3 and inputs[3] is not None and inputs[3].numel() else None
    axes = [a % x.dim() for a in attrs.get("axes", range(x.dim()))]
    roi = None
    if len(inputs) > 1 and inputs[1] is not None and inputs[1].numel():
        given = inputs[1].tolist()
        roi = _on_axes(given[: len(axes)], axes, [0.0] * x.dim()) + _on_axes(given[len(axes) :], axes, [1.0] * x.dim())
    if scales is not None:
        return _interpolate(x, _on_axes(scales, axes, [1.0] * x.dim()), None, attrs, roi)
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    if policy == "stretch":
        return _interpolate(x, None, _on_axes(sizes, axes, list(x.shape)), attrs, roi)
    # one scale for all given axes, the largest that fits inside (or the smallest around) the sizes
    scale = (min if policy == "not_larger" else max)(m / x.shape[a] for a, m in zip(axes, sizes))
    sizes = [int(scale * x.shape[a] + 0.5) for a in axes]
    return _interpolate(
        x, _on_axes([scale] * len(axes), axes, [1.0] * x.dim()), _on_axes(sizes, axes, list(x.shape)), attrs
    )


def _on_axes(values: Sequence[Any], axes: Sequence[int], full: list[Any]) -> list[Any]:
    """Per-axis values given for `axes` only (opset 18), spread over all axes."""
    for axis, value in zip(axes, values):
        full[axis] = value
    return full


@register("Upsample", setting_slots=(1,))
def upsample(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Legacy resize (opset 7-9): scales attribute (7) or input (9), asymmetric coordinates."""
    scales = inputs[1].tolist() if len(inputs) > 1 else list(attrs["scales"])
    return _interpolate(inputs[0], scales, None, resize_attrs("Upsample", attrs, ctx.opset))
