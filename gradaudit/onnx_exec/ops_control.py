"""ONNX control flow: If, Loop and Scan, their bodies run as `Subgraph`s in the op's scope.

Exporters write these for `torch.cond`, detection post-processing and sequence models, and
onnx's own function bodies use them. Autograd flows through every iteration as through unrolled
code: the loop-carried state, the scan outputs and every outer-scope tensor a body reads (a
weight included) keep their gradients. The loop bounds and the If condition are data, read once
per call, so a body that runs a different number of times on another input does so here too.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from gradaudit.onnx_exec.op_registry import OpContext, OpResult, register


@register("If")
def if_(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> OpResult:
    branch = attrs["then_branch"] if bool(inputs[0].reshape(-1)[0]) else attrs["else_branch"]
    return tuple(branch([], ctx.scope))


@register("Loop")
def loop(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> OpResult:
    """Runs while the iteration count (M, optional) and the condition (optional) allow; the body
    maps (iteration, condition, carried...) to (condition, carried..., scan outputs...)."""
    body = attrs["body"]
    limit = inputs[0] if len(inputs) > 0 else None
    condition = inputs[1] if len(inputs) > 1 else None
    carried = list(inputs[2:])
    n_carried = len(carried)
    scanned: list[list[torch.Tensor]] = [[] for _ in range(len(body.output_names) - 1 - n_carried)]
    iteration = 0
    keep_going = True if condition is None else bool(condition.reshape(-1)[0])
    while keep_going and (limit is None or iteration < int(limit.reshape(-1)[0])):
        outs = body([torch.tensor(iteration, dtype=torch.int64), torch.tensor(keep_going)] + carried, ctx.scope)
        keep_going = True if condition is None else bool(outs[0].reshape(-1)[0])
        carried = list(outs[1 : 1 + n_carried])
        for store, value in zip(scanned, outs[1 + n_carried :]):
            store.append(value)
        iteration += 1
    # a loop that never ran has empty scan outputs (their element shape is unknown then)
    stacked = [torch.stack(store) if store else torch.zeros((0,)) for store in scanned]
    return tuple(carried + stacked)


@register("Scan")
def scan(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> OpResult:
    """Opset 9+: the body maps (state..., one slice of each scan input) to (state..., one
    slice of each scan output); slices run along each input's axis, reversed where its
    direction is 1, and scan outputs stack along their axes the same way. Opset 8 leads with
    optional sequence lengths and a batch axis: each batch item scans on its own."""
    n_scan = attrs["num_scan_inputs"]
    if ctx.opset >= 9:
        return _scan(list(inputs), attrs, n_scan, None, ctx)
    lengths, rest = inputs[0], list(inputs[1:])
    items = []
    for b in range(rest[-1].shape[0]):
        length = int(lengths[b]) if lengths is not None else None
        items.append(
            _scan(
                [x[b] for x in rest],
                {**attrs, "scan_input_directions": attrs.get("directions", [0] * n_scan)},
                n_scan,
                length,
                ctx,
            )
        )
    return tuple(torch.stack(values) for values in zip(*items))


def _scan(inputs: list[Any], attrs: dict[str, Any], n_scan: int, length: int | None, ctx: OpContext) -> tuple:
    body = attrs["body"]
    states, sequences = inputs[: len(inputs) - n_scan], inputs[len(inputs) - n_scan :]
    in_axes = [a % x.dim() for a, x in zip(attrs.get("scan_input_axes", [0] * n_scan), sequences)]
    in_dirs = attrs.get("scan_input_directions", [0] * n_scan)
    n_out = len(body.output_names) - len(states)
    out_axes = list(attrs.get("scan_output_axes", [0] * n_out))
    out_dirs = attrs.get("scan_output_directions", [0] * n_out)
    length = sequences[0].shape[in_axes[0]] if length is None else length
    scanned: list[list[torch.Tensor]] = [[] for _ in range(n_out)]
    for step in range(length):
        slices = [
            x.select(axis, length - 1 - step if reverse else step)
            for x, axis, reverse in zip(sequences, in_axes, in_dirs)
        ]
        outs = body(states + slices, ctx.scope)
        states = list(outs[: len(states)])
        for store, value in zip(scanned, outs[len(states) :]):
            store.append(value)
    stacked = []
    for store, axis, reverse in zip(scanned, out_axes, out_dirs):
        values = store[::-1] if reverse else store
        stacked.append(torch.stack(values, axis % (values[0].dim() + 1)))
    return tuple(states + stacked)
