"""Wall time of `param_stats` on the weights of a GPT-2-sized model, against the algorithm it replaced.

Usage: python benchmarks/param_stats_speed.py [--layers 48] [--repeats 1]
The weights are float32 tensors shaped like GPT-2's Conv1D ones, (in, out): per layer 768x2304,
768x768, 768x3072 and 3072x768, ~1.36 GB for 48 layers. They are read with out_axis 1, as the ONNX
loader reads MatMul weights, and with out_axis 0, as a torch Linear weight of that shape is read.
Prints, per axis, the best of `repeats` runs of: one memory pass (`torch.linalg.vector_norm` once
over every tensor, the floor), the old one-shot algorithm (a copy of it is kept below as the
baseline), and the blocked `gradaudit.weight_stats.param_stats`; then the ratios. Uses torch's default
thread count.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradaudit.graph import ParamStats  # noqa: E402
from gradaudit.weight_stats import param_stats  # noqa: E402

SHAPES = ((768, 2304), (768, 768), (768, 3072), (3072, 768))


def old_param_stats(name: str, tensor: Any, out_axis: int = 0) -> ParamStats:
    """gradaudit.weight_stats.param_stats before block-wise statistics: about eight passes over the
    whole tensor, some with full-size temporaries."""
    t = tensor.detach() if isinstance(tensor, torch.Tensor) else torch.as_tensor(tensor)
    t = t.float() if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16) else t
    shape = tuple(int(d) for d in t.shape)
    numel = t.numel()
    if numel == 0:
        return ParamStats(name, shape, 0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, False)
    finite = torch.isfinite(t)
    nonfinite = int(numel - int(finite.sum()))
    vals = t[finite] if nonfinite else t.reshape(-1)
    if vals.numel() == 0:
        return ParamStats(name, shape, numel, math.nan, math.nan, math.nan, math.nan, nonfinite, math.nan, False)
    mean = float(vals.mean(dtype=torch.float64)) if vals.dtype != torch.float64 else float(vals.mean())
    mean_sq = float(torch.linalg.vector_norm(vals, dtype=torch.float64) ** 2) / vals.numel()
    rms = math.sqrt(mean_sq)
    std = math.sqrt(max(mean_sq - mean * mean, 0.0))
    absmax = float(vals.abs().max())
    row_sum_sq = 0.0
    rows_identical = False
    if t.dim() >= 2 and not nonfinite:
        rows = torch.movedim(t, out_axis, 0).reshape(shape[out_axis], -1)
        row_sum_sq = float((rows.sum(dim=1, dtype=torch.float64) ** 2).mean())
        if rows.shape[0] > 1:
            spread = float((rows - rows[:1]).abs().max())
            rows_identical = spread <= 1e-12 * max(absmax, 1e-30)
    return ParamStats(name, shape, numel, mean, std, rms, absmax, nonfinite, row_sum_sq, rows_identical)


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(shape, generator=generator) * 0.02 for _ in range(args.layers) for shape in SHAPES]
    gigabytes = sum(w.numel() * w.element_size() for w in weights) / 1e9
    print(f"{len(weights)} float32 tensors, {gigabytes:.2f} GB, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for axis in (1, 0):
        memory = best_seconds(lambda: [torch.linalg.vector_norm(w) for w in weights], args.repeats)
        old = best_seconds(lambda axis=axis: [old_param_stats("w", w, axis) for w in weights], args.repeats)
        new = best_seconds(lambda axis=axis: [param_stats("w", w, axis) for w in weights], args.repeats)
        print(f"out_axis {axis}: memory pass {memory:.3f} s | old {old:.3f} s | new {new:.3f} s | "
              f"old/new {old / new:.1f}x | new/memory pass {new / memory:.1f}x")


if __name__ == "__main__":
    main()
