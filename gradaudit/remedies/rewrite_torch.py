"""Carry out structural rewrites on a deep copy of a torch module, by module surgery.

LayerGraph names of a torch model are module paths, so a rewrite replaces the submodule at a
path: a layer by nn.Sequential(layer, norm), a norm by nn.Identity, an activation module by
its replacement; a skip wraps the children of one nn.Sequential from the run's first layer up to
the next layer in `ScaledSkip` and leaves nn.Identity in the other slots (so every later path
still names the same module). A rewrite that needs a module where the model calls a function
(torch.sigmoid in forward, say) cannot be made this way: `GradauditError`, and the
recommendation stays unverified. `patch` states each rewrite as the before/after lines of the
module definition.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gradaudit.errors import GradauditError
from gradaudit.model import ModelHandle
from gradaudit.remedies.edits import Edit, apply_edits
from gradaudit.remedies.structure import Rewrite

TORCH_ACTIVATIONS = {"relu": nn.ReLU}


class ScaledSkip(nn.Module):
    """x + scale * branch(x): an identity skip around a run of layers, the branch scaled down."""

    def __init__(self, branch: nn.Module, scale: float):
        super().__init__()
        self.branch = branch
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.branch(x)

    def extra_repr(self) -> str:
        return f"scale={self.scale!r}"


def _owner(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent, _, child = path.rpartition(".")
    try:
        owner = model.get_submodule(parent) if parent else model
        getattr(owner, child)
    except AttributeError:
        raise GradauditError(f"no submodule {path!r} to rewrite (a function call, not a module?)") from None
    return owner, child


def _norm(rewrite: Rewrite, like: nn.Module, rank: int) -> nn.Module:
    if rewrite.to == "batch":
        norm = {3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank, nn.BatchNorm1d)(rewrite.size)
    else:
        norm = nn.LayerNorm(rewrite.size)
    reference = next(like.parameters(), None)
    return norm.to(reference.device, reference.dtype) if reference is not None else norm


def replacement(model: nn.Module, rewrite: Rewrite, rank: int) -> tuple[nn.Module, list[str], nn.Module]:
    """(owner, the child names replaced, the new module for the first) of one rewrite; raises
    GradauditError when it cannot be made."""
    owner, child = _owner(model, rewrite.node)
    old = getattr(owner, child)
    if rewrite.how == "insert_norm":
        return owner, [child], nn.Sequential(old, _norm(rewrite, old, rank))
    if rewrite.how == "remove_norm":
        return owner, [child], nn.Identity()
    if rewrite.how == "swap_activation":
        return owner, [child], TORCH_ACTIVATIONS[rewrite.to]()
    end_owner, end = _owner(model, rewrite.to)
    if end_owner is not owner or not isinstance(owner, nn.Sequential):
        raise GradauditError(f"{rewrite.node} and {rewrite.to} are not children of one nn.Sequential")
    names = list(owner._modules)
    run = names[names.index(child):names.index(end)]
    return owner, run, ScaledSkip(nn.Sequential(*(owner._modules[n] for n in run)), rewrite.scale)


def restructured_module(module: nn.Module, edits: tuple[Edit, ...], rewrites: tuple[Rewrite, ...], seed: int,
                        ranks: dict[str, int]) -> nn.Module:
    """A deep copy of `module` with the weight edits, then the rewrites, applied. `ranks` gives the
    output rank of each rewritten layer (which BatchNorm a norm after it takes)."""
    changed = apply_edits(module, edits, seed)
    for rewrite in rewrites:
        owner, replaced, new = replacement(changed, rewrite, ranks.get(rewrite.node, 2))
        for name in replaced[1:]:  # a skip's run: the first slot holds it, the others pass through
            owner._modules[name] = nn.Identity()
        owner._modules[replaced[0]] = new
    return changed


def restructured_torch_handle(handle: ModelHandle, edits: tuple[Edit, ...], rewrites: tuple[Rewrite, ...],
                              seed: int) -> ModelHandle:
    """The handle of the restructured copy, traced afresh on the audit's example inputs."""
    from gradaudit.loaders.torch_loader import from_module

    ranks = {data["name"]: len(data["out_shape"] or ()) for _, data in handle.graph.nodes(data=True)}
    module = restructured_module(handle.module, edits, rewrites, seed, ranks)
    changed = from_module(module, handle.example_inputs, handle.source)
    return dataclasses.replace(changed, loss_fn=handle.loss_fn)


def patch(module: nn.Module, rewrites: tuple[Rewrite, ...], ranks: dict[str, int]) -> str:
    """Each rewrite as `- old` / `+ new` lines under the module path it changes."""
    parts = []
    for rewrite in rewrites:
        owner, replaced, new = replacement(module, rewrite, ranks.get(rewrite.node, 2))
        prefix = f"{rewrite.node.rpartition('.')[0]}." if "." in rewrite.node else ""
        child = replaced[0] if len(replaced) == 1 else f"{replaced[0]}..{replaced[-1]}"
        old = new.branch if rewrite.how == "add_skip" else owner._modules[replaced[0]]
        removed = "\n".join(f"- {line}" for line in repr(old).splitlines())
        added = "\n".join(f"+ {line}" for line in repr(new).splitlines())
        parts.append(f"@@ model.{prefix}{child} ({rewrite.how}) @@\n{removed}\n{added}\n")
    return "".join(parts)
