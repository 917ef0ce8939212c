"""Static analysis time against `onnx.load` itself, and its growth with node count.

Usage: python benchmarks/static_scale.py [--repeats 3] [--gpt-widths 64,768] [--resnet-widths 16,64]

Generated ONNX files (onnx.helper, seeded random weights): a 48-block GPT-style decoder
(pre-LayerNorm, multi-head attention, GELU MLP) and a ResNet-152-style network (bottleneck blocks
3-8-36-3 with BatchNorm), each at a few widths: GPT width 768 is a 1.4 GB file (near protobuf's
2 GB limit), ResNet base width 64 is ResNet-152's own (60M parameters). For each the table
prints the median time of `onnx.load` and of what `gradaudit check --static-only` spends before
its rules (`gradaudit.loaders.load(static_only=True)`: read, validate, map the weights, build the
executor, the meta-device trace, LayerGraph with weight statistics; then the static estimate),
and their ratio (target <= 1.5x). gradaudit runs with torch's default thread count (printed);
`onnx.load` uses one. Then GPT-style files of growing depth (1k to 50k ONNX nodes, width 16)
give the time of load + static per node: a least-squares line, its slope (ms per 1000 nodes)
and R^2 (linear growth). At such small widths the per-node Python work dominates, not the bytes.

`--memory WIDTH` instead loads a 48-block GPT of that width, stored embedded and as external
data, with `onnx.load`, with gradaudit's static-only audit and with gradaudit's full load (what a
probe starts from), each in a fresh process, printing wall time and peak memory. `--llama-7b` runs
`--static-only` on a 6.7e9-parameter Llama-like factory
(`benchmarks/static_scale.py:llama_7b`, gradaudit.loaders.torch_meta) in a fresh process and prints
its peak RSS (the kernel's VmHWM), wall time and largest layer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OPSET = 17
TARGET_RATIO = 1.5
SCALING_NODES = (1000, 2000, 5000, 10000, 20000, 35000, 50000)


class _Builder:
    """Accumulates nodes and initializers with unique names; seeded N(0, 1/fan_in) weights."""

    def __init__(self, seed: int = 0):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def weight(self, shape: tuple[int, ...], fan_in: int | None = None, value: float | None = None) -> str:
        name = self.name("w")
        if value is None:
            array = (self.rng.standard_normal(shape) / np.sqrt(fan_in or shape[0])).astype(np.float32)
        else:
            array = np.full(shape, value, np.float32)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def model(self, x: str, shape: list, y: str, y_rank: int) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "generated", [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)],
                                  [helper.make_tensor_value_info(y, TensorProto.FLOAT, [None] * y_rank)], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _gpt_block(b: _Builder, x: str, d: int, heads: int, seq: int) -> str:
    ln = b.op("LayerNormalization", [x, b.weight((d,), value=1.0), b.weight((d,), value=0.0)], axis=-1)
    qkv = b.op("MatMul", [ln, b.weight((d, 3 * d), d)])
    split = helper.make_node("Split", [qkv, b.weight((3,), value=0)], [b.name("q"), b.name("k"), b.name("v")],
                             name=b.name("split"), axis=-1)
    b.inits[-1] = numpy_helper.from_array(np.array([d, d, d], np.int64), b.inits[-1].name)
    b.nodes.append(split)
    head_shape = b.name("shape")
    b.inits.append(numpy_helper.from_array(np.array([0, seq, heads, d // heads], np.int64), head_shape))
    q, k, v = (b.op("Transpose", [b.op("Reshape", [t, head_shape])], perm=[0, 2, 1, 3]) for t in split.output)
    scores = b.op("Mul", [b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])]),
                          b.weight((), value=float(1 / np.sqrt(d // heads)))])
    context = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])
    merged_shape = b.name("shape")
    b.inits.append(numpy_helper.from_array(np.array([0, seq, d], np.int64), merged_shape))
    merged = b.op("Reshape", [b.op("Transpose", [context], perm=[0, 2, 1, 3]), merged_shape])
    x = b.op("Add", [x, b.op("MatMul", [merged, b.weight((d, d), d)])])
    ln = b.op("LayerNormalization", [x, b.weight((d,), value=1.0), b.weight((d,), value=0.0)], axis=-1)
    hidden = b.op("MatMul", [ln, b.weight((d, 4 * d), d)])
    erf = b.op("Erf", [b.op("Mul", [hidden, b.weight((), value=float(1 / np.sqrt(2)))])])
    gelu = b.op("Mul", [b.op("Mul", [hidden, b.weight((), value=0.5)]), b.op("Add", [erf, b.weight((), value=1.0)])])
    return b.op("Add", [x, b.op("MatMul", [gelu, b.weight((4 * d, d), 4 * d)])])


def gpt(blocks: int, width: int, seq: int = 16, heads: int = 4) -> onnx.ModelProto:
    """A pre-LN GPT-style stack of `blocks` blocks on a (batch, seq, width) float input."""
    b = _Builder()
    x = "x"
    for _ in range(blocks):
        x = _gpt_block(b, x, width, heads, seq)
    ln = b.op("LayerNormalization", [x, b.weight((width,), value=1.0), b.weight((width,), value=0.0)], axis=-1)
    return b.model("x", ["batch", seq, width], b.op("MatMul", [ln, b.weight((width, width), width)]), 3)


def _conv_bn(b: _Builder, x: str, c_in: int, c_out: int, kernel: int, stride: int, relu: bool) -> str:
    w = b.weight((c_out, c_in, kernel, kernel), c_in * kernel * kernel)
    y = b.op("Conv", [x, w], kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[kernel // 2] * 4)
    ones, zeros = (c_out,), (c_out,)
    y = b.op("BatchNormalization", [y, b.weight(ones, value=1.0), b.weight(zeros, value=0.0),
                                    b.weight(zeros, value=0.0), b.weight(ones, value=1.0)])
    return b.op("Relu", [y]) if relu else y


def resnet152(width: int) -> onnx.ModelProto:
    """ResNet-152's layout (bottlenecks 3-8-36-3, expansion 4) with base width `width`."""
    b = _Builder()
    x = _conv_bn(b, "x", 3, width, 7, 2, True)
    c_in = width
    for stage, count in enumerate((3, 8, 36, 3)):
        mid = width * 2**stage
        for index in range(count):
            stride = 2 if index == 0 and stage > 0 else 1
            y = _conv_bn(b, x, c_in, mid, 1, 1, True)
            y = _conv_bn(b, y, mid, mid, 3, stride, True)
            y = _conv_bn(b, y, mid, 4 * mid, 1, 1, False)
            skip = _conv_bn(b, x, c_in, 4 * mid, 1, stride, False) if index == 0 else x
            x, c_in = b.op("Relu", [b.op("Add", [y, skip])]), 4 * mid
    pooled = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    return b.model("x", ["batch", 3, 64, 64], b.op("Gemm", [pooled, b.weight((10, c_in), c_in)], transB=1), 2)


