"""Elementwise ONNX ops: activations, arithmetic, comparisons, casts and dropout."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from gradaudit.onnx_exec.op_registry import OpContext, register


def _unary(fn):
    return lambda inputs, attrs, ctx: fn(inputs[0], attrs)


# Unary ops: one tensor in, parameters from attributes (ONNX's defaults where absent).
_UNARY = {
    "Relu": lambda x, a: torch.relu(x),
    "Tanh": lambda x, a: torch.tanh(x),
    "Sigmoid": lambda x, a: torch.sigmoid(x),
    "LeakyRelu": lambda x, a: F.leaky_relu(x, a.get("alpha", 0.01)),
    "Elu": lambda x, a: F.elu(x, a.get("alpha", 1.0)),
    "Celu": lambda x, a: F.celu(x, a.get("alpha", 1.0)),
    "Selu": lambda x, a: a.get("gamma", 1.05070102214813232421875)
    * torch.where(x > 0, x, a.get("alpha", 1.67326319217681884765625) * torch.expm1(x)),
    "Gelu": lambda x, a: F.gelu(x, approximate=a.get("approximate", "none")),
    "Softplus": lambda x, a: F.softplus(x),
    "Softsign": lambda x, a: F.softsign(x),
    "HardSigmoid": lambda x, a: torch.clamp(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0.0, 1.0),
    "HardSwish": lambda x, a: F.hardswish(x),
    "Mish": lambda x, a: F.mish(x),
    "Swish": lambda x, a: x * torch.sigmoid(a.get("alpha", 1.0) * x),
    "ThresholdedRelu": lambda x, a: torch.where(x > a.get("alpha", 1.0), x, torch.zeros_like(x)),
    "Erf": lambda x, a: torch.erf(x),
    "Abs": lambda x, a: torch.abs(x),
    "Neg": lambda x, a: torch.neg(x),
    "Exp": lambda x, a: torch.exp(x),
    "Log": lambda x, a: torch.log(x),
    "Sqrt": lambda x, a: torch.sqrt(x),
    "Reciprocal": lambda x, a: torch.reciprocal(x),
    "Sin": lambda x, a: torch.sin(x),
    "Cos": lambda x, a: torch.cos(x),
    "Tan": lambda x, a: torch.tan(x),
    "Asin": lambda x, a: torch.asin(x),
    "Acos": lambda x, a: torch.acos(x),
    "Atan": lambda x, a: torch.atan(x),
    "Sinh": lambda x, a: torch.sinh(x),
    "Cosh": lambda x, a: torch.cosh(x),
    "Asinh": lambda x, a: torch.asinh(x),
    "Acosh": lambda x, a: torch.acosh(x),
    "Atanh": lambda x, a: torch.atanh(x),
    "Floor": lambda x, a: torch.floor(x),
    "Ceil": lambda x, a: torch.ceil(x),
    "Round": lambda x, a: torch.round(x),
    "Sign": lambda x, a: torch.sign(x),
    "Not": lambda x, a: torch.logical_not(x),
    "IsNaN": lambda x, a: torch.isnan(x),
    "IsInf": lambda x, a: (torch.isposinf(x) if a.get("detect_positive", 1) else torch.zeros_like(x, dtype=torch.bool))
    | (torch.isneginf(x) if a.get("detect_negative", 1) else torch.zeros_like(x, dtype=torch.bool)),
    "Identity": lambda x, a: x,
}
for _op, _fn in _UNARY.items():
    register(_op)(_unary(_fn))


def _binary(fn):
    return lambda inputs, attrs, ctx: fn(inputs[0], inputs[1])


def _int_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ONNX Div truncates integer division toward zero."""
    if a.is_floating_point() or b.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


_BINARY = {
    "Add": torch.add,
    "Sub": torch.sub,
    "Mul": torch.mul,
    "Div": _int_div,
    "Pow": lambda a, b: torch.pow(a, b.to(a.dtype) if a.is_floating_point() else b),
    "Equal": torch.eq,
    "Less": torch.lt,
    "LessOrEqual": torch.le,
    "Greater": torch.gt,
    "GreaterOrEqual": torch.ge,
    "And": torch.logical_and,
    "Or": torch.logical_or,
    "Xor": torch.logical_xor,
}
for _op, _fn in _BINARY.items():
    register(_op, affine_operands=_op in ("Add", "Sub", "Mul", "Div"), setting_slots=(1,) if _op == "Pow" else ())(
        _binary(_fn)
    )


