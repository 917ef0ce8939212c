"""Accuracy of the static estimate against real backward passes over a corpus of varied models.

Usage: python benchmarks/static_vs_probe.py [--seeds 3]
For every model of the corpus (MLPs, CNNs, residual stacks, RNN/LSTM/GRU, Pre-LN and Post-LN
transformers; default, Kaiming, Xavier, N(0, 1), orthogonal and LeCun inits; several
activations, depths and widths), the static `log10_ratio_first_last` (gradaudit.static.estimate
on the torch loader's LayerGraph) is compared with the probe's (gradaudit.probe.run_probe), each
averaged in log space (a geometric mean of ratios) over seeds, and both diagnoses are shown.
The summary line gives the mean absolute error, the fraction within one decade and the
diagnosis agreement. The corpus measures the estimator; nothing is tuned to it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradaudit.loaders.torch_loader import from_module  # noqa: E402
from gradaudit.probe import run_probe  # noqa: E402
from gradaudit.static import estimate  # noqa: E402

BATCH = 16
Init = Callable[[torch.Tensor], object]


def kaiming(w: torch.Tensor) -> None:
    nn.init.kaiming_normal_(w, nonlinearity="relu")


def xavier(w: torch.Tensor) -> None:
    nn.init.xavier_normal_(w)


def lecun(w: torch.Tensor) -> None:
    nn.init.normal_(w, 0.0, w[0].numel() ** -0.5)


def standard_normal(w: torch.Tensor) -> None:
    nn.init.normal_(w, 0.0, 1.0)


def orthogonal(gain: float) -> Init:
    return lambda w: nn.init.orthogonal_(w, gain=gain)


def pytorch_default(w: torch.Tensor) -> None:
    """Leave the module's own initialisation in place."""


def _initialised(module: nn.Module, init: Init) -> nn.Module:
    """Apply `init` to every weight matrix / kernel of `module`; zero the biases it re-inits."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d)) and init is not pytorch_default:
            init(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
    return module


def mlp(depth: int, width: int, act: Callable[[], nn.Module], init: Init, classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(32 if i == 0 else width, width), act()]
    layers.append(nn.Linear(width, classes))
    return _initialised(nn.Sequential(*layers), init)


def cnn(depth: int, channels: int, act: Callable[[], nn.Module], init: Init, norm: bool = False, pool_every: int = 0,
        stride_first: bool = False) -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(depth):
        stride = 2 if stride_first and i == 0 else 1
        layers.append(nn.Conv2d(3 if i == 0 else channels, channels, 3, stride=stride, padding=1, bias=not norm))
        if norm:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(act())
        if pool_every and (i + 1) % pool_every == 0:
            layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)]
    return _initialised(nn.Sequential(*layers), init)


class WrittenRMSNorm(nn.Module):
    """RMSNorm as Llama's code writes it: x * rsqrt(mean(x^2) + eps) * weight."""

    def __init__(self, width: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(width)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class ResidualMLP(nn.Module):
    """x + alpha * branch(x) blocks on a linear stem, optional LayerNorm/BatchNorm/written-out
    RMSNorm in the branch."""

    def __init__(self, blocks: int, width: int, alpha: float, norm: str = "", init: Init = kaiming):
        super().__init__()
        self.stem = nn.Linear(32, width)
        norms = {"layer": nn.LayerNorm, "batch": nn.BatchNorm1d, "written_rms": WrittenRMSNorm}
        self.branches = nn.ModuleList(
            nn.Sequential(*([norms[norm](width)] if norm else []), nn.ReLU(), nn.Linear(width, width))
            for _ in range(blocks)
        )
        self.head = nn.Linear(width, 10)
        self.alpha = alpha
        _initialised(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for branch in self.branches:
            x = x + self.alpha * branch(x)
        return self.head(x)


class ResidualCNN(nn.Module):
    """ResNet-style basic blocks: conv-BN-ReLU-conv-BN + identity, then ReLU."""

    def __init__(self, blocks: int, channels: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
                nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
            )
            for _ in range(blocks)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = torch.relu(x + block(x))
        return self.head(x)


class Recurrent(nn.Module):
    """A recurrent layer over (B, T, 16) inputs, read out at every step by a linear head."""

    def __init__(self, kind: str, hidden: int, layers: int = 1, rec_init: Init | None = None,
                 forget_bias: float | None = None):
        super().__init__()
        cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = cls(16, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 4)
        with torch.no_grad():
            if rec_init is not None:
                rec_init(self.rnn.weight_hh_l0)
            if forget_bias is not None:
                for name, bias in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        bias[hidden : 2 * hidden] = forget_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


class Encoder(nn.Module):
    """Token embedding + positional table + nn.TransformerEncoderLayer stack + vocabulary head."""

    def __init__(self, depth: int, d_model: int, norm_first: bool, activation: str = "relu", vocab: int = 50,
                 init: Init = pytorch_default):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, 4, 2 * d_model, dropout=0.0, activation=activation, batch_first=True,
                                       norm_first=norm_first)
            for _ in range(depth)
        )
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, vocab)
        _initialised(self, init)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.final_norm(x))


