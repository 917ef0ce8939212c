"""ONNX tensors as torch tensors, for every element type a model file may store its numbers in.

`onnx.numpy_helper.to_array` returns bfloat16, float8, float4 and 4-/2-bit integer tensors as
ml_dtypes arrays, which `torch.from_numpy` cannot take. They are held here as:

- bfloat16 and float16: themselves (the executor runs them; weight statistics are taken in
  float32, `gradaudit.weight_stats`);
- float8 (all variants), float4: float32, the values they encode (storage formats of quantised
  weights; torch has no arithmetic on them);
- int4/int2, uint4/uint2: int8 / uint8;
- uint16, uint32, uint64: int32, int64, int64 (torch has almost no kernels for them;
  `ops_elementwise.WIDER_UNSIGNED`).

Strings and complex numbers have no place in a gradient: a tensor of those types is an
InputError naming it. `HELD_DTYPE` is what the validation and the memory cap read, so a type is
accepted exactly when it can be converted.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

from gradaudit.errors import InputError
from gradaudit.onnx_exec.ops_elementwise import ONNX_TO_TORCH_DTYPE, WIDER_UNSIGNED


def _types(names: tuple[str, ...]) -> tuple[int, ...]:
    """The ONNX type codes of `names` that this onnx version defines."""
    return tuple(getattr(TensorProto, name) for name in names if hasattr(TensorProto, name))


WIDENED_FLOATS = _types(("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "FLOAT4E2M1"))
WIDENED_SIGNED = _types(("INT4", "INT2"))
WIDENED_UNSIGNED = _types(("UINT4", "UINT2"))

# ONNX element type -> the torch dtype its values are held in
HELD_DTYPE: dict[int, torch.dtype] = {
    **ONNX_TO_TORCH_DTYPE,
    **dict.fromkeys(WIDENED_FLOATS, torch.float32),
    **dict.fromkeys(WIDENED_SIGNED, torch.int8),
    **dict.fromkeys(WIDENED_UNSIGNED, torch.uint8),
    **WIDER_UNSIGNED,
}

# Bits per element of the types ONNX packs several to a byte (raw_data and int32_data alike).
PACKED_BITS: dict[int, int] = {
    **dict.fromkeys(_types(("INT4", "UINT4", "FLOAT4E2M1")), 4),
    **dict.fromkeys(_types(("INT2", "UINT2")), 2),
}


# numpy and torch index an array's bytes with a signed 64-bit size, even when a zero dim leaves
# it empty: a shape such as [2^62, 0] cannot be built at all.
MAX_INDEXABLE_BYTES = 2**62


def indexable(dims, itemsize: int) -> bool:
    """Whether numpy and torch can build a tensor of these dims (zero dims left out of the product)."""
    return math.prod(int(d) for d in dims if d) * itemsize <= MAX_INDEXABLE_BYTES


def type_name(data_type: int) -> str:
    names = {code: name for name, code in TensorProto.DataType.items()}
    return names.get(data_type, f"code {data_type}")


def stored_values(tensor: TensorProto) -> int:
    """How many elements a tensor's embedded payload holds (raw bytes or the typed repeated
    field); a packed type counts every slot of its last byte or word."""
    per_unit = 8 // PACKED_BITS[tensor.data_type] if tensor.data_type in PACKED_BITS else 1
    if tensor.HasField("raw_data"):
        itemsize = 1 if per_unit > 1 else onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        return len(tensor.raw_data) // itemsize * per_unit
    return len(getattr(tensor, onnx.helper.tensor_dtype_to_field(tensor.data_type))) * per_unit


def payload_matches(tensor: TensorProto) -> bool:
    """The embedded payload holds exactly the values the dims declare (a packed type pads its
    last byte)."""
    declared, stored = math.prod(tensor.dims), stored_values(tensor)
    if tensor.data_type in PACKED_BITS:
        per_unit = 8 // PACKED_BITS[tensor.data_type]
        return stored == math.ceil(declared / per_unit) * per_unit
    return declared == stored


def to_torch(tensor: TensorProto, what: str) -> torch.Tensor:
    """The values of `tensor` as a torch tensor of its held dtype; InputError naming `what` for
    a type gradaudit cannot hold."""
    held = HELD_DTYPE.get(tensor.data_type)
    if held is None:
        raise InputError(f"{what} has element type {type_name(tensor.data_type)}, which gradaudit cannot execute")
    array = numpy_helper.to_array(tensor)
    if held == torch.bfloat16 or tensor.data_type in WIDENED_FLOATS:
        array = array.astype(np.float32)  # exact: each of these types is a subset of float32
    elif tensor.data_type in WIDENED_SIGNED + WIDENED_UNSIGNED:
        array = array.astype(np.int8 if held == torch.int8 else np.uint8)
    elif tensor.data_type in WIDER_UNSIGNED:
        array = array.astype(np.int64)  # exact below 2^63; torch then narrows uint16 to int32
    return torch.from_numpy(np.array(array, copy=True)).to(held)
