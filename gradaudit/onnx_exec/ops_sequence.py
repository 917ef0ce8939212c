"""ONNX sequence and optional ops: a sequence is a Python tuple of tensors, so autograd flows
through it; an optional is its value, or None when empty.

Exported models meet sequences in loops over variable-length lists (`torch.split` on a dynamic
size, list-building code). A tuple keeps every op pure: inserting or erasing returns a new one.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from gradaudit.onnx_exec.op_registry import OpContext, register


def _position(seq: tuple, pos: torch.Tensor | None, *, inserting: bool) -> int:
    """ONNX positions may be negative; insertion defaults to the end, erasure to the last item."""
    if pos is None:
        return len(seq) if inserting else len(seq) - 1
    index = int(pos.item())
    return index + len(seq) if index < 0 else index


@register("SequenceEmpty")
def sequence_empty(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple:
    return ((),)


@register("SequenceConstruct")
def sequence_construct(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple:
    return (tuple(inputs),)


@register("SequenceInsert")
def sequence_insert(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple:
    seq, tensor = inputs[0], inputs[1]
    index = _position(seq, inputs[2] if len(inputs) > 2 else None, inserting=True)
    return (seq[:index] + (tensor,) + seq[index:],)


@register("SequenceErase")
def sequence_erase(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple:
    seq = inputs[0]
    index = _position(seq, inputs[1] if len(inputs) > 1 else None, inserting=False)
    return (seq[:index] + seq[index + 1 :],)


@register("SequenceAt")
def sequence_at(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return inputs[0][int(inputs[1].item())]


@register("SequenceLength")
def sequence_length(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return torch.tensor(len(inputs[0]), dtype=torch.int64)


@register("ConcatFromSequence")
def concat_from_sequence(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """new_axis=1 stacks (a new dimension), otherwise concatenates along `axis`."""
    seq, axis = list(inputs[0]), attrs["axis"]
    return torch.stack(seq, axis) if attrs.get("new_axis", 0) else torch.cat(seq, axis)


@register("SplitToSequence")
def split_to_sequence(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple:
    """Without `split`, pieces of size 1 whose axis is dropped unless keepdims=1."""
    x, axis = inputs[0], attrs.get("axis", 0) % inputs[0].dim()
    split = inputs[1] if len(inputs) > 1 else None
    if split is None:
        pieces = torch.split(x, 1, axis)
        return (tuple(p.squeeze(axis) for p in pieces) if not attrs.get("keepdims", 1) else tuple(pieces),)
    sizes = int(split.item()) if split.dim() == 0 else [int(s) for s in split.tolist()]
    return (tuple(torch.split(x, sizes, axis)),)



@register("Optional")
def optional(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> Any:
    """Wraps its input (none given: an empty optional, None)."""
    return inputs[0] if inputs else None


@register("OptionalHasElement")
def optional_has_element(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return torch.tensor(bool(inputs) and inputs[0] is not None)


@register("OptionalGetElement")
def optional_get_element(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> Any:
    if not inputs or inputs[0] is None:
        raise ValueError("OptionalGetElement of an empty optional")
    return inputs[0]
