"""Every elementwise activation, declared once: its formula and where it appears.

An `Activation` names the function in the LayerGraph vocabulary (`fn` of an "activation" node),
gives phi(z, **params) as a torch callable with its parameters' defaults, and lists how models
spell it: torch module classes and functional names (with the arguments holding the parameters)
and the ONNX op type (with the ONNX attribute defaults where they differ). Everything else reads
this table: the static estimator integrates E[phi(z)^2], E[phi'(z)^2] by quadrature (so an entry
needs no closed form), the probe counts dead and saturated units with phi', the ONNX executor
runs the op, and both loaders map modules, calls and nodes onto the name. Adding an activation is
one entry here (and its test). PReLU's slope is a weight, so its loaders' rules read it themselves.

This module sits in the lowest layer (README, Layout), so the executor, the loaders and the
analyses can all import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

Formula = Callable[..., torch.Tensor]  # phi(z, **params)
Phi = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Activation:
    """One activation: formula, parameters, spellings in torch and ONNX, derivative's shape."""

    name: str  # the LayerGraph vocabulary name (fn of an "activation" node)
    formula: Formula
    params: Mapping[str, Any] = field(default_factory=dict)  # name -> default (torch's where both define it)
    torch_modules: tuple[str, ...] = ()  # torch.nn class names
    module_attrs: Mapping[str, str] = field(default_factory=dict)  # param -> the module's attribute
    torch_functions: tuple[str, ...] = ()  # functional / method names fx records
    call_args: Mapping[str, tuple[int, str]] = field(default_factory=dict)  # param -> (position, keyword)
    onnx_op: str | None = None  # the ONNX op type it runs as (attributes named as `params`)
    onnx_defaults: Mapping[str, Any] = field(default_factory=dict)  # ONNX defaults that differ from `params`
    saturating: bool = False  # bounded, derivative vanishing for large |z|: saturation is meaningful
    rectifying: bool = False  # a zero-derivative half-line: a unit inactive on the whole batch is dead

    def resolved(self, given: Mapping[str, Any] | None = None, onnx: bool = False) -> dict[str, Any]:
        """Every parameter: the given value, else the default (ONNX's when `onnx`)."""
        defaults = {**self.params, **self.onnx_defaults} if onnx else self.params
        given = given or {}
        return {key: given.get(key, default) for key, default in defaults.items()}

    def phi(self, attrs: Mapping[str, Any] | None = None) -> Phi:
        """phi as a one-argument function, parameters fixed from `attrs` (a node's)."""
        params = self.resolved(attrs)
        return lambda z: self.formula(z, **params)


def _identity(z: torch.Tensor) -> torch.Tensor:
    return z


def _hardtanh(z: torch.Tensor, min: float, max: float) -> torch.Tensor:
    return torch.clamp(z, min, max)


