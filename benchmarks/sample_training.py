"""Does the measured diagnosis predict training? A short run of every sample on a teacher task.

Each sample (3 seeds) is trained for 100 full-batch SGD steps (lr 0.03, momentum 0.9) to regress
a teacher: the same architecture built with another seed, its outputs on 128 N(0, 1) inputs
standardised per output unit. The student can represent the teacher exactly, so failing to fit
it is the optimiser's problem, not the task's; the best constant prediction has loss ~1.
Loss is the mean squared error on those 128 examples. A run is
  diverged  when the loss goes non-finite, ends above where it started, or one SGD step moves a
            weight layer by more than its own norm (the update overwrote the initialisation;
            a healthy step is ~1e-3..1e-2 of the weight, THEORY.md),
  stalled   when the loss ends above 90% of the best constant prediction's,
  trained   otherwise.
Also printed: the largest single-step relative update of any weight layer, and how far the first
weight layer moved over the run (relative to its initial norm).
Run `python benchmarks/sample_training.py` from the repository root (< 60 s on one CPU core).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samples import SAMPLES, factory  # noqa: E402

SEEDS = (0, 1, 2)
TEACHER_SEED_OFFSET = 100
STEPS = 100
EXAMPLES = 128
LEARNING_RATE = 0.03
MOMENTUM = 0.9
STALL_FRACTION = 0.9


@dataclass
class Run:
    start: float
    end: float
    constant: float  # loss of predicting the targets' mean
    max_step: float  # largest ||W_{t+1} - W_t|| / ||W_t|| of any weight layer
    first_moved: float  # ||W_end - W_0|| / ||W_0|| of the first weight layer
    outcome: str


def teacher_task(name: str, example: tuple[torch.Tensor, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs shaped like the example and the standardised outputs of a differently seeded twin."""
    teacher, _ = factory(name)(seed + TEACHER_SEED_OFFSET)
    teacher.train()
    gen = torch.Generator().manual_seed(10_000 + seed)
    x = torch.randn((EXAMPLES, *example[0].shape[1:]), generator=gen)
    with torch.no_grad():
        y = teacher(x)
    return x, (y - y.mean(0)) / y.std(0)


def classify(start: float, end: float, constant: float, max_step: float) -> str:
    if not (math.isfinite(end) and end <= start and max_step <= 1.0):
        return "diverged"
    if end > STALL_FRACTION * constant:
        return "stalled"
    return "trained"


def relative_change(new: torch.Tensor, old: torch.Tensor) -> float:
    return ((new - old).norm() / old.norm()).item()


def train(name: str, seed: int) -> Run:
    """Train one freshly built sample on its teacher task and classify the run."""
    model, example = factory(name)(seed)
    model.train()
    x, y = teacher_task(name, example, seed)
    weights = [p for p in model.parameters() if p.ndim >= 2]
    initial_first = weights[0].detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    start, max_step = math.nan, 0.0
    for step in range(STEPS):
        before = [w.detach().clone() for w in weights]
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        start = loss.item() if step == 0 else start
        if not math.isfinite(loss.item()):
            break
        loss.backward()
        optimizer.step()
        max_step = max([max_step] + [relative_change(w.detach(), b) for w, b in zip(weights, before)])
    with torch.no_grad():
        end = nn.functional.mse_loss(model(x), y).item()
    constant = nn.functional.mse_loss(y.mean(0, keepdim=True).expand_as(y), y).item()
    first_moved = relative_change(weights[0].detach(), initial_first)
    return Run(start, end, constant, max_step, first_moved, classify(start, end, constant, max_step))


def main() -> None:
    torch.set_num_threads(1)
    began = time.perf_counter()
    print(f"{'sample':28s} {'measured':9s} {'loss start':>10s} {'loss end':>9s} {'max step':>9s} "
          f"{'1st moved':>9s}  outcome per seed (medians over seeds)")
    for name, diagnosis in SAMPLES.items():
        runs = [train(name, seed) for seed in SEEDS]
        start, end, max_step, first_moved = (
            statistics.median(getattr(r, field) for r in runs) for field in ("start", "end", "max_step", "first_moved")
        )
        outcomes = " ".join(r.outcome for r in runs)
        print(f"{name:28s} {diagnosis:9s} {start:10.3g} {end:9.3g} {max_step:9.2g} {first_moved:9.2g}  {outcomes}")
    print(f"({len(SEEDS)} seeds x {STEPS} full-batch SGD steps, lr {LEARNING_RATE}, momentum {MOMENTUM}; "
          f"best constant prediction's loss ~1; {time.perf_counter() - began:.1f} s)")


if __name__ == "__main__":
    main()
