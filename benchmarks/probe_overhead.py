"""Overhead of gradaudit's k-pass probe over k plain forward+backward passes of the same module.

Usage: python benchmarks/probe_overhead.py [--passes 3] [--repeats 5]

For each model (a ResNet-style CNN, a transformer encoder, an LSTM) and each mode ("plain": k
passes of `loss.backward()` under the same default loss; "probe": `run_probe(handle, passes=k)`)
the model and batch are built (seeded) and the handle is loaded, then:
- memory, one fresh subprocess per model and mode: after one warm-up run (both modes, so the
  allocator has grown alike), reset the kernel's peak-RSS mark (`/proc/self/clear_refs` <- 5,
  Linux) and report the peak resident set during one run minus the resident set just before it.
  The subprocess runs with MALLOC_MMAP_THRESHOLD_=65536, so glibc maps every tensor-sized block
  on its own and unmaps it when freed: RSS then follows the live tensors instead of the
  allocator's cache. That counts what torch's CPU tensors really take (tracemalloc does not see
  them);
- time, one subprocess per model running the two modes alternately (so a busy machine slows both
  alike): the median wall time of `--repeats` runs of each.
The table prints their ratios (targets: time <= 1.3x, memory <= 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"time": 1.3, "memory": 1.5}
PASSES = 3
MMAP_THRESHOLD_BYTES = 65536  # blocks above this are mmap'd alone and returned on free


def _models() -> dict[str, Callable[[], tuple]]:
    """Model builders: name -> () -> (module, example inputs). Imported lazily (torch)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)

        def forward(self, x):
            return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))

    def resnet() -> tuple:
        layers = [nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()]
        layers += [Block(32) for _ in range(6)]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)]
        return nn.Sequential(*layers), (torch.randn(16, 3, 32, 32),)

    def transformer() -> tuple:
        layer = nn.TransformerEncoderLayer(128, 4, 256, dropout=0.0, batch_first=True)
        return nn.Sequential(nn.TransformerEncoder(layer, 4, enable_nested_tensor=False), nn.Linear(128, 16)), (
            torch.randn(16, 64, 128),)

    class Lstm(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(64, 128, num_layers=2, batch_first=True)
            self.head = nn.Linear(128, 8)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    def lstm() -> tuple:
        return Lstm(), (torch.randn(16, 64, 64),)

    return {"resnet_cnn": resnet, "transformer_encoder": transformer, "lstm": lstm}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _plain_passes(module, inputs: tuple, passes: int) -> Callable[[], None]:
    """k forward+backward passes under gradaudit's default loss, as a training step runs them."""
    from gradaudit.loss import default_loss

    module.train()

    def run() -> None:
        for index in range(passes):
            module.zero_grad(set_to_none=True)
            loss = default_loss([module(*inputs)], ["linear"], [-1], index)
            loss.backward()
        module.zero_grad(set_to_none=True)

    return run


def _probe_passes(module, inputs: tuple, passes: int) -> Callable[[], None]:
    from gradaudit.loaders.torch_loader import from_module
    from gradaudit.probe import run_probe

    handle = from_module(module, inputs)
    return lambda: run_probe(handle, passes=passes)


def _runs(model: str) -> dict[str, Callable[[], None]]:
    """Both modes' runs over one seeded model and batch, each warmed up once."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    module, inputs = _models()[model]()
    runs = {"plain": _plain_passes(module, inputs, PASSES), "probe": _probe_passes(module, inputs, PASSES)}
    for run in runs.values():
        run()
    return runs


def memory_worker(model: str, mode: str) -> dict:
    """Peak extra RSS of one run of `mode`, in this fresh process (the other mode never runs)."""
    import gc

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    module, inputs = _models()[model]()
    run = (_probe_passes if mode == "probe" else _plain_passes)(module, inputs, PASSES)
    run()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_kib("VmRSS")
    run()
    return {"peak_mib": (_rss_kib("VmHWM") - before) / 1024}


def time_worker(model: str, repeats: int) -> dict:
    """Median seconds of each mode, the modes alternating run by run."""
    runs = _runs(model)
    times: dict[str, list[float]] = {mode: [] for mode in runs}
    for _ in range(repeats):
        for mode, run in runs.items():
            started = time.perf_counter()
            run()
            times[mode].append(time.perf_counter() - started)
    return {f"{mode}_s": statistics.median(values) for mode, values in times.items()}


def _subprocess(*args: str) -> dict:
    """Run this file's worker in a fresh interpreter and read its JSON line."""
    command = [sys.executable, __file__, "--worker", *args, "--passes", str(PASSES)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES)}
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    global PASSES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=PASSES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    PASSES = args.passes
    if args.worker:
        sys.path.insert(0, str(ROOT))
        kind, model, *rest = args.worker
        print(json.dumps(memory_worker(model, rest[0]) if kind == "memory" else time_worker(model, int(rest[0]))))
        return
    print(f"{PASSES} passes; time: median of {args.repeats}, modes alternating; "
          "memory: peak RSS of one run minus RSS before it, fresh process per mode")
    print(f"{'model':<22}{'plain_s':>9}{'probe_s':>9}{'time x':>8}{'plain_MiB':>11}{'probe_MiB':>11}{'mem x':>7}")
    for model in _models():
        times = _subprocess("time", model, str(args.repeats))
        plain, probe = (_subprocess("memory", model, mode)["peak_mib"] for mode in ("plain", "probe"))
        time_x, mem_x = times["probe_s"] / times["plain_s"], probe / max(plain, 1e-9)
        flags = "" if time_x <= TARGETS["time"] and mem_x <= TARGETS["memory"] else "  (over target)"
        print(f"{model:<22}{times['plain_s']:>9.3f}{times['probe_s']:>9.3f}{time_x:>8.2f}"
              f"{plain:>11.1f}{probe:>11.1f}{mem_x:>7.2f}{flags}")


if __name__ == "__main__":
    main()
