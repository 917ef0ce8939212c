"""Torch code a user can paste: each snippet applies one remedy to a module named `model`.

Snippets address parameters by their qualified names (`model.named_parameters()`) and modules by
their paths (`model.get_submodule`), so they work for any nn.Module, including the module the
ONNX executor builds (whose parameters are the ONNX initializers). Numbers are written as exact
Python float literals (the action shows them rounded); numpy scalars would print as np.float64(..).
"""

from __future__ import annotations

from typing import Iterable

from gradaudit.remedies.amounts import Target

PARAMS = "params = dict(model.named_parameters())\n"
# Linear warm-up length: Xiong et al. 2020 train Post-LN with 500-4000 warm-up steps; the
# shorter end suffices at moderate learning rates, so the snippet starts there (doubled).
WARMUP_STEPS = 1000


def _literal(targets: Iterable[Target]) -> str:
    return "{" + ", ".join(f"{t.param!r}: {float(t.value)!r}" for t in targets) + "}"


def rescale(targets: list[Target]) -> str:
    return (
        "import torch\n" + PARAMS
        + f"for name, factor in {_literal(targets)}.items():\n"
        + "    with torch.no_grad():\n        params[name].mul_(factor)\n"
    )


def reinit(targets: list[Target]) -> str:
    return (
        "import torch\n" + PARAMS
        + f"for name, std in {_literal(targets)}.items():\n"
        + "    torch.nn.init.normal_(params[name], mean=0.0, std=std)\n"
        + "    bias = params.get(name.rsplit('.', 1)[0] + '.bias')\n"
        + "    if bias is not None:\n        torch.nn.init.zeros_(bias)\n"
    )


def gate_bias(target: Target, start: int, stop: int) -> str:
    return (
        "import torch\n" + PARAMS
        + f"bias = params[{target.param!r}]\n"
        + f"with torch.no_grad():\n    bias[..., {start}:{stop}] = {float(target.value)!r}  # the memory gate's block\n"
    )


def prune(targets: list[Target]) -> str:
    """Zero the smallest-magnitude weights until only `value` of the weight energy is left."""
    return (
        "import torch\n" + PARAMS
        + f"for name, keep in {_literal(targets)}.items():\n"
        + "    w = params[name]\n"
        + "    with torch.no_grad():\n"
        + "        mags = w.abs().flatten().sort().values\n"
        + "        energy = (mags * mags).cumsum(0)\n"
        + "        cut = int(torch.searchsorted(energy, (1.0 - keep) * energy[-1]))\n"
        + "        w.mul_((w.abs() >= mags[min(cut, mags.numel() - 1)]).to(w.dtype))\n"
    )


def insert_norms(norms: dict[str, str]) -> str:
    """Replace each module path by nn.Sequential(module, norm)."""
    body = "".join(f"wrap({path!r}, {norm})\n" for path, norm in norms.items())
    return (
        "import torch.nn as nn\n\n"
        "def wrap(path, norm):\n"
        "    parent, _, child = path.rpartition('.')\n"
        "    owner = model.get_submodule(parent) if parent else model\n"
        "    setattr(owner, child, nn.Sequential(getattr(owner, child), norm))\n\n" + body
    )


def layerwise_lr(
    multipliers: dict[str, float], max_lr: float | None, meaning: str = "2 / sharpness: the stability limit"
) -> str:
    lr = f"{float(max_lr)!r}  # {meaning}" if max_lr else "1e-3  # your learning rate"
    return (
        "import torch\n" + PARAMS
        + f"base_lr = {lr}\n"
        + f"multipliers = { {name: float(m) for name, m in multipliers.items()}!r}\n"
        + "groups = [{'params': [params[n]], 'lr': base_lr * m} for n, m in multipliers.items()]\n"
        + "rest = [p for n, p in params.items() if n not in multipliers]\n"
        + "# SGD: its step is lr * grad, which the multipliers equalise (Adam rescales gradients itself)\n"
        + "optimizer = torch.optim.SGD(groups + [{'params': rest}], lr=base_lr, momentum=0.9)\n"
        + f"warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters={WARMUP_STEPS})\n"
    )


