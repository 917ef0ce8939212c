"""Vision ONNX ops: grid sampling, ROI pooling, deformable convolution, block folding, cropping
and non-maximum suppression.

GridSample, AffineGrid and DeformConv map onto `F.grid_sample` / `F.affine_grid` (onnx's own
reference implements DeformConv as a bilinear GridSample with align_corners=1). RoiAlign has
its own boundary rule (samples clamped into the image, zero beyond one pixel outside it), so it
gathers the four corners itself. NonMaxSuppression selects indices: it runs, and takes no part in
a gradient.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from gradaudit.onnx_exec.op_registry import OpContext, optional_input, register
from gradaudit.onnx_exec.ops_nn import torch_pad_order

# opset 16 names the modes after torch; opset 20 renamed them
_GRID_MODES = {
    "linear": "bilinear",
    "bilinear": "bilinear",
    "nearest": "nearest",
    "cubic": "bicubic",
    "bicubic": "bicubic",
}


def _reflect(v: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Fold coordinates outside [low, high] back in, mirror by mirror."""
    span = high - low
    below, above = low - v, v - high
    outside = torch.where(v < low, below, above)
    bounces = torch.floor(outside / span)
    rest = outside - bounces * span
    even = torch.remainder(bounces, 2) == 0
    folded_low = torch.where(even, low + rest, high - rest)
    folded_high = torch.where(even, high - rest, low + rest)
    return torch.where(v < low, folded_low, torch.where(v > high, folded_high, v))


def _cubic_grid(grid: torch.Tensor, sizes: Sequence[int], align_corners: bool, padding: str) -> torch.Tensor:
    """ONNX moves an out-of-range cubic sample point itself into the image (clamped or reflected)
    before taking its 4 taps; torch only bounds the taps. The grid is moved here first."""
    moved = []
    for axis, size in enumerate(reversed(list(sizes))):  # the grid lists x (width) first
        g = grid[..., axis]
        pixel = (g + 1) / 2 * (size - 1) if align_corners else ((g + 1) * size - 1) / 2
        low, high = (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)
        if padding == "border":
            pixel = torch.where((pixel < low) | (pixel > high), pixel.clamp(0, size - 1), pixel)
        else:
            pixel = _reflect(pixel, low, high)
        moved.append(pixel / (size - 1) * 2 - 1 if align_corners else (2 * pixel + 1) / size - 1)
    return torch.stack(moved, dim=-1)


@register("GridSample")
def grid_sample(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    x, grid = inputs[0], inputs[1].to(inputs[0].dtype)
    mode = _GRID_MODES[attrs.get("mode", "linear" if ctx.opset >= 20 else "bilinear")]
    padding, align_corners = attrs.get("padding_mode", "zeros"), bool(attrs.get("align_corners", 0))
    if mode == "bicubic" and padding != "zeros":
        grid = _cubic_grid(grid, x.shape[2:], align_corners, padding)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=align_corners)