def _hardsigmoid(z: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    return torch.clamp(alpha * z + beta, 0.0, 1.0)


def _thresholded_relu(z: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.where(z > alpha, z, torch.zeros_like(z))


def _prelu(z: torch.Tensor, slope: float) -> torch.Tensor:
    return torch.where(z >= 0, z, slope * z)


def _selu(z: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    return gamma * torch.where(z > 0, z, alpha * torch.expm1(z))


def _silu(z: torch.Tensor, alpha: float) -> torch.Tensor:
    """x sigmoid(alpha x): SiLU at alpha 1, ONNX's Swish in general."""
    return z * torch.sigmoid(alpha * z)


def _softplus(z: torch.Tensor, beta: float) -> torch.Tensor:
    return F.softplus(z, beta=beta)


def _gelu(z: torch.Tensor, approximate: str) -> torch.Tensor:
    return F.gelu(z, approximate=approximate)


def _leaky_relu(z: torch.Tensor, alpha: float) -> torch.Tensor:
    return F.leaky_relu(z, alpha)


def _elu(z: torch.Tensor, alpha: float) -> torch.Tensor:
    return F.elu(z, alpha)


def _celu(z: torch.Tensor, alpha: float) -> torch.Tensor:
    return F.celu(z, alpha)


DECLARED: tuple[Activation, ...] = (
    Activation("relu", torch.relu, torch_modules=("ReLU",), torch_functions=("relu",), onnx_op="Relu",
               rectifying=True),
    Activation("leaky_relu", _leaky_relu, {"alpha": 0.01},
               torch_modules=("LeakyReLU",), module_attrs={"alpha": "negative_slope"},
               torch_functions=("leaky_relu",), call_args={"alpha": (1, "negative_slope")}, onnx_op="LeakyRelu"),
    Activation("prelu", _prelu, {"slope": 0.25}),  # the mean learned slope, read by the loaders' rules
    Activation("elu", _elu, {"alpha": 1.0}, torch_modules=("ELU",), module_attrs={"alpha": "alpha"},
               torch_functions=("elu",), call_args={"alpha": (1, "alpha")}, onnx_op="Elu"),
    Activation("celu", _celu, {"alpha": 1.0}, torch_modules=("CELU",), module_attrs={"alpha": "alpha"},
               torch_functions=("celu",), call_args={"alpha": (1, "alpha")}, onnx_op="Celu"),
    # torch's constants; ONNX's float32 defaults are these numbers rounded to float32
    Activation("selu", _selu, {"alpha": 1.6732632423543772, "gamma": 1.0507009873554805},
               torch_modules=("SELU",), torch_functions=("selu",), onnx_op="Selu"),
    Activation("gelu", _gelu, {"approximate": "none"}, torch_modules=("GELU",),
               module_attrs={"approximate": "approximate"}, torch_functions=("gelu",),
               call_args={"approximate": (1, "approximate")}, onnx_op="Gelu"),
    Activation("silu", _silu, {"alpha": 1.0}, torch_modules=("SiLU",), torch_functions=("silu",), onnx_op="Swish"),
    Activation("mish", F.mish, torch_modules=("Mish",), torch_functions=("mish",), onnx_op="Mish"),
    Activation("tanh", torch.tanh, torch_modules=("Tanh",), torch_functions=("tanh",), onnx_op="Tanh",
               saturating=True),
    Activation("sigmoid", torch.sigmoid, torch_modules=("Sigmoid",), torch_functions=("sigmoid",),
               onnx_op="Sigmoid", saturating=True),
    Activation("softplus", _softplus, {"beta": 1.0}, torch_modules=("Softplus",), module_attrs={"beta": "beta"},
               torch_functions=("softplus",), call_args={"beta": (1, "beta")}, onnx_op="Softplus"),
    Activation("softsign", F.softsign, torch_modules=("Softsign",), torch_functions=("softsign",),
               onnx_op="Softsign", saturating=True),
    # ONNX writes torch's Hardtanh and ReLU6 as Clip, which the ONNX mapping reads as hardtanh
    Activation("hardtanh", _hardtanh, {"min": -1.0, "max": 1.0}, torch_modules=("Hardtanh",),
               module_attrs={"min": "min_val", "max": "max_val"}, torch_functions=("hardtanh",),
               call_args={"min": (1, "min_val"), "max": (2, "max_val")}, saturating=True, rectifying=True),
    Activation("hardsigmoid", _hardsigmoid, {"alpha": 1 / 6, "beta": 0.5}, torch_modules=("Hardsigmoid",),
               torch_functions=("hardsigmoid",), onnx_op="HardSigmoid", onnx_defaults={"alpha": 0.2},
               saturating=True, rectifying=True),
    Activation("hardswish", F.hardswish, torch_modules=("Hardswish",), torch_functions=("hardswish",),
               onnx_op="HardSwish"),
    Activation("relu6", F.relu6, torch_modules=("ReLU6",), torch_functions=("relu6",), saturating=True,
               rectifying=True),
    Activation("thresholded_relu", _thresholded_relu, {"alpha": 1.0}, onnx_op="ThresholdedRelu", rectifying=True),
    Activation("abs", torch.abs, torch_functions=("abs",), onnx_op="Abs"),
    Activation("exp", torch.exp, torch_functions=("exp",), onnx_op="Exp"),
    Activation("sin", torch.sin, torch_functions=("sin",), onnx_op="Sin"),
    Activation("cos", torch.cos, torch_functions=("cos",), onnx_op="Cos"),
    Activation("erf", torch.erf, torch_functions=("erf",), onnx_op="Erf", saturating=True),
    Activation("identity", _identity),
)

ACTIVATIONS: dict[str, Activation] = {declared.name: declared for declared in DECLARED}
ONNX_ACTIVATIONS: dict[str, Activation] = {a.onnx_op: a for a in DECLARED if a.onnx_op}

SATURATING = frozenset(a.name for a in DECLARED if a.saturating)
RECTIFYING = frozenset(a.name for a in DECLARED if a.rectifying)


def saturates_only_above_zero(fn: str, attrs: Mapping[str, Any]) -> bool:
    """ReLU6 and clips with a zero floor (Clip(0, 6) is how ReLU6 exports): their flat part below
    zero is a ReLU's off half, dead units' business as for ReLU itself; only the upper clip is
    saturation."""
    return fn == "relu6" or (fn == "hardtanh" and attrs.get("min") == 0)


def activation(fn: str, attrs: Mapping[str, Any] | None = None) -> Phi:
    """The torch function for an activation name; KeyError for a name not in the table."""
    return ACTIVATIONS[fn].phi(attrs)