@register("Mod")
def mod(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """fmod=1 follows C (sign of the dividend), fmod=0 Python (sign of the divisor)."""
    return torch.fmod(inputs[0], inputs[1]) if attrs.get("fmod", 0) else torch.remainder(inputs[0], inputs[1])


def _variadic(fn):
    def run(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
        result = inputs[0]
        for x in inputs[1:]:
            result = fn(result, x)
        return result

    return run


register("Sum", affine_operands=True)(_variadic(torch.add))
register("Max")(_variadic(torch.maximum))
register("Min")(_variadic(torch.minimum))


@register("Mean")
def mean(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return _variadic(torch.add)(inputs, attrs, ctx) / len(inputs)


@register("PRelu", weight_slots=(1,))
def prelu(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Before opset 7 a 1-D slope is per channel (axis 1); from 7 on it broadcasts from the right."""
    x, slope = inputs
    if ctx.opset < 7 and slope.dim() == 1 and x.dim() > 2:
        slope = slope.reshape((-1,) + (1,) * (x.dim() - 2))
    return torch.where(x >= 0, x, x * slope)


@register("Shrink")
def shrink(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Soft (bias = lambd) or hard (bias = 0) shrinkage: zero inside [-lambd, lambd]."""
    x, lambd, bias = inputs[0], attrs.get("lambd", 0.5), attrs.get("bias", 0.0)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, torch.zeros_like(x)))


@register("Clip", setting_slots=(1, 2))
def clip(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Bounds are attributes before opset 11 and optional inputs from 11 on."""
    x = inputs[0]
    lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("min")
    hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("max")
    if isinstance(lo, torch.Tensor):
        lo = lo.item()
    if isinstance(hi, torch.Tensor):
        hi = hi.item()
    return x if lo is None and hi is None else torch.clamp(x, lo, hi)


@register("Where")
def where(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    cond, a, b = inputs
    return torch.where(cond.bool(), a, b)


ONNX_TO_TORCH_DTYPE = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT64: torch.int64,
    TensorProto.INT32: torch.int32,
    TensorProto.INT16: torch.int16,
    TensorProto.INT8: torch.int8,
    TensorProto.UINT8: torch.uint8,
    TensorProto.BOOL: torch.bool,
}

# Unsigned types torch has almost no kernels for (add, matmul, sort, shifts): held in the next
# wider signed type, which holds every value but those of uint64 above 2^63 (these wrap, as in C).
# Arithmetic that overflows the ONNX type keeps the wider result instead of wrapping around.
WIDER_UNSIGNED = {TensorProto.UINT16: torch.int32, TensorProto.UINT32: torch.int64, TensorProto.UINT64: torch.int64}
_TORCH_UNSIGNED = {torch.uint16: torch.int32, torch.uint32: torch.int64, torch.uint64: torch.int64}


def widened(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor of a kernel-less unsigned dtype (a caller's uint32 input) in its wider held type."""
    wider = _TORCH_UNSIGNED.get(tensor.dtype)
    return tensor if wider is None else tensor.to(wider)


def torch_dtype(elem_type: int) -> torch.dtype:
    """The torch dtype an ONNX element type is held in; ValueError names types the executor cannot hold."""
    held = ONNX_TO_TORCH_DTYPE.get(elem_type, WIDER_UNSIGNED.get(elem_type))
    if held is None:
        raise ValueError(f"unsupported ONNX tensor type {helper.tensor_dtype_to_string(elem_type)}")
    return held


@register("Cast")
def cast(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return inputs[0].to(torch_dtype(attrs["to"]))


@register("CastLike")
def cast_like(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return inputs[0].to(inputs[1].dtype)


@register("Dropout", setting_slots=(1, 2))
def dropout(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Identity in both semantics: the audit measures the deterministic network (DESIGN.md)."""
    x = inputs[0]
    return x, torch.ones(x.shape, dtype=torch.bool, device=x.device)


def _softmax(normalise):
    """Before opset 13 softmax flattens to 2-D at `axis` (default 1); from 13 on it is per-axis."""

    def run(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
        x = inputs[0]
        if ctx.opset >= 13:
            return normalise(x, attrs.get("axis", -1))
        axis = attrs.get("axis", 1) % max(x.dim(), 1)
        flat = x.reshape(math.prod(x.shape[:axis]), -1)
        return normalise(flat, -1).reshape(x.shape)

    return run


def _fully_masked_safe(normalise):
    """Softmax whose rows of only -inf (attention with every key masked) are NaN, as ONNX and
    torch.softmax define them, without NaN in the backward pass: PyTorch's own attention returns
    zeros for such rows, and the exporter spells that Where(IsNaN(softmax), 0, softmax), whose
    backward through a plain softmax is NaN * 0 = NaN for every weight upstream."""

    def run(x: torch.Tensor, axis: int) -> torch.Tensor:
        if not x.is_floating_point() or not x.numel():
            return normalise(x, axis)
        masked = torch.isneginf(x.detach()).all(dim=axis, keepdim=True)
        if not bool(masked.any()):
            return normalise(x, axis)
        y = normalise(torch.where(masked, torch.zeros_like(x), x), axis)
        return torch.where(masked, torch.full_like(y, math.nan), y)

    return run


register("Softmax")(_softmax(_fully_masked_safe(torch.softmax)))
register("LogSoftmax")(_softmax(_fully_masked_safe(torch.log_softmax)))
