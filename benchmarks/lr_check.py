"""Does the trial-run check predict which planned runs diverge, and does the recommended rate train?

Over 32 small models of varied families (MLPs of several inits, depths and activations, residual
stacks, CNNs with and without BatchNorm, RNN/LSTM/GRU, Pre-/Post-LN transformers), each planned
run (optimizer, rate) is trained for real: STEPS steps on a learnable synthetic task (a fixed
random linear teacher labels or regresses each fresh seeded batch; classifiers use cross-entropy
on logits, regressors squared error). A run *diverges* when its loss goes non-finite or above 10x
its first value at any step (the issue's definition); it *trains* when it does not diverge and
its loss on 256 held-out samples is lower after training than before.

Each run is predicted twice, with gradaudit's own functions and the loss the user would pass
(`--loss cross-entropy` for classifiers, `mse` for regressors):
- the trial-run check (GA602 is an error exactly when the planned trial run diverges):
  `gradaudit.probe.trial.trial_run` at the planned rate, `trial-steps` 50, on gradaudit's own
  seeded batches and teacher. That teacher is independent of this benchmark's task: another
  family (the model's own architecture with its parameters shuffled, not a linear map of the
  input), other seeds (gradaudit's seed + fixed offsets for the batches and the shuffle, this
  task's seed + 1 for its teacher and batches), and no access to this task's labels;
- the sharpness bound alone: lr above 2/lambda (2(1+beta)/lambda with momentum), lambda measured
  by the probe under the same loss.
It prints recall and precision of "this run diverges" for both, then, per model, whether the
recommended rate (the search of `PlannedTrials.search`, started at the middle rate) trains for
real, and the trial run's cost as a ratio to one probe pass (median over the runs).

Run: python benchmarks/lr_check.py [--optimizer momentum] [--steps 200]  (a few minutes, 2 cores)
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradaudit.loaders.torch_loader import from_module  # noqa: E402
from gradaudit.probe import run_probe  # noqa: E402
from gradaudit.probe.trial import DIVERGENCE_FACTOR, make_optimizer, plan_trials, trial_run  # noqa: E402
from gradaudit.rules.planned_run import stability_limit  # noqa: E402

BATCH = 16
WIDTH = 16
CLASSES = 10
REGRESS = 4
TRIAL_STEPS = 50
RATES = {"sgd": (0.01, 0.1, 1.0), "momentum": (0.01, 0.1, 1.0), "adam": (1e-3, 1e-2, 1e-1), "adamw": (1e-3, 1e-2, 1e-1)}
EVAL_BATCH = 256  # held-out samples a real run's "loss down" is measured on


@dataclass
class Case:
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    classifier: bool


def _init(module: nn.Module, how: str) -> None:
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d)):
            if how == "kaiming":
                nn.init.kaiming_normal_(sub.weight, nonlinearity="relu")
            elif how == "xavier":
                nn.init.xavier_normal_(sub.weight)
            elif how == "normal1":
                nn.init.normal_(sub.weight, std=1.0)
            elif how == "small":
                nn.init.normal_(sub.weight, std=0.01)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)


def mlp(depth: int, act: type[nn.Module], how: str, out: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(WIDTH, WIDTH), act()]
        model = nn.Sequential(*layers, nn.Linear(WIDTH, out))
        _init(model, how)
        return model
    return build


class Residual(nn.Module):
    def __init__(self, blocks: int, scale: float, norm: bool):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                *([nn.LayerNorm(WIDTH)] if norm else []), nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH)
            )
            for _ in range(blocks)
        )
        self.scale = scale
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for branch in self.branches:
            x = x + self.scale * branch(x)
        return self.head(x)


def cnn(depth: int, bn: bool, how: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        layers: list[nn.Module] = []
        channels = 3
        for _ in range(depth):
            layers += [nn.Conv2d(channels, 8, 3, padding=1)] + ([nn.BatchNorm2d(8)] if bn else []) + [nn.ReLU()]
            channels = 8
        model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, CLASSES))
        _init(model, how)
        return model
    return build


class Recurrent(nn.Module):
    def __init__(self, cell: str, layers: int, out: int):
        super().__init__()
        self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](8, WIDTH, num_layers=layers, batch_first=True)
        self.head = nn.Linear(WIDTH, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class Transformer(nn.Module):
    def __init__(self, layers: int, pre_ln: bool):
        super().__init__()
        layer = nn.TransformerEncoderLayer(WIDTH, 2, 2 * WIDTH, dropout=0.0, batch_first=True, norm_first=pre_ln)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


def cases() -> list[Case]:
    vec, img, seq = (BATCH, WIDTH), (BATCH, 3, 8, 8), (BATCH, 8, 8)
    found = []
    for depth in (2, 6, 12):
        for act, how in ((nn.ReLU, "kaiming"), (nn.Tanh, "xavier"), (nn.GELU, "kaiming")):
            found.append(Case(f"mlp{depth}-{act.__name__.lower()}-{how}", mlp(depth, act, how, CLASSES), vec, True))
    found += [
        Case("mlp4-relu-normal1", mlp(4, nn.ReLU, "normal1", CLASSES), vec, True),
        Case("mlp8-tanh-small", mlp(8, nn.Tanh, "small", CLASSES), vec, True),
        Case("mlp3-relu-kaiming-reg", mlp(3, nn.ReLU, "kaiming", REGRESS), vec, False),
        Case("mlp6-tanh-xavier-reg", mlp(6, nn.Tanh, "xavier", REGRESS), vec, False),
        Case("mlp4-silu-normal1-reg", mlp(4, nn.SiLU, "normal1", REGRESS), vec, False),
        Case("res4", lambda: Residual(4, 1.0, False), vec, True),
        Case("res16", lambda: Residual(16, 1.0, False), vec, True),
        Case("res16-scaled", lambda: Residual(16, 0.25, False), vec, True),
        Case("res8-preln", lambda: Residual(8, 1.0, True), vec, True),
        Case("cnn2", cnn(2, False, "kaiming"), img, True),
        Case("cnn4", cnn(4, False, "kaiming"), img, True),
        Case("cnn4-bn", cnn(4, True, "kaiming"), img, True),
        Case("cnn4-bn-normal1", cnn(4, True, "normal1"), img, True),
        Case("rnn1", lambda: Recurrent("rnn", 1, CLASSES), seq, True),
        Case("rnn2-reg", lambda: Recurrent("rnn", 2, REGRESS), seq, False),
        Case("lstm1", lambda: Recurrent("lstm", 1, CLASSES), seq, True),
        Case("lstm2-reg", lambda: Recurrent("lstm", 2, REGRESS), seq, False),
        Case("gru1", lambda: Recurrent("gru", 1, CLASSES), seq, True),
        Case("transformer2-preln", lambda: Transformer(2, True), (BATCH, 8, WIDTH), True),
        Case("transformer4-preln", lambda: Transformer(4, True), (BATCH, 8, WIDTH), True),
        Case("transformer2-postln", lambda: Transformer(2, False), (BATCH, 8, WIDTH), True),
        Case("transformer4-postln", lambda: Transformer(4, False), (BATCH, 8, WIDTH), True),
    ]
    return found


def _task_loss(model: nn.Module, case: Case, x: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    target = x.flatten(1) @ teacher
    out = model(x)
    if case.classifier:
        return nn.functional.cross_entropy(out, target.argmax(dim=1))
    return 0.5 * ((out - target / target.std()) ** 2).sum(dim=1).mean()


def train_for_real(
    model: nn.Module, case: Case, optimizer: str, lr: float, steps: int, seed: int, warmup: int = 0
) -> tuple[bool, bool]:
    """(diverged, trained) of a real run on the teacher task, trained in place (linear warm-up over
    `warmup` steps, as the trial run does). Trained: the loss on EVAL_BATCH held-out samples went
    down (a held-out batch, so the verdict does not hang on the noise of 16-sample batches)."""
    gen = torch.Generator().manual_seed(seed)
    features = math.prod(case.input_shape[1:])
    teacher = torch.randn(features, CLASSES if case.classifier else REGRESS, generator=gen) / math.sqrt(features)
    held_out = torch.randn((EVAL_BATCH, *case.input_shape[1:]), generator=gen)
    optim = make_optimizer([p for p in model.parameters() if p.requires_grad], lr, optimizer)
    model.train()
    with torch.no_grad():
        before = float(_task_loss(model, case, held_out, teacher))
    losses: list[float] = []
    for step in range(steps):
        loss = _task_loss(model, case, torch.randn(case.input_shape, generator=gen), teacher)
        value = float(loss.detach())
        losses.append(value)
        if not math.isfinite(value) or value > DIVERGENCE_FACTOR * losses[0]:
            return True, False
        optim.zero_grad(set_to_none=True)
        loss.backward()
        for group in optim.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
        optim.step()
    with torch.no_grad():
        after = float(_task_loss(model, case, held_out, teacher))
    return False, math.isfinite(after) and after < before


def _rates(pairs: list[tuple[bool, bool]]) -> str:
    """Recall and precision of the prediction (predicted, actual) for "diverges"."""
    hits = sum(p and a for p, a in pairs)
    predicted = sum(p for p, _ in pairs)
    actual = sum(a for _, a in pairs)
    recall = hits / actual if actual else float("nan")
    precision = hits / predicted if predicted else float("nan")
    return f"recall {recall:.2f} ({hits}/{actual}), precision {precision:.2f} ({hits}/{predicted})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=sorted(RATES), default="momentum")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rates = RATES[args.optimizer]
    trial_pairs, bound_pairs, cost_ratios = [], [], []
    recommended_trains, not_the_fix, no_rate = [], [], []
    print(f"{'model':<28}{'loss':<14}" + "".join(f"{'lr ' + format(r, 'g'):>22}" for r in rates) + "   recommended")
    for case in cases():
        torch.manual_seed(args.seed)
        model = case.build()
        x = torch.randn(case.input_shape, generator=torch.Generator().manual_seed(args.seed))
        handle = from_module(model, (x,), case.name)
        loss = "cross-entropy" if case.classifier else "mse"
        timed = run_probe(handle, passes=3, seed=args.seed, loss=loss)
        probe = run_probe(handle, passes=1, seed=args.seed, loss=loss, sharpness=True)
        pass_seconds = timed.seconds / timed.passes
        cells = []
        for lr in rates:
            trial = trial_run(handle, lr, args.optimizer, steps=TRIAL_STEPS, seed=args.seed, loss=loss)
            limit = stability_limit(probe.sharpness, args.optimizer) if probe.sharpness is not None else None
            diverged, _ = train_for_real(copy.deepcopy(model), case, args.optimizer, lr, args.steps, args.seed + 1)
            trial_pairs.append((trial.diverged_at is not None, diverged))
            bound_pairs.append((limit is not None and lr > limit, diverged))
            cost_ratios.append(trial.seconds / pass_seconds if pass_seconds > 0 else float("nan"))
            mark = lambda b: "div" if b else "ok"  # noqa: E731
            cells.append(
                f"{mark(diverged)}/{mark(trial.diverged_at is not None)}/{mark(limit is not None and lr > limit)}"
            )
        search = plan_trials(handle, rates[1], args.optimizer, steps=TRIAL_STEPS, seed=args.seed, data=None, loss=loss,
                             deadline=None).search()
        if probe.diagnosis.label != "healthy":
            not_the_fix.append(case.name)
            verdict = f"not the fix ({probe.diagnosis.label})"
        elif search.recommended is None:
            no_rate.append(case.name)
            verdict = "no rate trained in the search"
        else:
            diverged, trained = train_for_real(
                copy.deepcopy(model),
                case,
                args.optimizer,
                search.recommended,
                args.steps,
                args.seed + 1,
                search.best.warmup,
            )
            recommended_trains.append(trained)
            verdict = (
                f"{search.recommended:.3g}"
                + (f" (warm-up {search.best.warmup})" if search.best.warmup else "")
                + (" trains" if trained else " diverges" if diverged else " loss not down")
            )
        print(f"{case.name:<28}{loss:<14}" + "".join(f"{c:>22}" for c in cells) + f"   {verdict}", flush=True)
    print(f"\ncells: real run / trial-run check / sharpness bound ({args.optimizer}, {args.steps} real steps, "
          f"{TRIAL_STEPS} trial steps); {len(cases())} models, {len(trial_pairs)} runs, "
          f"{sum(a for _, a in trial_pairs)} diverge for real")
    print(f"trial-run check (GA602 error): {_rates(trial_pairs)}")
    print(f"sharpness bound alone:        {_rates(bound_pairs)}")
    share = sum(recommended_trains) / len(recommended_trains) if recommended_trains else float("nan")
    print(
        f"recommended rate trains on {sum(recommended_trains)}/{len(recommended_trains)} healthy models "
        f"({share:.0%}); "
        f"'not the fix until the init is' on {len(not_the_fix)} {not_the_fix}; "
        f"no rate found on {len(no_rate)} {no_rate}"
    )
    print(f"trial run ({TRIAL_STEPS} steps) cost / one probe pass: median {statistics.median(cost_ratios):.1f}x, "
          f"max {max(cost_ratios):.1f}x (a run that diverges stops early)")


if __name__ == "__main__":
    main()
