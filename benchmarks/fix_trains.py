"""Do `gradaudit fix`'s models train where the originals diverge or stall? Short runs, several seeds.

For every unhealthy sample (samples/exploding_*.onnx, samples/vanishing_*.onnx) the fixer writes
a fixed copy (`gradaudit fix --structural`: an architecture change competes with the weight-level
ones, and the best verified combination is written); both are executed with gradaudit's ONNX
executor (initializers as parameters) and trained with the same SGD+momentum settings on a
synthetic learnable task: a random linear
teacher maps the last TEACHER_INPUTS coordinates of the flattened input (a sequence's last
step) to the output size (targets of unit variance), a fresh batch
every step (so memorising one batch does not count), MSE loss; the score is the loss on a
held-out batch.
A model "trains" when its loss after STEPS steps is below TRAINED_LOSS of the targets' variance;
it "diverged" when the loss went non-finite or above DIVERGED_LOSS. Prints one row per sample and
seed: the relative loss at the end for the original and the fixed model.

Run: python benchmarks/fix_trains.py [sample ...]   (a few minutes on two CPU cores; names: a subset)
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gradaudit.fixer import fix_onnx  # noqa: E402
from gradaudit.loaders.onnx_loader import load_onnx, synthetic_inputs  # noqa: E402
from gradaudit.pipeline import AuditOptions  # noqa: E402
from gradaudit.probe.run import training_copy  # noqa: E402

SEEDS = (0, 1, 2)
STEPS = 600
LR, MOMENTUM = 3e-2, 0.9
HELD_OUT_BATCHES = 8  # the score: loss on these over the loss of predicting 0
TEACHER_INPUTS = 8  # the teacher reads this many input coordinates: learnable in STEPS steps
TRAINED_LOSS = 0.8  # held-out loss over that of predicting 0: at least a fifth of the target learned
DIVERGED_LOSS = 1e3


class Task:
    """A random linear teacher over the flattened input; unit-variance targets, fresh batches."""

    def __init__(self, input_shape: tuple[int, ...], out_features: int, seed: int):
        self.generator = torch.Generator().manual_seed(seed)
        self.shape = input_shape
        features = math.prod(input_shape[1:])
        self.teacher = torch.zeros(features, out_features)
        read = min(features, TEACHER_INPUTS)  # the last coordinates: a sequence's last step
        self.teacher[-read:] = torch.randn(read, out_features, generator=self.generator) / math.sqrt(read)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(self.shape, generator=self.generator)
        return x, x.reshape(len(x), -1) @ self.teacher


def _loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(x).reshape(len(x), -1), y)


def train(path: str, seed: int) -> float:
    """Held-out MSE relative to predicting 0, after STEPS steps of SGD with momentum (inf: diverged)."""
    handle = load_onnx(path)
    model = training_copy(handle.module)
    example = synthetic_inputs(handle.inputs)
    with torch.no_grad():
        out_features = model(*example).reshape(len(example[0]), -1).shape[1]
    task = Task(tuple(example[0].shape), out_features, seed)
    held_out = [task.batch() for _ in range(HELD_OUT_BATCHES)]
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    for _ in range(STEPS):
        loss = _loss(model, *task.batch())
        if not math.isfinite(loss.item()) or loss.item() > DIVERGED_LOSS:
            return math.inf
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = sum(_loss(model, x, y).item() for x, y in held_out) / sum(float(y.square().mean()) for _, y in held_out)
    return final if math.isfinite(final) and final <= DIVERGED_LOSS else math.inf


def _verdict(loss: float) -> str:
    if not math.isfinite(loss):
        return "diverged"
    return "trains" if loss < TRAINED_LOSS else "stalls"


def main() -> int:
    torch.set_num_threads(1)
    samples = sorted(ROOT.glob("samples/exploding_*.onnx")) + sorted(ROOT.glob("samples/vanishing_*.onnx"))
    samples = [s for s in samples if s.stem in sys.argv[1:]] if sys.argv[1:] else samples  # names to run: a subset
    started = time.perf_counter()
    verdicts = []
    print(f"{'sample':<30} seed  {'original':>18}  {'fixed':>18}  applied (fixed diagnosis)")
    with tempfile.TemporaryDirectory() as folder:
        for sample in samples:
            fixed = str(Path(folder) / f"{sample.stem}.fixed.onnx")
            result = fix_onnx(str(sample), fixed, AuditOptions(), structural=True)
            changes = "+".join(rec.change for rec in result.applied) or "none"
            for seed in SEEDS:
                before, after = train(str(sample), seed), train(fixed, seed)
                verdicts.append((_verdict(before), _verdict(after)))
                print(f"{sample.stem:<30} {seed:>4}  {before:>8.3g} {_verdict(before):>9}  {after:>8.3g} "
                      f"{_verdict(after):>9}  {changes} ({result.after.diagnosis.label})", flush=True)
    fixed_train = sum(after == "trains" for _, after in verdicts)
    originals_fail = sum(before != "trains" for before, _ in verdicts)
    print(f"{time.perf_counter() - started:.0f} s; fixed models train in {fixed_train}/{len(verdicts)} runs; "
          f"originals diverge or stall in {originals_fail}/{len(verdicts)}")
    return 0 if fixed_train == len(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
