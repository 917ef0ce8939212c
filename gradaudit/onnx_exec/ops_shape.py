"""Shape and indexing ONNX ops: reshape-like moves, slicing, gathering and constant makers.

Many of these also run inside shape arithmetic (Shape -> Gather -> Concat -> Reshape); they work
on int64 tensors the same way and are folded at build time when their inputs are constant.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from gradaudit.onnx_exec.op_registry import OpContext, register
from gradaudit.onnx_exec.ops_elementwise import torch_dtype


def _ints(value: Any) -> list[int]:
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.reshape(-1).tolist()]
    return [int(v) for v in value]


def _axes(inputs: Sequence[Any], attrs: dict[str, Any], slot: int) -> list[int] | None:
    """Axes given as an attribute (older opsets) or as an input (opset 13+)."""
    if len(inputs) > slot and inputs[slot] is not None:
        return _ints(inputs[slot])
    return list(attrs["axes"]) if "axes" in attrs else None


@register("Reshape", setting_slots=(1,))
def reshape(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """A 0 copies the input's dim unless allowzero=1; -1 is inferred."""
    x = inputs[0]
    shape = _ints(inputs[1]) if len(inputs) > 1 else list(attrs["shape"])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


@register("Flatten")
def flatten(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """A negative axis counts from the end: -1 keeps the last dim as the columns."""
    x = inputs[0]
    axis = attrs.get("axis", 1)
    axis = axis + x.dim() if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@register("Transpose")
def transpose(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x = inputs[0]
    return x.permute(list(attrs.get("perm", reversed(range(x.dim())))))


@register("Squeeze")
def squeeze(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x = inputs[0]
    axes = _axes(inputs, attrs, 1)
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(a % x.dim() for a in axes)) if axes else x


@register("Unsqueeze")
def unsqueeze(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x = inputs[0]
    axes = _axes(inputs, attrs, 1) or []
    rank = x.dim() + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return x


@register("Slice", setting_slots=(1, 2, 3, 4))
def slice_(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """ONNX slice bounds clamp exactly like Python's `slice.indices`; negative steps index."""
    x = inputs[0]
    if len(inputs) > 1:
        starts, ends = _ints(inputs[1]), _ints(inputs[2])
        axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
        steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    else:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= x.dim()
        lo, hi, st = slice(start, end, step).indices(x.shape[axis])
        if st > 0:
            index = [slice(None)] * axis + [slice(lo, hi, st)]
            x = x[tuple(index)]
        else:
            x = x.index_select(axis, torch.tensor(list(range(lo, hi, st)), dtype=torch.long, device=x.device))
    return x


@register("Split")
def split(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple[torch.Tensor, ...]:
    """Sizes from the `split` attribute (<13) or input (13+), else equal parts (num_outputs)."""
    x = inputs[0]
    axis = attrs.get("axis", 0) % x.dim()
    if len(inputs) > 1 and inputs[1] is not None:
        sizes = _ints(inputs[1])
    elif "split" in attrs:
        sizes = list(attrs["split"])
    else:
        parts = attrs.get("num_outputs", ctx.n_outputs)
        chunk = math.ceil(x.shape[axis] / parts)
        sizes = [min(chunk, x.shape[axis] - i * chunk) for i in range(parts)]
    return tuple(torch.split(x, sizes, dim=axis))


@register("Concat")
def concat(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return torch.cat(list(inputs), dim=attrs.get("axis", 0))


@register("Gather", weight_slots=(0,))
def gather(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """index_select on the flattened indices keeps autograd to the table (embeddings)."""
    x, idx = inputs
    axis = attrs.get("axis", 0) % x.dim()
    idx = idx.long()
    flat = torch.where(idx < 0, idx + x.shape[axis], idx).reshape(-1)
    picked = x.index_select(axis, flat)
    return picked.reshape(tuple(x.shape[:axis]) + tuple(idx.shape) + tuple(x.shape[axis + 1 :]))


@register("GatherElements")
def gather_elements(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x, idx = inputs
    axis = attrs.get("axis", 0) % x.dim()
    idx = idx.long()
    return torch.gather(x, axis, torch.where(idx < 0, idx + x.shape[axis], idx))


@register("Shape")
def shape(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    dims = list(inputs[0].shape)
    start = attrs.get("start", 0)
    end = attrs.get("end", len(dims))
    return torch.tensor(dims[slice(start, end)], dtype=torch.int64)


@register("Size")
def size(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return torch.tensor(inputs[0].numel(), dtype=torch.int64)


@register("Expand", setting_slots=(1,))
def expand(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """ONNX Expand broadcasts both ways: a 1 in the target keeps the input's dim."""
    x = inputs[0]
    target = torch.broadcast_shapes(tuple(x.shape), tuple(_ints(inputs[1])))
    return x.expand(target)


@register("Tile", setting_slots=(1,))
def tile(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return inputs[0].repeat(_ints(inputs[1]))


@register("ConstantOfShape", setting_slots=(0,))
def constant_of_shape(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    value = attrs.get("value", torch.zeros(1))
    return torch.full(_ints(inputs[0]), value.reshape(-1)[0].item(), dtype=value.dtype)


_CONSTANT_ATTRS = {
    "value_float": torch.float32,
    "value_floats": torch.float32,
    "value_int": torch.int64,
    "value_ints": torch.int64,
}


@register("Constant")
def constant(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    if "value" in attrs:
        return attrs["value"]
    for key, dtype in _CONSTANT_ATTRS.items():
        if key in attrs:
            return torch.tensor(attrs[key], dtype=dtype)
    raise ValueError("Constant node without a supported value attribute")


@register("Range", setting_slots=(0, 1, 2))
def range_(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    start, limit, delta = inputs
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


@register("Trilu")
def trilu(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    k = int(inputs[1].item()) if len(inputs) > 1 and inputs[1] is not None else 0
    return torch.triu(inputs[0], k) if attrs.get("upper", 1) else torch.tril(inputs[0], k)


def _arg(fn):
    def run(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
        x = inputs[0]
        axis = attrs.get("axis", 0)
        out = fn(x.flip(axis) if attrs.get("select_last_index", 0) else x, axis, bool(attrs.get("keepdims", 1)))
        return x.shape[axis] - 1 - out if attrs.get("select_last_index", 0) else out

    return run


register("ArgMax")(_arg(lambda x, a, k: torch.argmax(x, a, keepdim=k)))
register("ArgMin")(_arg(lambda x, a, k: torch.argmin(x, a, keepdim=k)))


@register("DepthToSpace")
def depth_to_space(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """DCR (the default) takes channels depth-major; CRD is torch's pixel_shuffle order."""
    x, block = inputs[0], attrs["blocksize"]
    if attrs.get("mode", "DCR") == "CRD":
        return torch.nn.functional.pixel_shuffle(x, block)
    n, c, h, w = x.shape
    y = x.reshape(n, block, block, c // block**2, h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // block**2, h * block, w * block)


@register("SpaceToDepth")
def space_to_depth(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """DCR (the default) puts the block offsets before the channels; CRD (opset 28) after them,
    torch's pixel_unshuffle order."""
    x, block = inputs[0], attrs["blocksize"]
    if attrs.get("mode", "DCR") == "CRD":
        return torch.nn.functional.pixel_unshuffle(x, block)
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // block, block, w // block, block).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * block**2, h // block, w // block)


def _scatter_reduce(reduction: str) -> str | None:
    """torch's name of an ONNX scatter reduction (opset 16+); None overwrites."""
    return {"none": None, "add": "sum", "mul": "prod", "max": "amax", "min": "amin"}[reduction]


@register("ScatterElements", "Scatter")
def scatter_elements(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x, idx, updates = inputs
    axis = attrs.get("axis", 0) % x.dim()
    idx = torch.where(idx < 0, idx + x.shape[axis], idx).long()
    reduce = _scatter_reduce(attrs.get("reduction", "none"))
    if reduce is None:
        return x.scatter(axis, idx, updates)
    return x.scatter_reduce(axis, idx, updates, reduce)


@register("ScatterND")
def scatter_nd(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """The last index dim addresses the leading q dims of x: flatten those to one row index."""
    x, idx, updates = inputs
    q = idx.shape[-1]
    lead = x.shape[:q]
    idx = torch.where(idx < 0, idx + torch.tensor(lead), idx).long()
    strides = torch.tensor([math.prod(lead[i + 1 :]) for i in range(q)])
    rows = (idx * strides).sum(-1).reshape(-1)
    flat = x.reshape((-1,) + tuple(x.shape[q:]))
    flat_updates = updates.reshape((-1,) + tuple(x.shape[q:]))
    reduce = _scatter_reduce(attrs.get("reduction", "none"))
    if reduce is None:
        out = flat.index_copy(0, rows, flat_updates)
    elif reduce == "sum":
        out = flat.index_add(0, rows, flat_updates)
    else:
        spread = rows.reshape((-1,) + (1,) * (flat.dim() - 1)).expand_as(flat_updates)
        out = flat.scatter_reduce(0, spread, flat_updates, reduce)
    return out.reshape(x.shape)


@register("GatherND")
def gather_nd(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Advanced indexing with the last index dim as coordinates; batch dims index pairwise."""
    x, idx = inputs
    batch = attrs.get("batch_dims", 0)
    flat_x = x.reshape((-1,) + tuple(x.shape[batch:]))
    flat_idx = idx.long().reshape((-1,) + tuple(idx.shape[batch:]))
    coords = tuple(flat_idx[..., i] for i in range(idx.shape[-1]))
    rows = torch.arange(flat_x.shape[0]).reshape((-1,) + (1,) * (flat_idx.dim() - 2))
    out = flat_x[(rows,) + coords]
    return out.reshape(tuple(x.shape[:batch]) + tuple(out.shape[1:]))


@register("TopK")
def top_k(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple[torch.Tensor, torch.Tensor]:
    """K is an attribute before opset 10 and an input after. ONNX breaks ties by the lower index:
    a stable sort does, torch.topk does not."""
    x = inputs[0]
    k = int(inputs[1].reshape(-1)[0]) if len(inputs) > 1 else attrs["k"]
    axis = attrs.get("axis", -1)
    values, indices = torch.sort(x, dim=axis, descending=bool(attrs.get("largest", 1)), stable=True)
    return values.narrow(axis, 0, k), indices.narrow(axis, 0, k)


@register("NonZero")
def non_zero(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return torch.nonzero(inputs[0]).t().contiguous()


@register("OneHot")
def one_hot(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Indices outside [-depth, depth) give a row of off values."""
    idx, depth, values = inputs
    depth = int(depth.reshape(-1)[0])
    idx = idx.long()
    valid = (idx >= -depth) & (idx < depth)
    hot = torch.nn.functional.one_hot(torch.where(valid, idx % depth, 0), depth).bool() & valid[..., None]
    axis = attrs.get("axis", -1) % (idx.dim() + 1)
    hot = hot.movedim(-1, axis)
    return torch.where(hot, values[1], values[0])


@register("Compress")
def compress(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x, cond = inputs
    keep = torch.nonzero(cond.bool()).reshape(-1)
    if "axis" not in attrs:
        return x.reshape(-1).index_select(0, keep)
    return x.index_select(attrs["axis"] % x.dim(), keep)


@register("EyeLike")
def eye_like(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x = inputs[0]
    dtype = torch_dtype(attrs["dtype"]) if "dtype" in attrs else x.dtype
    rows, cols = x.shape
    k = attrs.get("k", 0)
    return torch.ones(rows, cols, dtype=dtype).tril(k).triu(k)