# --- a 7-billion-parameter Llama-like configuration, analysed without its weights ---------------
LLAMA_7B = {"vocab": 32000, "width": 4096, "layers": 32, "heads": 32, "ffn": 11008}


def _llama_classes() -> type:
    """Plain-torch Llama-style decoder (RMSNorm, SwiGLU MLP, causal attention; no rotary
    embedding: a rotation preserves norms, so it changes no second moment)."""
    import torch
    from torch import nn

    class RMSNorm(nn.Module):
        def __init__(self, width: int, eps: float = 1e-6):
            super().__init__()
            self.eps = eps
            self.weight = nn.Parameter(torch.ones(width))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    class Attention(nn.Module):
        def __init__(self, width: int, heads: int):
            super().__init__()
            self.heads = heads
            self.q, self.k, self.v, self.o = (nn.Linear(width, width, bias=False) for _ in range(4))

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = (m(x).view(b, t, self.heads, d // self.heads).transpose(1, 2) for m in (self.q, self.k, self.v))
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o(y.transpose(1, 2).reshape(b, t, d))

    class Block(nn.Module):
        def __init__(self, width: int, heads: int, ffn: int):
            super().__init__()
            self.attn_norm, self.attn, self.mlp_norm = RMSNorm(width), Attention(width, heads), RMSNorm(width)
            self.gate, self.up = nn.Linear(width, ffn, bias=False), nn.Linear(width, ffn, bias=False)
            self.down = nn.Linear(ffn, width, bias=False)

        def forward(self, x):
            x = x + self.attn(self.attn_norm(x))
            h = self.mlp_norm(x)
            return x + self.down(nn.functional.silu(self.gate(h)) * self.up(h))

    class Llama(nn.Module):
        def __init__(self, vocab: int, width: int, layers: int, heads: int, ffn: int):
            super().__init__()
            self.embed = nn.Embedding(vocab, width)
            self.blocks = nn.ModuleList(Block(width, heads, ffn) for _ in range(layers))
            self.norm = RMSNorm(width)
            self.head = nn.Linear(width, vocab, bias=False)

        def forward(self, ids):
            x = self.embed(ids)
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x))

    return Llama


