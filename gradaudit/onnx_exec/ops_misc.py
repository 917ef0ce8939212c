"""Integer, bitwise, cumulative, set and random ONNX ops, the small linear-algebra leftovers, and
the additions of opsets 24 to 28 outside attention (SwiGLU, TensorScatter, BitCast).

None of these carries a learned tensor. Bitwise ops and shifts work on the bits of signed
integers (the executor holds uint16/32/64 in wider signed types, `ops_elementwise.WIDER_UNSIGNED`);
random ops draw from a generator seeded by the node's `seed` attribute (0 without one), so two
runs of one audit see the same numbers.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from onnx import helper

from gradaudit.onnx_exec.op_registry import OpContext, optional_input, register
from gradaudit.onnx_exec.ops_elementwise import WIDER_UNSIGNED, torch_dtype

_BITWISE = {"BitwiseAnd": torch.bitwise_and, "BitwiseOr": torch.bitwise_or, "BitwiseXor": torch.bitwise_xor}
for _op, _fn in _BITWISE.items():
    register(_op)(lambda inputs, attrs, ctx, fn=_fn: fn(inputs[0], inputs[1]))


@register("BitwiseNot")
def bitwise_not(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Exact for every type held as itself (uint8 included); a uint16/uint32 held in a wider
    signed type gets that type's complement (negative), as the node does not say its width."""
    return torch.bitwise_not(inputs[0])


