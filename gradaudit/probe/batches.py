"""The probe's input batches: seeded synthetic draws, or the user's own tensors.

Every pass gets a fresh batch drawn from its own `torch.Generator`, so the global RNG is never
consumed and the same seed always yields the same numbers. Three sources, in order of preference:
a real batch the caller passes (`data`, reused as is on every pass: it is the batch they care
about), the loader's example inputs (floats re-drawn N(0, 1) in their shape and dtype, integer
tensors such as token ids kept, since random ids may be out of range), and the InputSpecs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from gradaudit.errors import InputError
from gradaudit.model import InputSpec, ModelHandle


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise InputError(f"unknown input dtype {name!r}")
    return dtype


def _draw_spec(spec: InputSpec, generator: torch.Generator) -> torch.Tensor:
    """float -> N(0, 1); integer -> uniform on [0, high) (binary when no range is known)."""
    dtype = _torch_dtype(spec.dtype)
    if spec.is_float:
        return torch.randn(spec.shape, generator=generator).to(dtype)
    high = spec.high if spec.high is not None else 2
    return torch.randint(0, high, spec.shape, generator=generator).to(dtype)


def _redraw_like(example: Any, generator: torch.Generator) -> Any:
    """A fresh N(0, 1) tensor shaped like a float example; anything else is kept (cloned)."""
    if not isinstance(example, torch.Tensor):
        return example
    if torch.is_floating_point(example):
        return torch.randn(example.shape, generator=generator).to(example.dtype)
    return example.detach().clone()


def _clone(item: Any) -> Any:
    return item.detach().clone() if isinstance(item, torch.Tensor) else item


@dataclass
class BatchSource:
    """Builds the inputs of each pass on the model's device."""

    handle: ModelHandle
    data: tuple | None
    device: torch.device

    def draw(self, pass_seed: int, requires_grad: bool = False) -> list[Any]:
        """The inputs of one pass; with `requires_grad`, float inputs join the autograd graph."""
        generator = torch.Generator().manual_seed(pass_seed)
        if self.data is not None:
            items = [_clone(x) for x in self.data]
        elif self.handle.example_inputs is not None:
            items = [_redraw_like(x, generator) for x in self.handle.example_inputs]
        else:
            items = [_draw_spec(spec, generator) for spec in self.handle.inputs]
        items = [x.to(self.device) if isinstance(x, torch.Tensor) else x for x in items]
        if requires_grad:
            for x in items:
                if isinstance(x, torch.Tensor) and torch.is_floating_point(x):
                    x.requires_grad_(True)
        return items


def as_batch(data: Any) -> tuple | None:
    """Accept a single tensor or a sequence of inputs as the user's real batch."""
    if data is None:
        return None
    if isinstance(data, torch.Tensor):
        return (data,)
    return tuple(data)


def float_moments(inputs: Sequence[Any]) -> tuple[float, float] | None:
    """Mean and standard deviation over all elements of the float inputs (None if there are none)."""
    floats = [x.detach() for x in inputs if isinstance(x, torch.Tensor) and torch.is_floating_point(x) and x.numel()]
    if not floats:
        return None
    count = sum(x.numel() for x in floats)
    total = sum(float(x.sum(dtype=torch.float64)) for x in floats)
    total_sq = sum(float(torch.linalg.vector_norm(x, dtype=torch.float64)) ** 2 for x in floats)
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, 0.0))


def describe(inputs: Sequence[Any]) -> str:
    """Shapes and dtypes of the inputs, for error messages."""
    parts = [f"{tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}" if isinstance(x, torch.Tensor)
             else type(x).__name__ for x in inputs]
    return ", ".join(parts) or "no inputs"
