"""Does it train? Short real training runs that label corpus models and broken variants.

Usage (from the repository root, with the `zoo` extra installed):
    python benchmarks/train_labels.py                 # every model in TRAINED, writes train_labels.json
    python benchmarks/train_labels.py --only broken_bn_deep50 --no-save

Each model of benchmarks/real_models.py listed in TRAINED is built at its seeded default init and
trained twice, STEPS steps each: SGD (lr 0.01, momentum 0.9) and Adam (lr 1e-3), mini-batches of
BATCH from EXAMPLES seeded inputs, squared error of `readout(output)` (TARGETS numbers per
example) against seeded N(0, 1) targets: a memorisation task any trainable model of this size
makes progress on within a few hundred steps. The loss is measured on all EXAMPLES in train mode before and after. A run
  diverges  when a loss goes non-finite or the final loss exceeds 10x the initial one;
  stalls    when the final loss is not below 0.9x the reference: the smaller of the initial loss
            and the loss of predicting zeros (~1), so a mis-scaled model that only learns to shrink
            its output to zero has not trained;
  trains    otherwise.
A model fails to train when no optimiser trains it (real_models.fails_to_train).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_models import CORPUS, LABELS, build  # noqa: E402

STEPS = 300
BATCH = 16
EXAMPLES = 128
DATA_SEED = 2
TARGETS = 10
DIVERGE_FACTOR = 10.0
STALL_FRACTION = 0.9
OPTIMISERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
}
TRAINED = (
    "nn_lstm", "nn_gru", "nn_transformer_postln", "nn_transformer_preln", "nn_resnet", "nn_mlp_kaiming",
    "hf_rwkv", "hf_gpt2", "hf_llama", "hf_t5", "timm_convnext_atto", "tv_resnet18", "tv_mobilenet_v2",
    "df_unet2d",
    *(name for name, entry in CORPUS.items() if entry.broken),
)


def readout(output: torch.Tensor) -> torch.Tensor:
    """TARGETS numbers per example: the output averaged over positions (time steps, tokens, pixels),
    its first TARGETS channels. Random targets for every position and vocabulary entry would ask a
    small model to memorise more numbers than it has parameters."""
    return output.reshape(output.shape[0], -1, output.shape[-1]).mean(1)[:, :TARGETS]


def loss_on(model: nn.Module, inputs: tuple[torch.Tensor, ...], targets: torch.Tensor) -> torch.Tensor:
    return (readout(model(*inputs)) - targets).square().mean()


def train(name: str, optimiser: str) -> dict:
    """One seeded run; the loss before, after and of predicting zeros, and the outcome."""
    model, _ = build(name)
    model.train()
    gen = torch.Generator().manual_seed(DATA_SEED)
    inputs = CORPUS[name].inputs(EXAMPLES, gen)
    targets = torch.randn(EXAMPLES, TARGETS, generator=gen)
    optim = OPTIMISERS[optimiser](model.parameters())
    with torch.no_grad():
        initial = loss_on(model, inputs, targets).item()
    finite = math.isfinite(initial)
    for _ in range(STEPS if finite else 0):
        pick = torch.randint(0, EXAMPLES, (BATCH,), generator=gen)
        optim.zero_grad()
        loss = loss_on(model, tuple(x[pick] for x in inputs), targets[pick])
        if not math.isfinite(loss.item()):
            finite = False
            break
        loss.backward()
        optim.step()
    with torch.no_grad():
        final = loss_on(model, inputs, targets).item() if finite else math.nan
    zeros = targets.square().mean().item()
    return {"initial": initial, "final": final, "zeros": zeros, "outcome": outcome(initial, final, zeros)}


def outcome(initial: float, final: float, zeros: float) -> str:
    if not (math.isfinite(initial) and math.isfinite(final)) or final > DIVERGE_FACTOR * initial:
        return "diverges"
    return "stalls" if final >= STALL_FRACTION * min(initial, zeros) else "trains"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated corpus names (default: TRAINED)")
    parser.add_argument("--no-save", action="store_true", help=f"do not update {LABELS.name}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.only.split(",") if args.only else list(TRAINED)
    stored = json.loads(LABELS.read_text()) if LABELS.is_file() and not args.no_save else {}
    print(f"{'model':<26}{'optimiser':<6}{'initial':>10}{'final':>10}{'zeros':>7}  outcome")
    for name in names:
        runs = {opt: train(name, opt) for opt in OPTIMISERS}
        for opt, run in runs.items():
            print(f"{name:<26}{opt:<6}{run['initial']:>10.3g}{run['final']:>10.3g}{run['zeros']:>7.2f}  "
                  f"{run['outcome']}",
                  flush=True)
        stored[name] = {"outcomes": {opt: run["outcome"] for opt, run in runs.items()}, "runs": runs}
        if not args.no_save:
            LABELS.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