@register("BitShift")
def bit_shift(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """ONNX shifts unsigned integers only, held as non-negative values, so torch's arithmetic
    right shift is the logical one; a left shift keeps the held type's bits (exact while the
    result fits the ONNX type)."""
    x, shift = inputs
    if attrs["direction"] == "LEFT":
        return torch.bitwise_left_shift(x, shift)
    return torch.bitwise_right_shift(x, shift)


def _cumulative(step):
    """CumSum / CumProd: `exclusive` starts from the identity, `reverse` runs from the end."""

    def run(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
        x, axis = inputs[0], int(inputs[1].reshape(-1)[0])
        reverse = attrs.get("reverse", 0)
        if reverse:
            x = x.flip(axis)
        out = step(x, axis)
        if attrs.get("exclusive", 0):
            first = torch.narrow(torch.ones_like(x) if step is torch.cumprod else torch.zeros_like(x), axis, 0, 1)
            out = torch.cat([first, torch.narrow(out, axis, 0, x.shape[axis] - 1)], axis)
        return out.flip(axis) if reverse else out

    return run


register("CumSum")(_cumulative(torch.cumsum))
register("CumProd")(_cumulative(torch.cumprod))


@register("Unique")
def unique(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple[torch.Tensor, ...]:
    """Outputs: the unique values (slices along `axis`), the index of each one's first
    occurrence, the inverse map and the counts; sorted=0 keeps the order of first occurrence."""
    x = inputs[0]
    axis = attrs.get("axis")
    flat = x.reshape(-1) if axis is None else x
    dim = None if axis is None else axis % x.dim()
    values, inverse, counts = torch.unique(flat, sorted=True, return_inverse=True, return_counts=True, dim=dim)
    length = flat.shape[0 if dim is None else dim]
    positions = torch.arange(length)
    first = torch.full((values.shape[0 if dim is None else dim],), length, dtype=torch.int64).scatter_reduce(
        0, inverse, positions, "amin"
    )
    if not attrs.get("sorted", 1):
        order = torch.argsort(first)
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel()))
        values = values.index_select(0 if dim is None else dim, order)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    return values, first, inverse, counts


@register("Det")
def det(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    return torch.linalg.det(inputs[0])


@register("ReverseSequence")
def reverse_sequence(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Reverse the first seq_len[b] steps of every batch entry b, leave the rest in place."""
    x, lengths = inputs
    time_axis, batch_axis = attrs.get("time_axis", 0), attrs.get("batch_axis", 1)
    steps = torch.arange(x.shape[time_axis]).unsqueeze(1)  # (time, 1)
    lens = lengths.long().unsqueeze(0)  # (1, batch)
    source = torch.where(steps < lens, lens - 1 - steps, steps)  # (time, batch)
    if time_axis > batch_axis:
        source = source.t()
    index = source.reshape(source.shape + (1,) * (x.dim() - 2)).expand_as(x)
    return torch.gather(x, time_axis, index)


def _generator(attrs: dict[str, Any]) -> torch.Generator:
    return torch.Generator().manual_seed(int(attrs.get("seed", 0.0)))


def _random_dtype(attrs: dict[str, Any], like: torch.Tensor | None) -> torch.dtype:
    if "dtype" in attrs:
        return torch_dtype(attrs["dtype"])
    return like.dtype if like is not None and like.is_floating_point() else torch.float32


@register("RandomUniform", "RandomUniformLike")
def random_uniform(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    like = inputs[0] if inputs else None
    shape = like.shape if like is not None else attrs["shape"]
    low, high = attrs.get("low", 0.0), attrs.get("high", 1.0)
    draw = torch.rand(tuple(shape), generator=_generator(attrs), dtype=torch.float64)
    return (low + (high - low) * draw).to(_random_dtype(attrs, like))


@register("RandomNormal", "RandomNormalLike")
def random_normal(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    like = inputs[0] if inputs else None
    shape = like.shape if like is not None else attrs["shape"]
    draw = torch.randn(tuple(shape), generator=_generator(attrs), dtype=torch.float64)
    return (attrs.get("mean", 0.0) + attrs.get("scale", 1.0) * draw).to(_random_dtype(attrs, like))


@register("Bernoulli")
def bernoulli(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    p = inputs[0]
    draw = torch.bernoulli(p.detach().double(), generator=_generator(attrs))
    return draw.to(torch_dtype(attrs["dtype"]) if "dtype" in attrs else p.dtype)


@register("MaxUnpool", setting_slots=(2,))
def max_unpool(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Scatter each value to the flat position MaxPool recorded (indices count over N, C and the
    spatial dims of the unpooled shape the pooling implies); a larger `output_shape` pads that
    at the end of each axis, as onnx's reference does."""
    x, indices = inputs[0], inputs[1]
    kernel = attrs["kernel_shape"]
    dims = len(kernel)
    strides = attrs.get("strides", [1] * dims)
    pads = attrs.get("pads", [0] * (2 * dims))
    spatial = [(x.shape[2 + i] - 1) * strides[i] - pads[i] - pads[i + dims] + kernel[i] for i in range(dims)]
    unpooled = list(x.shape[:2]) + spatial
    out = torch.zeros(unpooled, dtype=x.dtype).reshape(-1)
    out = out.index_put((indices.reshape(-1).long(),), x.reshape(-1)).reshape(unpooled)
    if optional_input(inputs, 2) is not None:
        grow = [int(want) - have for want, have in zip(inputs[2].tolist(), unpooled)]
        out = torch.nn.functional.pad(out, [v for g in reversed(grow) for v in (0, g)])
    return out


_SIGNED_OF_WIDTH = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@register("BitCast")
def bit_cast(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Reinterpret the bits as the `to` type (same width). An integer held wider than its ONNX
    type (a widened uint16/32) is narrowed to that width first, keeping its low bits; a widened
    unsigned target is read through the signed type of its width and masked back to unsigned."""
    x, target = inputs[0], attrs["to"]
    width = helper.tensor_dtype_to_np_dtype(target).itemsize
    if not x.is_floating_point() and x.element_size() != width:
        x = x.to(_SIGNED_OF_WIDTH[width])
    if target not in WIDER_UNSIGNED:
        return x.view(torch_dtype(target))
    bits = x.view(_SIGNED_OF_WIDTH[width]).to(torch.int64)
    return bits if width == 8 else (bits & ((1 << (8 * width)) - 1)).to(torch_dtype(target))


@register("TensorScatter", setting_slots=(2,))
def tensor_scatter(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """A KV-cache write: update's sequence steps go to write_indices[b] + i along `axis` of the
    cache (modulo its length in 'circular' mode)."""
    cache, update = inputs[0], inputs[1]
    axis = attrs.get("axis", -2) % cache.dim()
    given = optional_input(inputs, 2)
    starts = given.tolist() if given is not None else [0] * cache.shape[0]
    rows = []
    for batch, start in enumerate(starts):
        positions = torch.arange(update.shape[axis]) + int(start)
        if attrs.get("mode", "linear") == "circular":
            positions = positions % cache.shape[axis]
        rows.append(cache[batch].index_copy(axis - 1, positions, update[batch]))
    return torch.stack(rows)


@register("SwiGLU")
def swiglu(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Swish_alpha(gate) * value."""
    gate, value = inputs
    return gate * torch.sigmoid(attrs.get("alpha", 1.0) * gate) * value


def _ngram_table(attrs: dict[str, Any]) -> dict[tuple[int, ...], int]:
    """The listed n-grams (pool_int64s, grouped by ngram_counts into 1-grams, 2-grams, ...) whose
    size is in [min_gram_length, max_gram_length], each with its output column."""
    pool, starts, columns = attrs["pool_int64s"], attrs["ngram_counts"], attrs["ngram_indexes"]
    low, high = attrs["min_gram_length"], attrs["max_gram_length"]
    table: dict[tuple[int, ...], int] = {}
    ngram_id = 0
    for size, start in enumerate(starts, 1):
        end = starts[size] if size < len(starts) else len(pool)
        for offset in range(start, start + (end - start) // size * size, size):
            if low <= size <= high:
                table[tuple(pool[offset : offset + size])] = columns[ngram_id]
            ngram_id += 1
    return table


@register("TfIdfVectorizer")
def tfidf_vectorizer(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Counts of the listed n-grams per row of token ids ([C] or [B, C]), with skips of up to
    max_skip_count between their tokens (unigrams counted once), weighted as `mode` says."""
    if "pool_int64s" not in attrs:
        raise ValueError("TfIdfVectorizer over strings (pool_strings) is not supported")
    x = inputs[0]
    rows = x.reshape(1, -1).tolist() if x.dim() < 2 else x.tolist()
    table = _ngram_table(attrs)
    low, high = attrs["min_gram_length"], attrs["max_gram_length"]
    counts = torch.zeros((len(rows), max(attrs["ngram_indexes"]) + 1), dtype=torch.float32)
    for row_index, row in enumerate(rows):
        for skip in range(1, attrs["max_skip_count"] + 2):
            first = low if skip == 1 else max(low, 2)
            for start in range(len(row)):
                for size in range(first, high + 1):
                    if start + skip * (size - 1) >= len(row):
                        break
                    column = table.get(tuple(row[start : start + skip * (size - 1) + 1 : skip]))
                    if column is not None:
                        counts[row_index, column] += 1
    weights = torch.tensor(attrs["weights"], dtype=torch.float32) if attrs.get("weights") else None
    mode = attrs["mode"]
    if mode == "IDF":
        counts = (counts > 0).float() * (weights if weights is not None else 1.0)
    elif mode == "TFIDF" and weights is not None:
        counts = counts * weights
    return counts if x.dim() >= 2 else counts[0]
