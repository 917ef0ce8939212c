"""The opset 23+ transformer ops train: finite gradients where a plain softmax gives NaN, and a
block written with them audits end to end at opset 23 (values: tests/conformance)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from gradaudit.cli import main
from gradaudit.onnx_exec.op_registry import OpContext
from gradaudit.onnx_exec.ops_attention import attention

RNG = np.random.default_rng(1)


def test_attention_with_a_fully_masked_row_has_finite_gradients() -> None:
    q, k, v = (torch.randn(1, 2, 3, 4, requires_grad=True) for _ in range(3))
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1] = False  # query 1 may attend to no key: its output is zero, not NaN
    y = attention([q, k, v, mask], {}, OpContext(23, True))
    y.sum().backward()
    assert torch.all(y[:, :, 1] == 0)  # exact: the reference defines these rows as zeros
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    assert float(q.grad.abs().sum()) > 0


def test_grouped_query_attention_matches_repeated_heads() -> None:
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    grouped = attention([q, k, v], {"is_causal": 1}, OpContext(23, True))
    full = attention([q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)], {"is_causal": 1}, OpContext(23, True))
    torch.testing.assert_close(grouped, full)


def _block(opset: int = 23) -> onnx.ModelProto:
    """x -> RMSNorm -> Q/K/V projections -> RotaryEmbedding on Q and K -> Attention -> out proj."""
    width, heads, seq = 16, 2, 6
    head = width // heads
    nodes = [
        helper.make_node("RMSNormalization", ["x", "g"], ["n"]),
        *(helper.make_node("MatMul", ["n", f"w{p}"], [p]) for p in "qkv"),
        helper.make_node("RotaryEmbedding", ["q", "cos", "sin", "pos"], ["qr"], num_heads=heads),
        helper.make_node("RotaryEmbedding", ["k", "cos", "sin", "pos"], ["kr"], num_heads=heads),
        helper.make_node("Attention", ["qr", "kr", "v"], ["a"], q_num_heads=heads, kv_num_heads=heads, is_causal=1),
        helper.make_node("MatMul", ["a", "wo"], ["y"]),
    ]
    angles = np.arange(seq)[:, None] / 10000 ** (np.arange(head // 2) / (head // 2))
    inits = [numpy_helper.from_array(np.ones(width, np.float32), "g"),
             numpy_helper.from_array(np.cos(angles).astype(np.float32), "cos"),
             numpy_helper.from_array(np.sin(angles).astype(np.float32), "sin"),
             numpy_helper.from_array(np.tile(np.arange(seq, dtype=np.int64), (4, 1)), "pos")]
    inits += [
        numpy_helper.from_array((RNG.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), f"w{p}")
        for p in "qkvo"
    ]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, seq, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, seq, width])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_an_opset_23_block_audits_with_the_probe(tmp_path: Path) -> None:
    path, report = tmp_path / "block.onnx", tmp_path / "audit.json"
    onnx.save(_block(), str(path))
    assert main(["check", str(path), "--json", str(report), "--quiet"]) in (0, 1)
    audit = json.loads(report.read_text())
    measured = {layer["name"] for layer in audit["gradient_flow"]["dynamic"]["layers"]}
    assert {"q", "k", "v", "y"} <= measured, measured  # the projections, named by their outputs
    assert not audit["gradient_flow"]["dynamic"]["nonfinite"]


def test_an_opset_newer_than_the_installed_onnx_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "future.onnx"
    onnx.save(_block(onnx.defs.onnx_opset_version() + 1), str(path))
    assert main(["check", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "uses ONNX opset" in err and len(err.splitlines()) == 1