@register("AffineGrid")
def affine_grid(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    theta, size = inputs
    return F.affine_grid(theta, [int(v) for v in size.tolist()], align_corners=bool(attrs.get("align_corners", 0)))


def _roi_corners(image: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
    """The four weighted bilinear corners (C, *y.shape) of `image` (C, H, W) at (y, x), by
    RoiAlign's rule: coordinates clamped into the image, samples beyond [-1, size] zero."""
    height, width = image.shape[1:]
    valid = ((y >= -1) & (y <= height) & (x >= -1) & (x <= width)).to(image.dtype)
    y, x = y.clamp(0, height - 1), x.clamp(0, width - 1)
    y0, x0 = y.floor(), x.floor()
    ly, lx = y - y0, x - x0
    y1, x1 = (y0 + 1).clamp(max=height - 1), (x0 + 1).clamp(max=width - 1)
    flat = image.reshape(image.shape[0], -1)
    corners = []
    for yi, xi, weight in (
        (y0, x0, (1 - ly) * (1 - lx)),
        (y0, x1, (1 - ly) * lx),
        (y1, x0, ly * (1 - lx)),
        (y1, x1, ly * lx),
    ):
        values = flat[:, (yi * width + xi).long().reshape(-1)].reshape(image.shape[0], *y.shape)
        corners.append(values * (weight * valid))
    return corners


@register("RoiAlign", setting_slots=(1, 2))
def roi_align(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Per ROI, a grid of sampling_ratio^2 bilinear samples per output bin (ceil(roi / bins) when
    0), averaged ('avg') or the maximum weighted corner ('max', as onnx defines it)."""
    x, rois, batch_indices = inputs
    out_h, out_w = attrs.get("output_height", 1), attrs.get("output_width", 1)
    ratio, spatial_scale = attrs.get("sampling_ratio", 0), attrs.get("spatial_scale", 1.0)
    half_pixel = (
        attrs.get("coordinate_transformation_mode", "half_pixel" if ctx.opset >= 16 else "output_half_pixel")
        == "half_pixel"
    )
    offset = 0.5 if half_pixel else 0.0
    pooled = []
    for roi, batch in zip(rois.tolist(), batch_indices.tolist()):
        start_w, start_h, end_w, end_h = (v * spatial_scale - offset for v in roi)
        roi_w, roi_h = end_w - start_w, end_h - start_h
        if not half_pixel:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / out_h, roi_w / out_w
        grid_h = ratio if ratio > 0 else math.ceil(roi_h / out_h)
        grid_w = ratio if ratio > 0 else math.ceil(roi_w / out_w)
        ys = (
            start_h
            + (torch.arange(out_h, dtype=torch.float64).unsqueeze(1) + (torch.arange(grid_h) + 0.5) / grid_h) * bin_h
        )
        xs = (
            start_w
            + (torch.arange(out_w, dtype=torch.float64).unsqueeze(1) + (torch.arange(grid_w) + 0.5) / grid_w) * bin_w
        )
        y = ys.reshape(out_h, 1, grid_h, 1).expand(out_h, out_w, grid_h, grid_w)
        xx = xs.reshape(1, out_w, 1, grid_w).expand(out_h, out_w, grid_h, grid_w)
        corners = _roi_corners(x[int(batch)], y.to(x.dtype), xx.to(x.dtype))
        if attrs.get("mode", "avg") == "max":
            pooled.append(torch.stack(corners).amax(dim=0).flatten(-2).amax(dim=-1))
        else:
            pooled.append(sum(corners).flatten(-2).sum(dim=-1) / max(grid_h * grid_w, 1))
    if not pooled:
        return x.new_zeros((0, x.shape[1], out_h, out_w))
    return torch.stack(pooled)


@register("DeformConv", weight_slots=(1, 3))
def deform_conv(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """2-D deformable convolution: each kernel tap samples x bilinearly at its grid position
    plus a learned offset (zero outside the image), optionally scaled by a mask, then the taps
    are contracted with the grouped weights."""
    x, weight, offset = inputs[0], inputs[1], inputs[2]
    bias, mask = optional_input(inputs, 3), optional_input(inputs, 4)
    batch, channels, height, width = x.shape
    out_channels, _, k_h, k_w = weight.shape
    s_h, s_w = attrs.get("strides", [1, 1])
    d_h, d_w = attrs.get("dilations", [1, 1])
    pad_top, pad_left = attrs.get("pads", [0, 0, 0, 0])[:2]
    groups, offset_groups = attrs.get("group", 1), attrs.get("offset_group", 1)
    out_h, out_w = offset.shape[2:]
    taps = k_h * k_w
    offset = offset.reshape(batch, offset_groups, taps, 2, out_h, out_w)
    base_y = (torch.arange(out_h) * s_h - pad_top).reshape(1, out_h, 1) + (torch.arange(k_h) * d_h).repeat_interleave(
        k_w
    ).reshape(taps, 1, 1)
    base_x = (torch.arange(out_w) * s_w - pad_left).reshape(1, 1, out_w) + (torch.arange(k_w) * d_w).repeat(
        k_h
    ).reshape(taps, 1, 1)
    y = base_y.to(x.dtype) + offset[:, :, :, 0]  # (N, G, taps, out_h, out_w)
    xx = base_x.to(x.dtype) + offset[:, :, :, 1]
    grid = torch.stack((xx / (width - 1) * 2 - 1, y / (height - 1) * 2 - 1), dim=-1)
    grid = grid.reshape(batch * offset_groups, taps * out_h, out_w, 2)
    per_group = x.reshape(batch * offset_groups, channels // offset_groups, height, width)
    sampled = F.grid_sample(per_group, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    sampled = sampled.reshape(batch, offset_groups, channels // offset_groups, taps, out_h, out_w)
    if mask is not None:
        sampled = sampled * mask.reshape(batch, offset_groups, 1, taps, out_h, out_w)
    columns = sampled.reshape(batch, groups, channels // groups, taps, out_h, out_w)
    kernels = weight.reshape(groups, out_channels // groups, channels // groups, taps)
    y_out = torch.einsum("ngctij,gkct->ngkij", columns, kernels).reshape(batch, out_channels, out_h, out_w)
    return y_out if bias is None else y_out + bias.reshape(1, -1, 1, 1)


@register("Col2Im", setting_slots=(1, 2))
def col2im(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Sum sliding blocks (N, C * prod(block), L) back into an image of any spatial rank: each
    block element adds into its padded-image position, the pads are then cut away."""
    x, image_shape, block_shape = inputs[0], [int(v) for v in inputs[1].tolist()], [int(v) for v in inputs[2].tolist()]
    dims = len(image_shape)
    strides = attrs.get("strides", [1] * dims)
    dilations = attrs.get("dilations", [1] * dims)
    pads = attrs.get("pads", [0] * (2 * dims))
    padded = [image_shape[d] + pads[d] + pads[d + dims] for d in range(dims)]
    counts = [(padded[d] - dilations[d] * (block_shape[d] - 1) - 1) // strides[d] + 1 for d in range(dims)]
    position = torch.zeros((math.prod(block_shape), math.prod(counts)), dtype=torch.int64)
    for d in range(dims):
        tap = torch.arange(block_shape[d]) * dilations[d]
        start = torch.arange(counts[d]) * strides[d]
        tap_index = tap.reshape([-1 if i == d else 1 for i in range(dims)]).expand(block_shape).reshape(-1, 1)
        start_index = start.reshape([-1 if i == d else 1 for i in range(dims)]).expand(counts).reshape(1, -1)
        position = position * padded[d] + tap_index + start_index
    batch = x.shape[0]
    channels = x.shape[1] // math.prod(block_shape)
    image = x.new_zeros((batch, channels, math.prod(padded)))
    image = image.index_add(2, position.reshape(-1), x.reshape(batch, channels, -1))
    image = image.reshape(batch, channels, *padded)
    crop = tuple(slice(pads[d], pads[d] + image_shape[d]) for d in range(dims))
    return image[(slice(None), slice(None)) + crop]


@register("CenterCropPad", setting_slots=(1,))
def center_crop_pad(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Crop or zero-pad each of `axes` (all by default) to the target size, around the centre
    (the odd element goes to the end when padding, stays at the start when cropping)."""
    x, target = inputs[0], [int(v) for v in inputs[1].tolist()]
    axes = [a % x.dim() for a in attrs.get("axes", range(x.dim()))]
    pads = [0] * (2 * x.dim())
    for axis, size in zip(axes, target):
        have = x.shape[axis]
        if size < have:
            x = x.narrow(axis, (have - size) // 2, size)
        else:
            pads[axis], pads[axis + x.dim()] = (size - have) // 2, size - have - (size - have) // 2
    return F.pad(x, torch_pad_order(pads)) if any(pads) else x


def _corner_boxes(boxes: torch.Tensor, center_point_box: int) -> torch.Tensor:
    """(…, 4) boxes as (y_min, x_min, y_max, x_max): corners in either order, or centre+size."""
    if center_point_box:
        x_c, y_c, w, h = boxes.unbind(-1)
        return torch.stack((y_c - h / 2, x_c - w / 2, y_c + h / 2, x_c + w / 2), dim=-1)
    y1, x1, y2, x2 = boxes.unbind(-1)
    return torch.stack(
        (torch.minimum(y1, y2), torch.minimum(x1, x2), torch.maximum(y1, y2), torch.maximum(x1, x2)), dim=-1
    )


def _iou(box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    top_left = torch.maximum(box[:2], others[:, :2])
    bottom_right = torch.minimum(box[2:], others[:, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    area = (box[2:] - box[:2]).prod()
    areas = (others[:, 2:] - others[:, :2]).prod(dim=-1)
    union = area + areas - inter
    return torch.where((inter > 0) & (union > 0) & (area > 0) & (areas > 0), inter / union, torch.zeros_like(inter))


def _scalar(inputs: Sequence[Any], slot: int, default: float) -> float:
    value = optional_input(inputs, slot)
    return default if value is None else float(value.reshape(-1)[0])


@register("NonMaxSuppression", setting_slots=(2, 3, 4))
def non_max_suppression(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Greedy selection per batch and class, by descending score (ties: lower box index first):
    a box is kept when its score passes score_threshold and its IoU with every kept box is at
    most iou_threshold. Returns (selected, 3) [batch, class, box] indices."""
    boxes, scores = inputs[0].detach(), inputs[1].detach()
    max_per_class = int(_scalar(inputs, 2, 0))
    iou_threshold = _scalar(inputs, 3, 0.0)
    score_threshold = _scalar(inputs, 4, -math.inf) if len(inputs) > 4 else None
    corners = _corner_boxes(boxes.double(), attrs.get("center_point_box", 0))
    selected: list[tuple[int, int, int]] = []
    for batch in range(scores.shape[0]):
        for cls in range(scores.shape[1]):
            class_scores = scores[batch, cls].double()
            order = torch.sort(class_scores, descending=True, stable=True).indices.tolist()
            kept: list[int] = []
            for index in order:
                if len(kept) >= max_per_class:
                    break
                if score_threshold is not None and not class_scores[index] > score_threshold:
                    break
                if not kept or bool((_iou(corners[batch, index], corners[batch, kept]) <= iou_threshold).all()):
                    kept.append(index)
            selected.extend((batch, cls, index) for index in kept)
    return torch.tensor(selected, dtype=torch.int64).reshape(-1, 3)
