"""Trial runs: a short real training of a copy of the model at a planned learning rate.

The sharpness bound 2/lambda holds for a fixed quadratic. Real networks often train above it (the
loss spikes once and the curvature drops: catapult and edge-of-stability dynamics), so the bound
alone predicts divergence far too often. A trial run measures instead: k steps of the planned
optimizer, its momentum or Adam state included, on a deep copy of the module (always a copy, even
of an ONNX executor module the probe runs in place), so the audited weights never change.

Every step draws a fresh seeded batch shaped like the probe's (the user's `--data` batch when
given) whose targets a seeded *teacher* gives: the model's own architecture with each parameter
tensor's entries shuffled (`teacher_copy`), so its outputs have the model's shapes and scale but
are a different function of the inputs (its argmax the labels under a label loss, its values the
regression targets). The task is learnable, as real data is: a classifier's logits grow while it
learns, and the curvature with them, which is how many runs diverge after the first steps.
Random labels (the probe's targets) hold nothing to learn but the output's scale and offset,
so a trial on them missed those runs (benchmarks/lr_check.py). Fresh batches rather than a few
cycled: a rate far too high for real data could memorise a small pool and look fine. The
model's own loss (a factory's) brings its targets and takes no teacher. Divergence: a
non-finite loss, or a loss above DIVERGENCE_FACTOR times the first step's.

A falling loss does not show that the network learns through its depth: a vanishing model's head
lowers it alone. `--verify`'s trials are therefore judged through depth (`through_depth`): they
also compare the relative change of the first and the last weight layer, and a first layer that
stays put (stalls) or is swamped by its updates (unstable) does not count as training.

`search_rate` turns trial runs into a recommended rate: a short geometric search for the rate
that lowers the loss most, times SAFETY_FACTOR, plus a warm-up when a rate that diverges from a cold start
trains once warmed up to.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from gradaudit.graph import flow_ends, weight_layers
from gradaudit.model import ModelHandle
from gradaudit.optimizers import MOMENTUM
from gradaudit.probe.batches import BatchSource, as_batch
from gradaudit.probe.objective import objective_for, output_tensors
from gradaudit.probe.run import seeded_rng, training_copy
from gradaudit.probe.units import l2_norm

DIVERGENCE_FACTOR = 10.0  # the definition: loss above 10x its first value
DECREASE_WINDOW = 10  # steps averaged at each end of a trial to say whether the loss went down
TRIAL_SEED_OFFSET = 104_729  # keeps trial batches apart from the probe's (seed + pass index)
TEACHER_SEED_OFFSET = 15_485_863  # the teacher's shuffle: a seed no batch uses
SEARCH_STEPS = 30  # steps of each search trial: a few dozen
# A run whose loss neither diverged nor went down in its steps is undecided (too slow, or
# unstable and not yet blown up): it goes on to this many times its steps. Runs that settle
# stop on time, so the cost grows only where the answer is in doubt (benchmarks/lr_check.py:
# a tanh MLP whose trial hovered for 50 steps diverged at step 79).
UNDECIDED_EXTENSION = 2
SEARCH_FACTOR = math.sqrt(10.0)  # two rates per decade
SEARCH_MAX_TRIALS = 6  # the planned trial included: at most three decades explored
# Half the rate that lowered the loss most. That rate is already below one that trained worse
# or diverged; a trial is short and synthetic, and a longer run on real data can spike later
# (Smith 2017's range test likewise picks a rate well under the one where the loss blows up).
SAFETY_FACTOR = 0.5
# A trial judged through depth (`through_depth`) does not train when its first weight layer's
# relative change is more than this many decades from the last's: below, the loss fell at the
# head only (the vanishing samples' originals: 8 to 10 decades below); above, the first layer's
# updates swamp its weights (the BN plain stack's and the tanh RNN's originals: 3.5 to 4.7 above).
# Their fixes that train in benchmarks/fix_trains.py sit between 1.8 below and 0.5 above (a
# 50-step trial at 0.01 with momentum).
DEPTH_DECADES = 2.0
TRAINS = "trains"  # the outcome of a trial that trains


def _loss_ends(losses: list[float] | tuple[float, ...]) -> tuple[float, float] | None:
    """Mean loss of the first and of the last DECREASE_WINDOW steps (each a fresh batch)."""
    window = min(DECREASE_WINDOW, len(losses) // 2)
    if window < 1:
        return None
    return sum(losses[:window]) / window, sum(losses[-window:]) / window


def _first_vs_last(decades: float) -> str:
    """How much the first weight layer moved next to the last, in words."""
    if decades == -math.inf:
        return "the first layer does not move"
    if decades == math.inf:
        return "the first layer moves, the last does not"
    return f"the first layer moves 10^{decades:.1f} as much as the last"


@dataclass(frozen=True)
class TrialRun:
    """What one trial run saw: the loss before each step's update, and the gradient norms."""

    lr: float
    optimizer: str
    steps: int  # asked for (an undecided run goes on to UNDECIDED_EXTENSION times as many)
    warmup: int  # linear warm-up steps (0: none)
    losses: tuple[float, ...]
    grad_norms: tuple[float, ...]
    diverged_at: int | None  # 1-based step whose loss was non-finite or > 10x the first
    seconds: float
    # ||W_end - W_start|| / ||W_start|| of the first and of the last weight layer (the first/last
    # gradient ratio's), None when the model has no two such distinct trainable tensors
    moved: tuple[float, float] | None = None
    through_depth: bool = False  # judged by whether the first layer learns too (`stalls`, `unstable`)

    @property
    def completed(self) -> bool:
        """Ran every step, or stopped because it diverged (not because the timeout ran out)."""
        return self.diverged_at is not None or len(self.losses) >= self.steps

    @property
    def decreased(self) -> bool:
        ends = _loss_ends(self.losses)
        return self.diverged_at is None and ends is not None and ends[1] < ends[0]

    @property
    def progress(self) -> float:
        """How much the loss went down, relative to where it started (mean of the first and of
        the last steps; 0 when it cannot tell)."""
        ends = _loss_ends(self.losses)
        if ends is None or not all(math.isfinite(e) for e in ends) or ends[0] == 0:
            return 0.0
        return (ends[0] - ends[1]) / abs(ends[0])

    @property
    def rose(self) -> bool:
        """Diverged, or the loss ended higher than it started: a lower rate is the way to go."""
        ends = _loss_ends(self.losses)
        return self.diverged_at is not None or (ends is not None and ends[1] > ends[0])

    @property
    def depth_decades(self) -> float | None:
        """log10 of the first weight layer's relative change over the last's (-inf when the first
        did not move, inf when only the first did; None when not measured or not finite)."""
        if self.moved is None or not all(math.isfinite(m) for m in self.moved):
            return None
        first, last = self.moved
        if first == 0:
            return -math.inf
        return math.log10(first / last) if last > 0 else math.inf

    @property
    def stalls(self) -> bool:
        """Judged through depth, the loss went down while the first weight layer barely moved
        (DEPTH_DECADES below the last): the head learnt alone, as a vanishing model's does."""
        decades = self.depth_decades if self.through_depth and self.decreased else None
        return decades is not None and decades < -DEPTH_DECADES

    @property
    def unstable(self) -> bool:
        """Judged through depth, the loss went down while the first weight layer's updates swamped
        its weights (DEPTH_DECADES above the last's relative change), as an exploding model's do."""
        decades = self.depth_decades if self.through_depth and self.decreased else None
        return decades is not None and decades > DEPTH_DECADES

    @property
    def trains(self) -> bool:
        return self.completed and self.decreased and not self.stalls and not self.unstable

    @property
    def outcome(self) -> str:
        if self.diverged_at is not None:
            return f"diverges at step {self.diverged_at}"
        if not self.completed:
            return f"stopped by the timeout after {len(self.losses)} of {self.steps} steps"
        if self.depth_decades is not None and self.stalls:
            return f"stalls: {_first_vs_last(self.depth_decades)} (the head learns alone)"
        if self.depth_decades is not None and self.unstable:
            return f"unstable: {_first_vs_last(self.depth_decades)}"
        return TRAINS if self.decreased else "loss does not decrease"

    def record(self) -> dict[str, Any]:
        """The JSON-safe summary a finding or a `verified` block shows."""
        finite = [g for g in self.grad_norms if math.isfinite(g)]
        ends = _loss_ends(self.losses)
        return {
            "lr": self.lr, "optimizer": self.optimizer, "warmup_steps": self.warmup, "steps": len(self.losses),
            "outcome": self.outcome, "first_loss": self.losses[0] if self.losses else None,
            "last_loss": self.losses[-1] if self.losses else None,
            "mean_loss_first_steps": ends[0] if ends else None, "mean_loss_last_steps": ends[1] if ends else None,
            "max_grad_norm": max(finite) if finite else None,
            "first_layer_change": self.moved[0] if self.moved else None,
            "last_layer_change": self.moved[1] if self.moved else None,
        }


