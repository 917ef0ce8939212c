"""Weight edits: what a weight-changing recommendation does, in a form a program can apply.

A recommendation that changes weights (rescale, branch scaling, re-initialisation, memory-gate
bias, magnitude pruning, bias shift) is a `WeightRecommendation`: the shared `Recommendation`
plus the `Edit`s that carry it out. Each edit names one registered function (`@edit`), written
beside the remedy kind that produces it in gradaudit.remedies.kinds, so the phrase a user reads
and the change gradaudit verifies come from the same unit. `apply` runs them on a deep copy of a
torch module (the user's module, or the ONNX executor's module, whose parameters are the ONNX
initializers under `param_names`); the original is never touched. Torch is imported where an
edit runs: registering the remedies (`gradaudit explain`) must not import it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from gradaudit.errors import GradauditError
from gradaudit.results import Recommendation

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Edit:
    """One change to one parameter tensor."""

    how: str  # the registered edit function (see EDITS)
    param: str  # qualified parameter name in the module (`named_parameters()`)
    value: float  # the amount: factor, std, bias value, energy kept, shift
    span: tuple[int, int] | None = None  # [start, stop) along the last axis; None: the whole tensor


@dataclass
class WeightRecommendation(Recommendation):
    """A recommendation with a named change and, when it changes weights, the edits doing it.

    `change` names what it does ("rescale", "branch_scale", "redraw", "gate_bias", "prune",
    "bias_shift", or "planned_lr" for a planned run's learning rate, which has no edits): two
    recommendations of one remedy kind but different changes are both kept.
    """

    change: str = ""
    edits: tuple[Edit, ...] = ()


EditFunction = Callable[["torch.Tensor", Edit, "torch.Generator"], None]
EDITS: dict[str, EditFunction] = {}


def edit(how: str) -> Callable[[EditFunction], EditFunction]:
    """Register the in-place tensor function of one kind of edit."""

    def register(function: EditFunction) -> EditFunction:
        EDITS[how] = function
        return function

    return register


def edited(rec: Recommendation, module: torch.nn.Module | None = None) -> bool:
    """Does this recommendation change weights that `apply` can reach (in `module`, when given)?
    A weight an ONNX graph computes from several initializers (a bidirectional LSTM's Concat of
    both directions) is measured, but it is no parameter, so no edit reaches it."""
    if not (isinstance(rec, WeightRecommendation) and rec.edits):
        return False
    if module is None:
        return True
    params = dict(module.named_parameters(remove_duplicate=False))
    return all(change.param in params for change in rec.edits)


def apply_edits(module: torch.nn.Module, edits: tuple[Edit, ...] | list[Edit], seed: int = 0) -> torch.nn.Module:
    """A deep copy of `module` with the edits applied (seeded: a re-draw is reproducible)."""
    import torch

    changed = copy.deepcopy(module)
    params = dict(changed.named_parameters(remove_duplicate=False))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for change in edits:
            if change.param not in params:
                raise GradauditError(f"parameter {change.param!r} is not in the module")
            tensor = params[change.param]
            target = tensor[..., change.span[0]:change.span[1]] if change.span else tensor
            EDITS[change.how](target, change, generator)
    return changed


def apply(module: torch.nn.Module, rec: Recommendation, seed: int = 0) -> torch.nn.Module:
    """A copy of `module` (torch module or ONNX executor module) with the recommendation applied."""
    if not edited(rec):
        raise GradauditError(f"the {rec.remedy} recommendation does not change weights")
    return apply_edits(module, rec.edits, seed)