class TiedMLP(nn.Module):
    """One Linear layer applied `repeats` times (weights shared across several nodes), optionally
    straight on the input so the shared weight is the first weight layer."""

    def __init__(self, repeats: int, width: int, act: Callable[[], nn.Module], init: Init, stem: bool = True):
        super().__init__()
        self.stem = nn.Linear(32, width) if stem else nn.Identity()
        self.shared, self.act = nn.Linear(width, width), act()
        self.head = nn.Linear(width, 10)
        self.repeats = repeats
        _initialised(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem(x))
        for _ in range(self.repeats):
            x = self.act(self.shared(x))
        return self.head(x)


class PatchEncoder(nn.Module):
    """A ViT-like encoder on float (B, T, 32) patch vectors, its head on the mean of the positions
    or (`class_token`) on position 0 alone."""

    def __init__(self, depth: int, d_model: int, norm_first: bool, class_token: bool = False):
        super().__init__()
        self.class_token = class_token
        self.patch = nn.Linear(32, d_model)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, 4, 4 * d_model, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=norm_first)
            for _ in range(depth)
        )
        self.head = nn.Linear(d_model, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x[:, 0] if self.class_token else x.mean(dim=1))


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    vocab: int = 0  # integer token inputs in [0, vocab) when > 0


def _vector(name: str, build: Callable[[], nn.Module]) -> Case:
    return Case(name, build, (BATCH, 32))


def _image(name: str, build: Callable[[], nn.Module]) -> Case:
    return Case(name, build, (BATCH, 3, 16, 16))


def _sequence(name: str, build: Callable[[], nn.Module], steps: int = 24) -> Case:
    return Case(name, build, (BATCH, steps, 16))


def _tokens(name: str, build: Callable[[], nn.Module]) -> Case:
    return Case(name, build, (8, 16), vocab=50)