def llama_7b():
    """Factory spec `benchmarks/static_scale.py:llama_7b`: 6.7e9 parameters (26 GB in float32)."""
    return _llama_classes()(**LLAMA_7B)


def llama_worker() -> None:
    """In a fresh process: `--static-only` analysis of llama_7b; peak RSS, wall time, largest layer."""
    import torch

    from gradaudit.loaders.torch_meta import load_torch_meta
    from gradaudit.pipeline import AuditOptions, run_audit

    torch.set_num_threads(1)
    started = time.perf_counter()
    handle = load_torch_meta(f"{__file__}:llama_7b", [(1, 128)])
    audit = run_audit(handle, AuditOptions(static_only=True))
    wall = time.perf_counter() - started
    peak = _status_mib("VmHWM")
    largest = max(s.numel for _, data in handle.graph.nodes(data=True) for s in data["params"].values())
    print(f"parameters {handle.parameters / 1e9:.2f} e9 ({handle.parameters * 4 / 2**30:.1f} GiB float32); "
          f"largest layer {largest * 4 / 2**20:.0f} MiB; graph nodes {handle.graph.number_of_nodes()}")
    print(f"peak RSS {peak:.0f} MiB, wall {wall:.1f} s; diagnosis {audit.diagnosis.label}, "
          f"static log10 ratio first/last {audit.static.log10_ratio_first_last:+.2f}; notes {len(handle.warnings)}")


MEMORY_RUNS = {
    "onnx.load": "the baseline: protobuf reads every weight",
    "gradaudit --static-only": "load(static_only=True) + static audit",
    "gradaudit load (probe)": "load() as before a probe: executor with every weight, one forward trace",
}


