"""Quantisation ONNX ops (QDQ and QOperator forms), run so a quantised model is audited on its
float weights.

Where a gradient can flow (grad mode on and the input requires one: the probe on a QAT/QDQ
model), QuantizeLinear is a fake-quant step with a straight-through estimator: it returns the
quantised values as a float tensor whose gradient is that of x / scale inside the type's range
(zero where it saturates), so Dequantize(Quantize(x)) passes gradients as the identity would.
Without a gradient (folding, plain inference) it returns the integer tensor ONNX specifies.
Int8 weights behind a DequantizeLinear fold at build time into float constants, which a weight
slot downstream turns into parameters. QLinear* and *Integer ops compute in float64 on the
dequantised operands (exact for int8/uint8 products of the sizes real models use).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from gradaudit.onnx_exec.op_registry import OpContext, optional_input, register
from gradaudit.onnx_exec.ops_elementwise import torch_dtype
from gradaudit.onnx_exec.ops_nn import conv


def _along(param: torch.Tensor, x: torch.Tensor, axis: int, block_size: int) -> torch.Tensor:
    """A scale or zero point shaped to broadcast against x: a scalar as is, a 1-D tensor along
    `axis`, a blocked one (same rank as x) repeated `block_size` times along `axis`."""
    if param.numel() == 1:
        return param.reshape(())
    axis %= x.dim()
    if block_size:
        return param.repeat_interleave(block_size, dim=axis).narrow(axis, 0, x.shape[axis])
    return param.reshape((-1,) + (1,) * (x.dim() - 1 - axis))


def _int_range(dtype: torch.dtype) -> tuple[float, float]:
    """The range of the quantised type. int32 is no quantised type of ONNX: an int32 zero point is
    a uint16 one held wider (`ops_elementwise.WIDER_UNSIGNED`)."""
    if dtype == torch.int32:
        return 0.0, 65535.0
    info = torch.iinfo(dtype)
    return float(info.min), float(info.max)


def _needs_gradient(x: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, out_dtype: torch.dtype,
             axis: int = 1, block_size: int = 0) -> torch.Tensor:
    """saturate(round_half_even(x / scale) + zero_point): the integer tensor, or its float
    straight-through form where a gradient flows (module docstring)."""
    work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32  # onnx divides in x's type
    scaled = (x.to(work) / _along(scale, x, axis, block_size).to(work)).to(torch.float64)
    if _needs_gradient(x):
        rounded = scaled + (torch.round(scaled) - scaled).detach()  # straight-through rounding
    else:
        rounded = torch.round(scaled)
    low, high = _int_range(out_dtype)
    if zero_point is not None:
        rounded = rounded + _along(zero_point, x, axis, block_size).to(torch.float64)
    quantised = torch.clamp(rounded, low, high)
    return quantised.to(x.dtype if _needs_gradient(x) else out_dtype)


def _shifted(
    q: torch.Tensor, zero_point: torch.Tensor | None, like: torch.Tensor, axis: int, block_size: int = 0
) -> torch.Tensor:
    """q - zero_point in float64, the zero point broadcast against `like` (`_along`)."""
    values = q.to(torch.float64)
    return values if zero_point is None else values - _along(zero_point, like, axis, block_size).to(torch.float64)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, axis: int = 1,
               block_size: int = 0) -> torch.Tensor:
    """(q - zero_point) * scale, in the scale's float type."""
    values = _shifted(q, zero_point, q, axis, block_size) * _along(scale, q, axis, block_size).to(torch.float64)
    return values.to(scale.dtype if scale.is_floating_point() else torch.float32)


def _out_dtype(zero_point: torch.Tensor | None, attrs: dict[str, Any]) -> torch.dtype:
    """The zero point's type, else the `output_dtype` attribute (opset 21), else uint8."""
    if zero_point is not None:
        return zero_point.dtype
    return torch_dtype(attrs["output_dtype"]) if attrs.get("output_dtype") else torch.uint8


@register("QuantizeLinear", weight_slots=(0,), setting_slots=(1, 2))
def quantize_linear(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x, scale, zero_point = inputs[0], inputs[1], optional_input(inputs, 2)
    return quantize(
        x, scale, zero_point, _out_dtype(zero_point, attrs), attrs.get("axis", 1), attrs.get("block_size", 0)
    )


@register("DequantizeLinear", setting_slots=(1, 2))
def dequantize_linear(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    q, scale, zero_point = inputs[0], inputs[1], optional_input(inputs, 2)
    y = dequantize(q, scale, zero_point, attrs.get("axis", 1), attrs.get("block_size", 0))
    return y.to(torch_dtype(attrs["output_dtype"])) if attrs.get("output_dtype") else y


@register("DynamicQuantizeLinear")
def dynamic_quantize_linear(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple[torch.Tensor, ...]:
    """uint8 over [min(0, x_min), max(0, x_max)]: scale = range / 255, zero point rounds -x_min / scale."""
    x = inputs[0]
    low = torch.clamp(x.detach().min(), max=0.0)
    high = torch.clamp(x.detach().max(), min=0.0)
    scale = ((high - low) / 255.0).to(torch.float32)
    zero_point = torch.clamp(torch.round(-low / scale), 0, 255).to(torch.uint8)
    return quantize(x, scale, zero_point, torch.uint8), scale, zero_point


@register("QLinearMatMul", setting_slots=(1, 2, 4, 5, 6, 7))
def qlinear_matmul(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Scales and zero points: per tensor, per row of a ([M]) or per column of b ([N])."""
    a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp = inputs
    a_float = dequantize(a, a_scale, a_zp, axis=-2)
    b_float = dequantize(b, b_scale, b_zp, axis=-1)
    return quantize(a_float @ b_float, y_scale, y_zp, y_zp.dtype)


@register("QLinearConv", setting_slots=(1, 2, 4, 5, 6, 7, 8))
def qlinear_conv(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """The float conv of the dequantised operands (per-output-channel weight scales), the int32
    bias scaled by x_scale * w_scale, requantised to y's type."""
    x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp = inputs[:8]
    bias = optional_input(inputs, 8)
    x_float = dequantize(x, x_scale, x_zp).double()
    w_float = dequantize(w, w_scale, w_zp, axis=0).double()
    b_float = None if bias is None else bias.double() * (x_scale.double() * w_scale.double()).reshape(-1)
    y = conv([x_float, w_float, b_float], attrs, ctx)
    return quantize(y, y_scale, y_zp, y_zp.dtype)


@register("MatMulInteger")
def matmul_integer(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    a, b = inputs[0], inputs[1]
    a_zp, b_zp = optional_input(inputs, 2), optional_input(inputs, 3)
    return torch.round(_shifted(a, a_zp, a, -2) @ _shifted(b, b_zp, b, -1)).to(torch.int32)


@register("ConvInteger")
def conv_integer(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x, w = inputs[0], inputs[1]
    x_zp, w_zp = optional_input(inputs, 2), optional_input(inputs, 3)
    y = conv([_shifted(x, x_zp, x, 1), _shifted(w, w_zp, w, 0)], attrs, ctx)
    return torch.round(y).to(torch.int32)