CORPUS: list[Case] = [
    _vector("mlp8-relu-default", lambda: mlp(8, 64, nn.ReLU, pytorch_default)),
    _vector("mlp24-relu-default", lambda: mlp(24, 64, nn.ReLU, pytorch_default)),
    _vector("mlp20-relu-kaiming", lambda: mlp(20, 128, nn.ReLU, kaiming)),
    _vector("mlp30-relu-xavier", lambda: mlp(30, 128, nn.ReLU, xavier)),
    _vector("mlp20-relu-kaiming-narrow", lambda: mlp(20, 16, nn.ReLU, kaiming)),
    _vector("mlp20-relu-orthogonal", lambda: mlp(20, 128, nn.ReLU, orthogonal(math.sqrt(2.0)))),
    _vector("mlp12-leaky-kaiming", lambda: mlp(12, 64, lambda: nn.LeakyReLU(0.1), kaiming)),
    _vector("mlp10-tanh-xavier", lambda: mlp(10, 128, nn.Tanh, xavier)),
    _vector("mlp20-tanh-orthogonal", lambda: mlp(20, 128, nn.Tanh, orthogonal(1.0))),
    _vector("mlp6-tanh-normal", lambda: mlp(6, 64, nn.Tanh, standard_normal)),
    _vector("mlp10-sigmoid-default", lambda: mlp(10, 64, nn.Sigmoid, pytorch_default)),
    _vector("mlp6-sigmoid-xavier", lambda: mlp(6, 128, nn.Sigmoid, xavier)),
    _vector("mlp16-gelu-kaiming", lambda: mlp(16, 128, nn.GELU, kaiming)),
    _vector("mlp16-silu-kaiming", lambda: mlp(16, 128, nn.SiLU, kaiming)),
    _vector("mlp16-selu-lecun", lambda: mlp(16, 128, nn.SELU, lecun)),
    _vector("mlp8-elu-default", lambda: mlp(8, 64, nn.ELU, pytorch_default)),
    _vector("mlp4-relu-normal", lambda: mlp(4, 64, nn.ReLU, standard_normal)),
    _vector("mlp20-relu-kaiming-regression", lambda: mlp(20, 128, nn.ReLU, kaiming, classes=128)),
    _vector("mlp12-gelu-default-regression", lambda: mlp(12, 128, nn.GELU, pytorch_default, classes=128)),
    _vector("tied6-relu-kaiming", lambda: TiedMLP(6, 64, nn.ReLU, kaiming)),
    _vector("tied8-tanh-orthogonal", lambda: TiedMLP(8, 64, nn.Tanh, orthogonal(1.0))),
    _vector("tied6-relu-kaiming-first", lambda: TiedMLP(6, 32, nn.ReLU, kaiming, stem=False)),
    _image("cnn6-relu-default", lambda: cnn(6, 16, nn.ReLU, pytorch_default)),
    _image("cnn8-relu-kaiming-bn", lambda: cnn(8, 16, nn.ReLU, kaiming, norm=True)),
    _image("cnn6-tanh-xavier-maxpool", lambda: cnn(6, 16, nn.Tanh, xavier, pool_every=2)),
    _image("cnn6-relu-kaiming-strided", lambda: cnn(6, 16, nn.ReLU, kaiming, stride_first=True)),
    _image("cnn12-relu-default-bn", lambda: cnn(12, 16, nn.ReLU, pytorch_default, norm=True)),
    _image("cnn8-silu-lecun", lambda: cnn(8, 32, nn.SiLU, lecun)),
    _vector("res10-relu-kaiming", lambda: ResidualMLP(10, 128, 1.0)),
    _vector("res20-relu-scaled", lambda: ResidualMLP(20, 128, 20**-0.5)),
    _vector("res16-preln", lambda: ResidualMLP(16, 128, 1.0, norm="layer", init=pytorch_default)),
    _vector("res16-bn-branch", lambda: ResidualMLP(16, 128, 1.0, norm="batch")),
    _image("resnet-cnn4-bn", lambda: ResidualCNN(4, 16)),
    _sequence("rnn-tanh-default", lambda: Recurrent("rnn", 64)),
    _sequence("rnn-tanh-orthogonal0.5", lambda: Recurrent("rnn", 64, rec_init=orthogonal(0.5))),
    _sequence("rnn-tanh-orthogonal1.5", lambda: Recurrent("rnn", 64, rec_init=orthogonal(1.5))),
    _sequence("lstm-default", lambda: Recurrent("lstm", 64)),
    _sequence("lstm-forget-bias2", lambda: Recurrent("lstm", 64, forget_bias=2.0)),
    _sequence("lstm-2layer", lambda: Recurrent("lstm", 64, layers=2)),
    _sequence("gru-default", lambda: Recurrent("gru", 64)),
    _tokens("transformer2-preln", lambda: Encoder(2, 64, norm_first=True)),
    _tokens("transformer2-postln", lambda: Encoder(2, 64, norm_first=False)),
    _tokens("transformer6-postln-gelu", lambda: Encoder(6, 64, norm_first=False, activation="gelu")),
    _tokens("transformer6-preln-gelu", lambda: Encoder(6, 64, norm_first=True, activation="gelu")),
    _tokens("transformer12-postln-xavier", lambda: Encoder(12, 64, norm_first=False, init=xavier)),
    _tokens("transformer12-preln-xavier", lambda: Encoder(12, 64, norm_first=True, init=xavier)),
    Case("vit4-preln-seq64", lambda: PatchEncoder(4, 64, norm_first=True), (8, 64, 32)),
    Case("vit4-postln-seq64", lambda: PatchEncoder(4, 64, norm_first=False), (8, 64, 32)),
    Case("vit4-preln-class-token", lambda: PatchEncoder(4, 64, norm_first=True, class_token=True), (8, 64, 32)),
    _vector("res16-written-rmsnorm", lambda: ResidualMLP(16, 128, 1.0, norm="written_rms", init=pytorch_default)),
]