def clip(threshold: float) -> str:
    return (
        "import torch\n"
        "# after loss.backward(), before optimizer.step():\n"
        f"torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={float(threshold)!r})\n"
    )


def shift_bias(targets: list[Target], hooks: dict[str, float]) -> str:
    """Add each shift to the layer's bias; for a layer without bias, subtract it in a forward hook."""
    text = "import torch\n" + PARAMS
    if targets:
        text += f"for name, shift in {_literal(targets)}.items():\n"
        text += "    with torch.no_grad():\n        params[name].add_(shift)\n"
    for path, shift in hooks.items():
        text += f"model.get_submodule({path!r}).register_forward_hook(lambda m, i, out: out + {float(shift)!r})\n"
    return text


def planned_optimizer(name: str, lr: float, warmup_steps: int = WARMUP_STEPS) -> str:
    """The optimizer of a planned run at the recommended peak LR, with linear warm-up (none at 0)."""
    make = {"sgd": "torch.optim.SGD(model.parameters(), lr=lr)",
            "momentum": "torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)",
            "adam": "torch.optim.Adam(model.parameters(), lr=lr)",
            "adamw": "torch.optim.AdamW(model.parameters(), lr=lr)"}[name]
    text = f"import torch\nlr = {float(lr)!r}\noptimizer = {make}\n"
    if warmup_steps <= 0:
        return text
    return text + (
        f"warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters={warmup_steps})\n"
        "# call warmup.step() after each optimizer.step()\n"
    )


def standardise_inputs(mean: float, std: float) -> str:
    return (
        f"INPUT_MEAN, INPUT_STD = {float(mean)!r}, {float(std)!r}  # measured on the --data batch\n"
        "x = (x - INPUT_MEAN) / INPUT_STD  # in the data pipeline, before the model\n"
    )


SCALED_SKIP = (
    "class ScaledSkip(nn.Module):\n"
    "    def __init__(self, branch, scale):\n"
    "        super().__init__()\n"
    "        self.branch, self.scale = branch, scale\n\n"
    "    def forward(self, x):\n"
    "        return x + self.scale * self.branch(x)\n\n"
)


def _owner_lines() -> str:
    return ("def owner(path):\n"
            "    parent, _, child = path.rpartition('.')\n"
            "    return (model.get_submodule(parent) if parent else model), child\n\n")


def add_skips(runs: list[tuple[str, str]], scale: float) -> str:
    """Wrap each run of nn.Sequential children [first, next) in x + scale * run(x)."""
    body = "".join(f"skip({first!r}, {following!r})\n" for first, following in runs)
    return (
        "import torch.nn as nn\n\n" + SCALED_SKIP + _owner_lines()
        + "def skip(first, following):\n"
        "    seq, start = owner(first)\n"
        "    names = list(seq._modules)\n"
        "    run = names[names.index(start):names.index(owner(following)[1])]\n"
        "    branch = nn.Sequential(*(seq._modules[n] for n in run))\n"
        "    for n in run:\n        seq._modules[n] = nn.Identity()\n"
        f"    seq._modules[start] = ScaledSkip(branch, {float(scale)!r})\n\n" + body
    )


def replace_modules(replacements: dict[str, str], rescale_targets: list[Target] | None = None) -> str:
    """Replace each module path by a new module (nn.Identity for a removed norm, nn.ReLU for a
    swapped activation), then rescale the weights in front of them."""
    body = "".join(f"setattr(*owner({path!r}), {new})\n" for path, new in replacements.items())
    text = "import torch\nimport torch.nn as nn\n\n" + _owner_lines() + body
    return text + (rescale(rescale_targets).replace("import torch\n", "") if rescale_targets else "")


def reinit_then(text: str, targets: list[Target]) -> str:
    """A re-initialisation of `targets` followed by `text` (for norms removed)."""
    return reinit(targets) + text.replace("import torch\n", "", 1)
