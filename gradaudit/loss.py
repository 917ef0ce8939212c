"""The default loss of an audit, and its static counterpart.

DESIGN.md measures gradient flow "under the model's own loss or a default one". The default must
look like a real training loss so absolute gradient scales mean something:
- an output produced by a softmax is read as probabilities (by a log-softmax, as log-probabilities):
  negative log-likelihood of seeded random labels along the softmax axis (the gradient at the
  logits is then p - onehot);
- any other float output: squared error against seeded N(0, 1) targets, summed over features and
  averaged over the batch, L = (1/B) sum 1/2 (y - t)^2, so dL/dy = (y - t)/B.
The static estimator seeds its backward pass with the same loss's gradient (`output_grad_sq` for
squared error), so prediction and measurement share their absolute scale.

`--loss` names the planned run's loss instead (gradaudit.config.LOSSES): `auto` is the rule above;
`mse` squared error on every output; `cross-entropy` reads the last axis (a softmax's own axis) as logits against
seeded labels; `bce` reads every element as a logit against seeded 0/1 targets; `nll` reads the
last axis as log-probabilities. The sharpness depends on this choice: a classifier's logits have a
far smaller curvature under cross-entropy than under squared error.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

PROBABILITY_FLOOR = 1e-30
TEACHER_RMS_FLOOR = 1e-12  # a teacher whose outputs are all zero gives zero regression targets


def _labels_term(values: torch.Tensor, batch: int, gen: torch.Generator,
                 as_log_prob: Callable[[torch.Tensor], torch.Tensor], teacher: torch.Tensor | None) -> torch.Tensor:
    """-(1/B) sum of log p(label) over every position, classes on the last axis; the labels are
    seeded, or the teacher's argmax (the teacher's values laid out like `values`)."""
    classes = values.shape[-1]
    flat = values.reshape(-1, classes)
    if teacher is not None:
        labels = teacher.reshape(-1, classes).argmax(dim=1)
    else:
        labels = torch.randint(0, classes, (flat.shape[0],), generator=gen)
    term: torch.Tensor = -as_log_prob(flat).gather(1, labels[:, None].to(flat.device)).sum() / batch
    return term


def _output_loss(
    y: torch.Tensor, op: str, axis: int, loss: str, gen: torch.Generator, teacher: torch.Tensor | None = None
) -> torch.Tensor:
    """One output's term under `loss` (an op name of "softmax"/"log_softmax" says what made y).
    Targets are seeded noise, or read from `teacher` (a teacher network's output for the same
    inputs, shaped like y): its argmax as labels, its values above their median as 0/1 targets,
    its values scaled to unit RMS as regression targets."""
    batch = y.shape[0] if y.dim() > 0 else 1
    kind = loss if loss != "auto" else ("probabilities" if op in ("softmax", "log_softmax") else "mse")
    if y.dim() > 0 and kind in ("probabilities", "cross-entropy", "nll"):
        class_axis = axis if op in ("softmax", "log_softmax") else -1
        values = torch.movedim(y, class_axis, -1)
        taught = torch.movedim(teacher, class_axis, -1) if teacher is not None else None
        if op == "softmax":  # probabilities already: every label-based loss reads their log
            return _labels_term(values, batch, gen, lambda p: torch.log(p.clamp_min(PROBABILITY_FLOOR)), taught)
        if kind == "cross-entropy":
            return _labels_term(values, batch, gen, lambda z: torch.log_softmax(z, dim=-1), taught)
        return _labels_term(values, batch, gen, lambda logp: logp, taught)
    if kind == "bce":
        if teacher is not None:
            target = (teacher > teacher.median()).to(y.dtype)
        else:
            target = torch.randint(0, 2, y.shape, generator=gen).to(y.dtype).to(y.device)
        return torch.nn.functional.binary_cross_entropy_with_logits(y, target, reduction="sum") / batch
    if teacher is not None:
        target = (teacher / teacher.square().mean().sqrt().clamp_min(TEACHER_RMS_FLOOR)).to(y.dtype)
    else:
        target = torch.randn(y.shape, generator=gen, dtype=torch.float32).to(y.dtype).to(y.device)
    return 0.5 * ((y - target) ** 2).sum() / batch


def default_loss(
    outputs: Sequence[torch.Tensor], output_ops: Sequence[str], axes: Sequence[int], seed: int, loss: str = "auto",
    teacher: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The loss `loss` (gradaudit.config.LOSSES) summed over every float output, seeded by `seed`.

    `output_ops[i]` names what produced output i: "softmax", "log_softmax" or any other op kind;
    `axes[i]` is the softmax axis (ignored for other outputs). `teacher[i]`, when given, is a
    teacher network's output i for the same inputs: the targets then come from it (a learnable
    task) instead of from seeded noise.
    """
    gen = torch.Generator().manual_seed(seed + 7919)
    total = None
    for index, (y, op, axis) in enumerate(zip(outputs, output_ops, axes)):
        if not torch.is_floating_point(y) or y.numel() == 0:
            continue
        taught = teacher[index].detach() if teacher is not None else None
        term = _output_loss(y, op, axis, loss, gen, taught)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("the model has no floating-point output to take a loss of")
    return total


def output_grad_sq(q: float, shape: tuple[int, ...] | None) -> float:
    """Predicted E[(dL/dy)^2] per element at an output under squared error against seeded
    N(0, 1) targets: E[(y - t)^2] / B^2 = (q + 1) / B^2 with t independent of y. (The label
    losses' gradients are seeded at the logits by the static estimator itself.)"""
    batch = shape[0] if shape else 1
    return (q + 1.0) / (batch * batch)