def memory_worker(path: str, run: str) -> None:
    """In a fresh process, one of MEMORY_RUNS on `path`: wall time, peak anonymous memory above
    the imports (sampled every 5 ms: the process's own memory, which the weights fill when they
    are read into it) and VmHWM (which also counts mapped file pages, page cache the kernel may
    reclaim)."""
    import threading

    from gradaudit.loaders import load
    from gradaudit.pipeline import AuditOptions, run_audit

    peak_anon, stop = [0.0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak_anon[0] = max(peak_anon[0], _status_mib("RssAnon"))
            stop.wait(0.005)

    at_start = _status_mib("RssAnon")  # interpreter, torch and gradaudit imported: not the model's
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    if run == "onnx.load":
        onnx.load(path)
    elif run == "gradaudit --static-only":
        run_audit(load(path, batch=2, static_only=True), AuditOptions(static_only=True))
    else:
        load(path, batch=2)
    wall = time.perf_counter() - started
    stop.set()
    thread.join()
    print(f"  {run:<24}{wall:>8.2f}{peak_anon[0] - at_start:>12.0f}{_status_mib('VmHWM'):>12.0f}")


def memory(width: int) -> None:
    """A 48-block GPT-style file of `width`, stored embedded (when under protobuf's 2 GB) and as
    external data; each of MEMORY_RUNS on each, in a fresh process."""
    folder = Path(tempfile.mkdtemp(prefix="gradaudit-memory-"))
    model = gpt(48, width)
    files = {"external data": folder / "external" / "gpt.onnx"}
    files["external data"].parent.mkdir()
    if model.ByteSize() < 2**31:
        files = {"embedded": folder / "gpt.onnx", **files}
        onnx.save(model, str(files["embedded"]))
    onnx.save_model(model, str(files["external data"]), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin")
    del model
    weights_mib = (files["external data"].parent / "weights.bin").stat().st_size / 2**20
    print(f"48-block GPT-style, width {width}: {weights_mib:.0f} MiB of weights")
    print(f"  {'':<24}{'wall_s':>8}{'+anon_MiB':>12}{'VmHWM_MiB':>12}   (+anon: peak anonymous memory above the "
          "imports)")
    for storage, path in files.items():
        print(storage)
        for run in MEMORY_RUNS:
            subprocess.run([sys.executable, __file__, "--memory-worker", str(path), run], check=True)


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def median_time(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def load_and_estimate(path: str) -> None:
    """What `gradaudit check --static-only` spends on a model: load + static estimate."""
    from gradaudit.loaders import load
    from gradaudit.static import estimate

    handle = load(path, batch=2, static_only=True)
    estimate(handle.graph, handle.inputs)


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares slope, intercept and R^2."""
    slope, intercept = np.polyfit(xs, ys, 1)
    predicted = np.polyval([slope, intercept], xs)
    residual = float(np.sum((np.asarray(ys) - predicted) ** 2))
    total = float(np.sum((np.asarray(ys) - np.mean(ys)) ** 2))
    return float(slope), float(intercept), 1.0 - residual / total if total else 1.0


def _widths(text: str) -> list[int]:
    return [int(w) for w in text.split(",") if w]


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpt-widths", type=_widths, default=[64, 768])
    parser.add_argument("--resnet-widths", type=_widths, default=[16, 64])
    parser.add_argument("--max-nodes", type=int, default=SCALING_NODES[-1])
    parser.add_argument("--llama-7b", action="store_true",
                        help="instead: --static-only analysis of a 7e9-parameter Llama-like factory (minutes)")
    parser.add_argument("--llama-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory", type=int, metavar="WIDTH",
                        help="instead: memory and time of loading a 48-block GPT of this width (embedded, external "
                             "data)")
    parser.add_argument("--memory-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.llama_worker:
        llama_worker()
        return
    if args.memory_worker:
        memory_worker(*args.memory_worker)
        return
    if args.memory:
        memory(args.memory)
        return
    if args.llama_7b:
        print("fresh process: load_torch_meta (meta device, per-parameter init replay) + static estimate")
        subprocess.run([sys.executable, __file__, "--llama-worker"], check=True)
        return
    folder = Path(tempfile.mkdtemp(prefix="gradaudit-static-scale-"))
    cases = [(f"gpt_48_blocks_w{w}", lambda w=w: gpt(48, w)) for w in args.gpt_widths]
    cases += [(f"resnet152_w{w}", lambda w=w: resnet152(w)) for w in args.resnet_widths]
    print(f"median of {args.repeats}; torch threads {torch.get_num_threads()}; "
          "static = load(static_only=True) + estimate")
    print(f"{'model':<22}{'nodes':>7}{'MB':>8}{'onnx.load_s':>13}{'static_s':>10}{'ratio':>7}")
    for name, build in cases:
        model = build()
        path = str(folder / f"{name}.onnx")
        onnx.save(model, path)
        nodes = len(model.graph.node)
        del model
        base = median_time(lambda path=path: onnx.load(path), args.repeats)
        ours = median_time(lambda path=path: load_and_estimate(path), args.repeats)
        mark = "" if ours / base <= TARGET_RATIO else "  (over target)"
        print(f"{name:<22}{nodes:>7}{Path(path).stat().st_size / 1e6:>8.1f}{base:>13.3f}{ours:>10.3f}"
              f"{ours / base:>7.2f}{mark}")
        os.remove(path)

    nodes_per_block = len(gpt(1, 16).graph.node) - 2
    counts, seconds = [], []
    print(f"\nscaling (GPT-style, width 16, {nodes_per_block} nodes per block): nodes, load+static s")
    for target in (n for n in SCALING_NODES if n <= args.max_nodes):
        model = gpt(max(target // nodes_per_block, 1), 16)
        path = str(folder / "scale.onnx")
        onnx.save(model, path)
        counts.append(len(model.graph.node))
        seconds.append(median_time(lambda path=path: load_and_estimate(path), 1))
        print(f"  {counts[-1]:>7} {seconds[-1]:>8.2f}")
    slope, intercept, r2 = linear_fit(counts, seconds)
    print(f"slope {slope * 1e6:.1f} ms per 1000 nodes, intercept {intercept:.2f} s, R^2 {r2:.4f}")


if __name__ == "__main__":
    main()
