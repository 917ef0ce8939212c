"""Wall time of the static estimate on generated LayerGraphs of about 1k, 5k and 10k nodes.

Usage: python benchmarks/static_speed.py [--repeats 3]
The graphs are Pre-LN transformer-like stacks built directly with gradaudit.graph's helpers:
per block LayerNorm -> attention -> Add, LayerNorm -> Linear -> GELU -> Linear -> Add (8 nodes),
every block with its own weights, so the quadrature cache sees new moments at every depth.
Prints the best of `repeats` runs per size, wall and CPU seconds (the CPU time of this process
is what other work on a shared machine does not inflate), and the per-node slope of a
least-squares line through the CPU times. Target: <= 1 s for 1,000 nodes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradaudit.graph import ParamStats, add_node, dense_fans, new_graph  # noqa: E402
from gradaudit.model import InputSpec  # noqa: E402
from gradaudit.static import estimate  # noqa: E402
from gradaudit.weight_stats import param_stats  # noqa: E402

WIDTH, TOKENS, BATCH = 64, 32, 8
SHAPE = (BATCH, TOKENS, WIDTH)
NODES_PER_BLOCK = 8


def _weight(name: str, rows: int, cols: int, generator: torch.Generator) -> ParamStats:
    return param_stats(name, torch.randn(rows, cols, generator=generator) * cols**-0.5)


def _block(graph: nx.DiGraph, index: int, src: str, generator: torch.Generator) -> str:
    """One Pre-LN block appended after node `src`; returns its output node."""
    p = f"b{index}."
    gamma = {"scale": param_stats(p + "ln.weight", 1.0 + 0.1 * torch.randn(WIDTH, generator=generator))}
    attn = {"in_proj_weight": _weight(p + "attn.in_proj_weight", 3 * WIDTH, WIDTH, generator),
            "out_proj_weight": _weight(p + "attn.out_proj.weight", WIDTH, WIDTH, generator)}
    nodes = [
        (p + "ln1", "norm", "layer", {}, gamma, [src]),
        (p + "attn", "attention", None, {"embed_dim": WIDTH, "num_heads": 4, "batch_first": True}, attn,
         [p + "ln1"] * 3),
        (p + "res1", "add", None, {}, {}, [src, p + "attn"]),
        (p + "ln2", "norm", "layer", {}, gamma, [p + "res1"]),
        (p + "fc1", "linear", None, dense_fans(WIDTH, 4 * WIDTH),
         {"weight": _weight(p + "fc1.weight", 4 * WIDTH, WIDTH, generator)}, [p + "ln2"]),
        (p + "act", "activation", "gelu", {}, {}, [p + "fc1"]),
        (p + "fc2", "linear", None, dense_fans(4 * WIDTH, WIDTH),
         {"weight": _weight(p + "fc2.weight", WIDTH, 4 * WIDTH, generator)}, [p + "act"]),
        (p + "res2", "add", None, {}, {}, [p + "res1", p + "fc2"]),
    ]
    for node, op, fn, attrs, params, inputs in nodes:
        shape = (BATCH, TOKENS, 4 * WIDTH) if node.endswith(("fc1", "act")) else SHAPE
        add_node(graph, node, name=node, op=op, fn=fn, source=op, attrs=attrs, params=params, out_shape=shape,
                 inputs=inputs)
    return p + "res2"


def generated_graph(nodes: int, seed: int = 0) -> nx.DiGraph:
    """A LayerGraph of about `nodes` nodes (input + blocks of NODES_PER_BLOCK)."""
    generator = torch.Generator().manual_seed(seed)
    graph = new_graph("torch")
    add_node(graph, "x", name="x", op="input", source="input", out_shape=SHAPE)
    src = "x"
    for index in range(max(nodes // NODES_PER_BLOCK, 1)):
        src = _block(graph, index, src, generator)
    graph.graph.update(inputs=["x"], outputs=[src])
    return graph


def best_time(graph: nx.DiGraph, repeats: int) -> tuple[float, float]:
    """Fastest wall and CPU seconds of `repeats` estimates, each with cold quadrature caches."""
    from gradaudit.static import quadrature

    walls, cpus = [], []
    for _ in range(repeats):
        quadrature._activation_stats.cache_clear()
        quadrature._softmax_stats.cache_clear()
        wall, cpu = time.perf_counter(), time.process_time()
        estimate(graph, [InputSpec("x", SHAPE)])
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes, seconds = [], []
    print(f"{'nodes':>7}{'wall s':>10}{'cpu s':>10}{'cpu ms/node':>13}")
    for target in (1000, 5000, 10000):
        graph = generated_graph(target)
        sizes.append(graph.number_of_nodes())
        wall, cpu = best_time(graph, args.repeats)
        seconds.append(cpu)
        print(f"{sizes[-1]:>7}{wall:>10.3f}{cpu:>10.3f}{1000 * cpu / sizes[-1]:>13.3f}")
    slope, intercept = np.polyfit(sizes, seconds, 1)
    verdict = "meets" if seconds[0] <= 1.0 else "misses"
    print(f"slope {1000 * slope:.3f} ms/node (cpu), intercept {intercept:.3f} s; {sizes[0]} nodes in {seconds[0]:.3f} "
          f"cpu s ({verdict} the 1 s target)")


if __name__ == "__main__":
    main()
