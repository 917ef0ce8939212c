"""Elementwise activation functions by name, as torch callables.

One table serves the static estimator (which integrates E[phi(z)^2], E[phi'(z)^2] by quadrature,
so any function listed here is covered without a closed form) and the probe (which needs phi' to
count dead and saturated units). Loaders map ONNX op types and torch modules onto these names.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]


def _relu(a: dict[str, Any]) -> Activation:
    return torch.relu


def _leaky_relu(a: dict[str, Any]) -> Activation:
    slope = float(a.get("alpha", 0.01))
    return lambda z: F.leaky_relu(z, slope)


def _elu(a: dict[str, Any]) -> Activation:
    alpha = float(a.get("alpha", 1.0))
    return lambda z: F.elu(z, alpha)


def _celu(a: dict[str, Any]) -> Activation:
    alpha = float(a.get("alpha", 1.0))
    return lambda z: F.celu(z, alpha)


def _gelu(a: dict[str, Any]) -> Activation:
    approximate = str(a.get("approximate", "none"))
    return lambda z: F.gelu(z, approximate=approximate)


def _softplus(a: dict[str, Any]) -> Activation:
    beta = float(a.get("beta", 1.0))
    return lambda z: F.softplus(z, beta=beta)


def _hardtanh(a: dict[str, Any]) -> Activation:
    lo, hi = float(a.get("min", -1.0)), float(a.get("max", 1.0))
    return lambda z: torch.clamp(z, lo, hi)


def _hardsigmoid(a: dict[str, Any]) -> Activation:
    alpha, beta = float(a.get("alpha", 1 / 6)), float(a.get("beta", 0.5))
    return lambda z: torch.clamp(alpha * z + beta, 0.0, 1.0)


def _thresholded_relu(a: dict[str, Any]) -> Activation:
    alpha = float(a.get("alpha", 1.0))
    return lambda z: torch.where(z > alpha, z, torch.zeros_like(z))


def _prelu(a: dict[str, Any]) -> Activation:
    slope = float(a.get("slope", 0.25))  # the mean learned slope
    return lambda z: torch.where(z >= 0, z, slope * z)


ACTIVATIONS: dict[str, Callable[[dict[str, Any]], Activation]] = {
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "prelu": _prelu,
    "elu": _elu,
    "celu": _celu,
    "selu": lambda a: F.selu,
    "gelu": _gelu,
    "silu": lambda a: F.silu,
    "mish": lambda a: F.mish,
    "tanh": lambda a: torch.tanh,
    "sigmoid": lambda a: torch.sigmoid,
    "softplus": _softplus,
    "softsign": lambda a: F.softsign,
    "hardtanh": _hardtanh,
    "hardsigmoid": _hardsigmoid,
    "hardswish": lambda a: F.hardswish,
    "relu6": lambda a: F.relu6,
    "thresholded_relu": _thresholded_relu,
    "abs": lambda a: torch.abs,
    "exp": lambda a: torch.exp,
    "sin": lambda a: torch.sin,
    "cos": lambda a: torch.cos,
    "erf": lambda a: torch.erf,
    "identity": lambda a: (lambda z: z),
}

# Bounded activations whose derivative vanishes for large |z|: saturation is meaningful for them.
SATURATING = frozenset({"tanh", "sigmoid", "hardtanh", "hardsigmoid", "softsign", "erf", "relu6"})
# Activations with a zero-derivative half-line: a unit inactive on the whole batch is dead.
RECTIFYING = frozenset({"relu", "relu6", "thresholded_relu", "hardtanh", "hardsigmoid"})


def saturates_only_above_zero(fn: str, attrs: dict[str, Any]) -> bool:
    """ReLU6 and clips with a zero floor (Clip(0, 6) is how ReLU6 exports): their flat part below
    zero is a ReLU's off half, dead units' business as for ReLU itself; only the upper clip is
    saturation."""
    return fn == "relu6" or (fn == "hardtanh" and attrs.get("min") == 0)


def activation(fn: str, attrs: dict[str, Any] | None = None) -> Activation:
    """The torch function for an activation name; KeyError for a name not in the table."""
    return ACTIVATIONS[fn](attrs or {})
