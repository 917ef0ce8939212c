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

from gradaudit.onnx_exec.registry import OpContext, register


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
    """Symmetric pads map to torch `padding`; output_padding passes through."""
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    kernel = list(attrs.get("kernel_shape", w.shape[2:]))
    dims = len(kernel)
    strides = list(attrs.get("strides", [1] * dims))
    dilations = list(attrs.get("dilations", [1] * dims))
    pads = list(attrs.get("pads", [0] * (2 * dims)))
    out_pad = list(attrs.get("output_padding", [0] * dims))
    padding = _symmetric(pads)
    crop = None
    if padding is None:
        crop, padding = pads, [0] * dims
    y = _CONV_T[dims](x, w, bias, strides, padding, out_pad, attrs.get("group", 1), dilations)
    if crop is not None:
        slices = [slice(None), slice(None)] + [slice(b, y.shape[2 + i] - e) for i, (b, e) in enumerate(zip(crop[:dims], crop[dims:]))]
        y = y[tuple(slices)]
    return y


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
def batch_norm(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Train mode normalises with batch statistics (running stats are left untouched)."""
    x, scale, bias, mean, var = inputs[:5]
    eps = attrs.get("epsilon", 1e-5)
    if ctx.train_mode:
        return F.batch_norm(x, None, None, scale, bias, training=True, eps=eps)
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=eps)


@register("InstanceNormalization", weight_slots=(1, 2))
def instance_norm(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x, scale, bias = inputs
    return F.instance_norm(x, weight=scale, bias=bias, eps=attrs.get("epsilon", 1e-5))


@register("LayerNormalization", weight_slots=(1, 2))
def layer_norm(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    axis = attrs.get("axis", -1) % x.dim()
    shape = tuple(x.shape[axis:])
    scale = scale.expand(shape)
    bias = bias.expand(shape) if bias is not None else None
    return F.layer_norm(x, shape, scale, bias, attrs.get("epsilon", 1e-5))


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
    return F.local_response_norm(inputs[0], attrs["size"], attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0))


_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


@register("MaxPool")
def max_pool(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x = inputs[0]
    kernel = list(attrs["kernel_shape"])
    strides, dilations, pads = _geometry(x, attrs, kernel)
    padding = _symmetric(pads)
    if padding is None or any(2 * p > k for p, k in zip(padding, kernel)):
        x, padding = F.pad(x, torch_pad_order(pads), value=-math.inf), [0] * len(kernel)
    ceil = bool(attrs.get("ceil_mode", 0))
    return _MAX_POOL[len(kernel)](x, kernel, strides, padding, dilations, ceil_mode=ceil)


@register("AveragePool")
def avg_pool(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Pads are applied explicitly; without count_include_pad the divisor counts real elements."""
    x = inputs[0]
    kernel = list(attrs["kernel_shape"])
    strides, _, pads = _geometry(x, attrs, kernel)
    ceil = bool(attrs.get("ceil_mode", 0))
    pool = _AVG_POOL[len(kernel)]
    if not any(pads):
        return pool(x, kernel, strides, 0, ceil_mode=ceil)
    order = torch_pad_order(pads)
    summed = pool(F.pad(x, order), kernel, strides, 0, ceil_mode=ceil)
    if attrs.get("count_include_pad", 0):
        return summed
    ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
    return summed / pool(F.pad(ones, order), kernel, strides, 0, ceil_mode=ceil)


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
register("ReduceMax")(_reduce(lambda x, d, k: x.amax(dim=d, keepdim=k)))
register("ReduceMin")(_reduce(lambda x, d, k: x.amin(dim=d, keepdim=k)))
register("ReduceProd")(_reduce(lambda x, d, k: _prod(x, d, k)))
register("ReduceL2")(_reduce(lambda x, d, k: torch.sqrt((x * x).sum(dim=d, keepdim=k))))
register("ReduceSumSquare")(_reduce(lambda x, d, k: (x * x).sum(dim=d, keepdim=k)))


def _prod(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        x = x.prod(dim=d, keepdim=keep)
    return x


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@register("Pad")
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


def _interpolate(x: torch.Tensor, scales: Sequence[float] | None, sizes: Sequence[int] | None, attrs: dict[str, Any]) -> torch.Tensor:
    mode = attrs.get("mode", "nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    coord = coord.decode() if isinstance(coord, bytes) else coord
    kwargs: dict[str, Any] = {}
    if sizes is not None:
        kwargs["size"] = [int(s) for s in sizes[2:]]
    else:
        kwargs["scale_factor"] = [float(s) for s in scales[2:]]
        kwargs["recompute_scale_factor"] = False
    if mode == "nearest":
        exact = coord != "asymmetric"
        return F.interpolate(x, mode="nearest-exact" if exact else "nearest", **kwargs)
    torch_mode = "bicubic" if mode == "cubic" else _LINEAR[x.dim()]
    return F.interpolate(x, mode=torch_mode, align_corners=coord == "align_corners", **kwargs)


@register("Resize")
def resize(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Opset 10: (X, scales); 11+: (X, roi, scales, sizes) with empty inputs for the unused one."""
    x = inputs[0]
    if ctx.opset < 11:
        return _interpolate(x, inputs[1].tolist(), None, {**attrs, "coordinate_transformation_mode": "asymmetric"})
    scales = inputs[2] if len(inputs) > 2 and inputs[2] is not None and inputs[2].numel() else None
    sizes = inputs[3] if len(inputs) > 3 and inputs[3] is not None and inputs[3].numel() else None
    return _interpolate(x, scales.tolist() if scales is not None else None, sizes.tolist() if sizes is not None else None, attrs)


@register("Upsample")
def upsample(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Legacy resize (opset 7-9): scales attribute (7) or input (9), asymmetric coordinates."""
    scales = inputs[1].tolist() if len(inputs) > 1 else list(attrs["scales"])
    return _interpolate(inputs[0], scales, None, {**attrs, "coordinate_transformation_mode": "asymmetric"})