# ~8 models spanning the families, one seed: the fast version a test asserts the targets on
QUICK = [
    "mlp8-relu-default", "mlp30-relu-xavier", "mlp10-tanh-xavier", "cnn6-relu-default",
    "res10-relu-kaiming", "lstm-default", "gru-default", "transformer2-postln",
]


@dataclass
class Row:
    name: str
    static: float
    measured: float
    static_diagnosis: str
    measured_diagnosis: str

    @property
    def error(self) -> float:
        return abs(self.static - self.measured)


def _example(case: Case) -> torch.Tensor:
    if case.vocab:
        return torch.randint(0, case.vocab, case.input_shape)
    return torch.randn(case.input_shape)


def _mode(labels: list[str]) -> str:
    return Counter(labels).most_common(1)[0][0]


def compare(case: Case, seeds: int) -> Row:
    """Static and measured log10 first/last ratios, each averaged in log space over `seeds` models."""
    static, measured, static_labels, measured_labels = [], [], [], []
    for seed in range(seeds):
        torch.manual_seed(seed)
        handle = from_module(case.build(), (_example(case),), case.name)
        predicted = estimate(handle.graph, handle.inputs)
        probe = run_probe(handle, passes=1, seed=seed)
        static.append(predicted.log10_ratio_first_last)
        measured.append(probe.log10_ratio_first_last)
        static_labels.append(predicted.diagnosis.label)
        measured_labels.append(probe.diagnosis.label)
    return Row(case.name, _log_mean(static), _log_mean(measured), _mode(static_labels), _mode(measured_labels))


def _log_mean(values: list[float | None]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


@dataclass(frozen=True)
class Summary:
    mae: float
    within_decade: float
    agreement: float

    def line(self) -> str:
        return (f"MAE {self.mae:.3f} decades (target <= 0.5); within 1 decade {self.within_decade:.0%} "
                f"(target >= 95%); diagnosis agreement {self.agreement:.0%} (target >= 95%)")


def summarise(rows: list[Row]) -> Summary:
    errors = [r.error if math.isfinite(r.error) else math.inf for r in rows]
    finite = [e for e in errors if math.isfinite(e)]
    return Summary(
        sum(finite) / len(finite) if finite else math.inf,
        sum(e <= 1.0 for e in errors) / len(rows),
        sum(r.static_diagnosis == r.measured_diagnosis for r in rows) / len(rows),
    )


def run(cases: list[Case], seeds: int, echo: Callable[[str], None] | None = None) -> list[Row]:
    rows = []
    for case in cases:
        rows.append(compare(case, seeds))
        if echo:
            r = rows[-1]
            flag = "" if r.error <= 1.0 and r.static_diagnosis == r.measured_diagnosis else "  <--"
            echo(f"{r.name:<28}{r.static:>9.2f}{r.measured:>10.2f}{r.error:>7.2f}  "
                 f"{r.static_diagnosis:<10}{r.measured_diagnosis:<10}{flag}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="only the quick subset the test uses")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [c for c in CORPUS if c.name in QUICK] if args.quick else CORPUS
    started = time.perf_counter()
    print(f"{'model':<28}{'static':>9}{'measured':>10}{'|err|':>7}  {'static dx':<10}{'probe dx':<10}")
    rows = run(cases, args.seeds, print)
    print(f"{len(rows)} models x {args.seeds} seeds in {time.perf_counter() - started:.0f} s: {summarise(rows).line()}")


if __name__ == "__main__":
    main()
