"""ONNX RNN / GRU / LSTM with torch ops, so gradients flow through time like in torch's cells.

ONNX stacks gates as RNN [h], GRU [z, r, h], LSTM [i, o, f, c] (torch uses [r, z, n] and
[i, f, g, o]); W is (num_directions, gates*hidden, input), R is (num_directions, gates*hidden,
hidden), B is (num_directions, 2*gates*hidden) = [Wb, Rb]. Layout 0 is (seq, batch, feature),
layout 1 (batch, seq, feature). Not honoured (torch never exports them): `sequence_lens` (every
sequence runs full length), `clip` and `input_forget`. LSTM peepholes P (num_directions, 3*hidden)
= [Pi, Po, Pf] add P * c to the i and f gates (previous cell) and to o (new cell).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from gradaudit.onnx_exec.op_registry import OpContext, register

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
}

DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _activations(op_type: str, attrs: dict[str, Any], direction: int) -> list:
    names = [n.decode() if isinstance(n, bytes) else n for n in attrs.get("activations", [])]
    per_dir = len(DEFAULT_ACTIVATIONS[op_type])
    chosen = names[direction * per_dir : (direction + 1) * per_dir] or DEFAULT_ACTIVATIONS[op_type]
    return [_ACTIVATIONS[n.lower()] for n in chosen]


def _rnn_step(
    xw: torch.Tensor, h: torch.Tensor, c: Any, r: torch.Tensor, rb: torch.Tensor, attrs: dict[str, Any], act: list
) -> tuple:
    return act[0](xw + h @ r.t() + rb), None


def _gru_step(
    xw: torch.Tensor, h: torch.Tensor, c: Any, r: torch.Tensor, rb: torch.Tensor, attrs: dict[str, Any], act: list
) -> tuple:
    hidden = h.shape[-1]
    xz, xr, xh = xw.split(hidden, -1)
    rz, rr, rh = r.split(hidden, 0)
    bz, br, bh = rb.split(hidden, -1)
    z = act[0](xz + h @ rz.t() + bz)
    reset = act[0](xr + h @ rr.t() + br)
    if attrs.get("linear_before_reset", 0):
        cand = act[1](xh + reset * (h @ rh.t() + bh))
    else:
        cand = act[1](xh + (reset * h) @ rh.t() + bh)
    return (1 - z) * cand + z * h, None


def _lstm_step(
    xw: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    r: torch.Tensor,
    rb: torch.Tensor,
    attrs: dict[str, Any],
    act: list,
    peephole: torch.Tensor | None = None,
) -> tuple:
    gates = xw + h @ r.t() + rb
    i, o, f, g = gates.chunk(4, -1)
    if peephole is not None:
        p_i, p_o, p_f = peephole.chunk(3, -1)
        i, f = i + p_i * c, f + p_f * c
    c_new = act[0](f) * c + act[0](i) * act[1](g)
    if peephole is not None:
        o = o + p_o * c_new
    return act[0](o) * act[2](c_new), c_new


_STEPS = {"RNN": _rnn_step, "GRU": _gru_step, "LSTM": _lstm_step}


def _initial(state: torch.Tensor | None, direction: int, batch: int, hidden: int, like: torch.Tensor) -> torch.Tensor:
    if state is None:
        return torch.zeros(batch, hidden, dtype=like.dtype, device=like.device)
    return state[direction]


def _run_direction(
    op_type: str, x: torch.Tensor, inputs: Sequence[Any], attrs: dict[str, Any], direction: int, reverse: bool
) -> tuple:
    """One direction over time; x is (seq, batch, input). Returns (Y (seq, batch, H), h, c)."""
    w, r = inputs[1][direction], inputs[2][direction]
    hidden = r.shape[-1]
    gates = GATES[op_type] * hidden
    b = (
        inputs[3][direction]
        if len(inputs) > 3 and inputs[3] is not None
        else torch.zeros(2 * gates, dtype=x.dtype, device=x.device)
    )
    wb, rb = b[:gates], b[gates:]
    xw = x @ w.t() + wb
    h_init = inputs[5] if len(inputs) > 5 else None
    c_init = inputs[6] if len(inputs) > 6 else None
    h = _initial(h_init, direction, x.shape[1], hidden, x)
    c = _initial(c_init, direction, x.shape[1], hidden, x) if op_type == "LSTM" else None
    act = _activations(op_type, attrs, direction)
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    outputs: list[torch.Tensor] = [None] * x.shape[0]  # type: ignore[list-item]
    peephole = inputs[7][direction] if op_type == "LSTM" and len(inputs) > 7 and inputs[7] is not None else None
    for t in steps:
        h, c = _STEPS[op_type](xw[t], h, c, r, rb, attrs, act, *([peephole] if peephole is not None else []))
        outputs[t] = h
    return torch.stack(outputs), h, c


def _recurrent(op_type: str):
    def run(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> tuple:
        x = inputs[0]
        layout = attrs.get("layout", 0)
        if layout:  # batch-first: move time first, and states to (directions, batch, H)
            x = x.transpose(0, 1)
            inputs = [t.transpose(0, 1) if i in (5, 6) and t is not None else t for i, t in enumerate(inputs)]
        mode = attrs.get("direction", "forward")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        plans = [(0, mode == "reverse")] if mode != "bidirectional" else [(0, False), (1, True)]
        results = [_run_direction(op_type, x, inputs, attrs, d, rev) for d, rev in plans]
        y = torch.stack([res[0] for res in results], 1)  # (seq, dirs, batch, H)
        y_h = torch.stack([res[1] for res in results])
        if layout:
            y, y_h = y.permute(2, 0, 1, 3), y_h.transpose(0, 1)
        if op_type != "LSTM":
            return y, y_h
        y_c = torch.stack([res[2] for res in results])
        return y, y_h, y_c.transpose(0, 1) if layout else y_c

    return run


for _op in ("RNN", "GRU", "LSTM"):
    register(_op, weight_slots=(1, 2, 3, 7) if _op == "LSTM" else (1, 2, 3))(_recurrent(_op))