def make_optimizer(params: list[torch.Tensor], lr: float, name: str) -> torch.optim.Optimizer:
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    return torch.optim.SGD(params, lr=lr)


def teacher_copy(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A training copy of `module` whose every parameter tensor has its entries shuffled (seeded):
    the same weight statistics, so the same output scale whatever the initialisation, but another
    function of the inputs; for any architecture and input kind (token ids included), which a
    teacher of fixed form (a linear map of the flattened input) is not."""
    teacher = training_copy(module)
    generator = torch.Generator().manual_seed(seed + TEACHER_SEED_OFFSET)
    with torch.no_grad():
        for param in dict.fromkeys(teacher.parameters()):
            order = torch.randperm(param.numel(), generator=generator).to(param.device)
            param.copy_(param.reshape(-1)[order].reshape(param.shape))
    return teacher


def _taught(handle: ModelHandle, teacher: torch.nn.Module | None, inputs: list[Any]) -> Any:
    """The teacher's outputs for `inputs`, or None (seeded targets) when there is no teacher or
    its outputs are not all finite."""
    if teacher is None:
        return None
    with torch.no_grad():
        outputs = handle.runner(teacher, inputs, ())[0]
    finite = all(bool(torch.isfinite(t).all()) for t in output_tensors(outputs) if torch.is_floating_point(t))
    return outputs if finite else None


def _flow_end_tensors(handle: ModelHandle, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The copy's first and last weight tensors of the first/last gradient ratio (graph.flow_ends),
    when they are two distinct trainable tensors."""
    ends = flow_ends(handle.graph, weight_layers(handle.graph))
    params = dict(model.named_parameters(remove_duplicate=False))
    tensors = [params.get(layer.param) for layer in ends[:1] + ends[-1:]]
    first, last = tensors if len(tensors) == 2 else (None, None)
    if first is None or last is None or first is last or not (first.requires_grad and last.requires_grad):
        return None
    return first, last


def _relative_change(start: torch.Tensor, end: torch.Tensor) -> float:
    """||end - start|| / ||start|| (inf for a tensor that starts at zero and moves)."""
    change, size = l2_norm(end.detach() - start), l2_norm(start)
    if size > 0:
        return change / size
    return math.inf if change > 0 else 0.0


def trial_run(
    handle: ModelHandle,
    lr: float,
    optimizer: str,
    *,
    steps: int,
    warmup: int = 0,
    seed: int = 0,
    data: tuple | None = None,
    loss: str = "auto",
    deadline: float | None = None,
    through_depth: bool = False,
) -> TrialRun | None:
    """Train a copy of the model for `steps` steps, up to UNDECIDED_EXTENSION times as many when
    its loss has not gone down by then (fewer past `deadline`, a perf_counter time; at least one
    always runs). None when it has no trainable parameter. `through_depth`: a loss that falls
    while the first weight layer stays put, or is swamped by its updates, does not count as
    training (TrialRun.stalls, TrialRun.unstable)."""
    started = time.perf_counter()
    model = training_copy(handle.module)
    params = [p for p in dict.fromkeys(model.parameters()) if p.requires_grad]
    if not params:
        return None
    optim = make_optimizer(params, lr, optimizer)
    batches = BatchSource(handle, as_batch(data), params[0].device)
    objective = objective_for(handle.graph, handle.loss_fn, loss)
    teacher = teacher_copy(handle.module, seed) if objective.seeded_targets else None
    layer_ends = _flow_end_tensors(handle, model)
    starts = tuple(t.detach().clone() for t in layer_ends) if layer_ends is not None else None
    losses: list[float] = []
    norms: list[float] = []
    diverged_at = None
    with seeded_rng(batches.device, seed):
        for step in range(steps * UNDECIDED_EXTENSION):
            if losses and deadline is not None and time.perf_counter() > deadline:
                break
            if step == steps and (ends := _loss_ends(losses)) is not None and ends[1] < ends[0]:
                break  # decided: the loss went down
            batch_seed = seed + TRIAL_SEED_OFFSET + step
            inputs = batches.draw(batch_seed)
            targets = _taught(handle, teacher, inputs)
            value = objective.compute(handle.runner(model, inputs, ())[0], inputs, batch_seed, targets).reshape(())
            current = float(value.detach())
            losses.append(current)
            if not math.isfinite(current) or (losses[0] > 0 and current > DIVERGENCE_FACTOR * losses[0]):
                diverged_at = step + 1
                break
            optim.zero_grad(set_to_none=True)
            value.backward()
            norms.append(math.sqrt(sum(l2_norm(p.grad) ** 2 for p in params if p.grad is not None)))
            for group in optim.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
            optim.step()
    moved = None
    if layer_ends is not None and starts is not None:
        moved = (_relative_change(starts[0], layer_ends[0]), _relative_change(starts[1], layer_ends[1]))
    return TrialRun(
        lr, optimizer, steps, warmup, tuple(losses), tuple(norms), diverged_at, time.perf_counter() - started,
        moved, through_depth,
    )


@dataclass(frozen=True)
class RateSearch:
    """The trial runs of a search, the rate that lowered the loss most, and the rate recommended."""

    trials: tuple[TrialRun, ...]
    best: TrialRun | None  # the rate that lowered the loss most (with its warm-up, if it needed one)
    recommended: float | None  # SAFETY_FACTOR * best.lr

    def records(self) -> list[dict[str, Any]]:
        return [trial.record() for trial in self.trials]


Attempt = Callable[[float, int], "TrialRun | None"]  # (lr, warm-up steps) -> a trial run


def search_rate(attempt: Attempt, start: float, first: TrialRun | None = None) -> RateSearch:
    """Walk a sqrt(10) grid from `start` (whose trial `first` may already have run) to the rate
    whose trial lowers the loss most (a range test's peak, Smith 2017): up while the loss does
    not rise, down while it does, each way until a trial trains worse than the best so far; at
    most SEARCH_MAX_TRIALS trials, stopping at the first one the timeout cut short. The largest
    rate that merely trains is not the one: on a learnable task a rate far too high can still
    lower the loss a little, and a real run at it then stalls. When the first rate above the
    best diverged, one more trial tries it with a linear warm-up over half its steps."""
    trials: list[TrialRun] = []
    best = failed = None
    trial = first if first is not None else attempt(start, 0)
    rate = start
    going_up = trial is not None and not trial.rose
    while trial is not None and trial.completed:
        trials.append(trial)
        better = trial.trains and (best is None or trial.progress > best.progress)
        if better:
            best = trial
        elif going_up and best is not None:
            failed = trial  # the first rate above the best that does not train better
        past_peak = best is not None and not better
        if past_peak or (going_up and best is None and trial.rose) or len(trials) >= SEARCH_MAX_TRIALS:
            break
        rate = rate * SEARCH_FACTOR if going_up else rate / SEARCH_FACTOR
        trial = attempt(rate, 0)
    if trial is not None and not trial.completed:
        trials.append(trial)
    if best is not None and failed is not None and failed.diverged_at is not None:
        warmed = attempt(failed.lr, max(failed.steps // 2, 1))
        if warmed is not None:
            trials.append(warmed)
            best = warmed if warmed.trains and warmed.progress > best.progress else best
    return RateSearch(tuple(trials), best, SAFETY_FACTOR * best.lr if best is not None else None)


class PlannedTrials:
    """The planned run's trial run, and the rate search around it, run on first request: only a
    learning-rate recommendation needs it."""

    def __init__(self, attempt: Attempt, lr: float, planned: TrialRun | None):
        self.lr = lr
        self.planned = planned
        self._attempt = attempt
        self._search: RateSearch | None = None

    def search(self) -> RateSearch:
        if self._search is None:
            self._search = search_rate(self._attempt, self.lr, self.planned)
        return self._search


def plan_trials(
    handle: ModelHandle, lr: float, optimizer: str, *, steps: int, seed: int, data: tuple | None, loss: str,
    deadline: float | None,
) -> PlannedTrials:
    """Run the planned trial (`steps` steps at `lr`); search trials run SEARCH_STEPS each, all
    of them stopping at `deadline`."""

    def attempt(rate: float, warmup: int) -> TrialRun | None:
        return trial_run(handle, rate, optimizer, steps=SEARCH_STEPS, warmup=warmup, seed=seed, data=data, loss=loss,
                         deadline=deadline)

    planned = trial_run(handle, lr, optimizer, steps=steps, seed=seed, data=data, loss=loss, deadline=deadline)
    return PlannedTrials(attempt, lr, planned)
