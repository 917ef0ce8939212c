"""An operator the executor lacks never crashes the audit: the static estimate goes on with the
op as a pass-through, the probe is skipped with the reason, the exit code follows the findings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gradaudit.cli import main


def _mlp_with(op_type: str, opset: int, domain: str = "") -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
        helper.make_node(op_type, ["h"], ["r"], domain=domain),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1),
    ]
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 4)) / 2).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
        numpy_helper.from_array((rng.standard_normal((3, 8)) / 3).astype(np.float32), "w2"),
        numpy_helper.from_array(np.zeros(3, np.float32), "b2"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], inits,
    )  # fmt: skip
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=imports)


def test_unsupported_operator_skips_the_probe_not_the_audit(tmp_path: Path) -> None:
    path, report = tmp_path / "model.onnx", tmp_path / "audit.json"
    onnx.save(_mlp_with("Inverse", 15, "com.microsoft"), str(path))  # an onnxruntime contrib op the executor lacks
    code = main(["check", str(path), "--json", str(report), "--quiet"])
    assert code in (0, 1)
    audit = json.loads(report.read_text())
    assert audit["gradient_flow"]["dynamic"] is None
    assert audit["gradient_flow"]["static"]["layers"]
    messages = [f["message"] for f in audit["findings"]]
    assert any("com.microsoft:Inverse" in m and "skipped" in m for m in messages), messages
