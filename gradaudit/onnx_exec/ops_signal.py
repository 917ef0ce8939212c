"""Signal ONNX ops: DFT, STFT, the window generators and MelWeightMatrix (audio front ends).

ONNX stores complex numbers as a trailing axis of size 2 (real, imaginary); a real signal has a
trailing axis of size 1. torch.fft computes the transforms (and their gradients) on complex
views, converted back to that layout.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from gradaudit.onnx_exec.op_registry import OpContext, optional_input, register
from gradaudit.onnx_exec.ops_elementwise import torch_dtype


def _complex(x: torch.Tensor) -> torch.Tensor:
    """(..., 1) real or (..., 2) real/imaginary -> a complex tensor (...)."""
    work = x if x.dtype == torch.float64 else x.float()
    if x.shape[-1] == 1:
        return torch.complex(work[..., 0], torch.zeros_like(work[..., 0]))
    return torch.view_as_complex(work.contiguous())


def _onnx_complex(z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.view_as_real(z).to(dtype)


def dft(x: torch.Tensor, length: int | None, axis: int, inverse: bool, onesided: bool) -> torch.Tensor:
    """The DFT of x (ONNX complex layout) along `axis` (an axis of the signal, not the trailing
    real/imaginary one), zero-padded or cut to `length`; onesided keeps length // 2 + 1 bins,
    and inverse onesided reads those bins back into a real signal of `length` samples."""
    signal = _complex(x)
    if inverse and onesided:
        return torch.fft.irfft(signal, n=length, dim=axis).unsqueeze(-1).to(x.dtype)
    transform = torch.fft.ifft if inverse else torch.fft.fft
    z = transform(signal, n=length, dim=axis)
    if onesided:
        z = z.narrow(axis, 0, z.shape[axis] // 2 + 1)
    return _onnx_complex(z, x.dtype)


def _optional_int(inputs: Sequence[Any], slot: int) -> int | None:
    value = optional_input(inputs, slot)
    return None if value is None else int(value.reshape(-1)[0])


@register("DFT", setting_slots=(1, 2))
def dft_op(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """The axis is an attribute (default 1) before opset 20, an input (default -2, counted with
    the trailing complex axis) from 20 on."""
    x = inputs[0]
    if ctx.opset >= 20:
        axis = _optional_int(inputs, 2)
        axis = (-2 if axis is None else axis) % x.dim()
    else:
        axis = attrs.get("axis", 1) % x.dim()
    return dft(x, _optional_int(inputs, 1), axis, bool(attrs.get("inverse", 0)), bool(attrs.get("onesided", 0)))


@register("STFT", setting_slots=(1, 2, 3))
def stft(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """Signal (batch, length, 1|2) -> (batch, frames, bins, 2): frames of frame_length (the
    window's length when not given) every frame_step samples, windowed, then transformed."""
    signal, step = inputs[0], int(inputs[1].reshape(-1)[0])
    window = optional_input(inputs, 2)
    frame_length = _optional_int(inputs, 3) or int(window.shape[0])
    frames = signal.unfold(1, frame_length, step)  # (batch, frames, 1|2, frame_length)
    frames = frames.movedim(-1, -2)  # (batch, frames, frame_length, 1|2)
    if window is not None:
        frames = frames * window.to(frames.dtype).reshape(-1, 1)
    return dft(frames, frame_length, 2, False, bool(attrs.get("onesided", 1)))


def _window(terms: Sequence[float]):
    """A generalised cosine window sum_k (-1)^k a_k cos(2 pi k n / N), N = size (periodic) or
    size - 1 (symmetric)."""

    def run(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
        size = int(inputs[0].reshape(-1)[0])
        period = size if attrs.get("periodic", 1) else size - 1
        n = torch.arange(size, dtype=torch.float64)
        window = sum((-1) ** k * a * torch.cos(2 * math.pi * k * n / period) for k, a in enumerate(terms))
        return window.to(torch_dtype(attrs.get("output_datatype", 1)))

    return run


register("HannWindow", setting_slots=(0,))(_window((0.5, 0.5)))
register("HammingWindow", setting_slots=(0,))(_window((25 / 46, 21 / 46)))
register("BlackmanWindow", setting_slots=(0,))(_window((0.42, 0.5, 0.08)))


def _mel(hertz: torch.Tensor) -> torch.Tensor:
    return 2595 * torch.log10(1 + hertz / 700)


@register("MelWeightMatrix", setting_slots=(0, 1, 2, 3, 4))
def mel_weight_matrix(inputs: Sequence[Any], attrs: dict[str, Any], ctx: OpContext) -> torch.Tensor:
    """(dft_length // 2 + 1, num_mel_bins) triangular filters on the mel scale, with bin edges
    as onnx's reference places them (num_mel_bins + 2 points, floor((dft_length + 1) f / rate))."""
    num_mel, dft_length, rate = (int(t.reshape(-1)[0]) for t in inputs[:3])
    low, high = (torch.tensor(float(t.reshape(-1)[0]), dtype=torch.float64) for t in inputs[3:5])
    points = torch.arange(num_mel + 2, dtype=torch.float64)
    mels = _mel(low) + points * (_mel(high) - _mel(low)) / (num_mel + 2)
    hertz = 700 * (torch.pow(10.0, mels / 2595) - 1)
    edges = torch.floor((dft_length + 1) * hertz / rate).long().tolist()
    weights = torch.zeros((dft_length // 2 + 1, num_mel), dtype=torch.float64)
    for i in range(num_mel):
        left, centre, right = edges[i : i + 3]
        if centre == left:
            weights[centre, i] = 1.0
        else:
            weights[left : centre + 1, i] = (torch.arange(left, centre + 1, dtype=torch.float64) - left) / (
                centre - left
            )
        if right > centre:
            weights[centre:right, i] = (right - torch.arange(centre, right, dtype=torch.float64)) / (right - centre)
    return weights.to(torch_dtype(attrs.get("output_datatype", 1)))
