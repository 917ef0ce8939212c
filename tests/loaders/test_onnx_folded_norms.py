"""A BatchNorm the exporter folded into the convolution before it is restored from the node
metadata the dynamo exporter keeps (gradaudit.loaders.onnx_folded_norms).

onnxscript (the dynamo exporter's optimiser) is not a test dependency: the folded file is the
legacy exporter's eval-mode export with constant folding (the same Conv weights, BatchNorm
multiplied in) carrying the metadata the dynamo exporter writes on a fused node.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import onnx
import pytest
import torch
from torch import nn

from gradaudit.cli import main
from gradaudit.loaders.onnx_loader import load_onnx

DEPTH = 24
FUSED_NODE_METADATA = {
    "pkg.onnxscript.rewriter.rule_name": "RemoveOptionalBiasFromConv, FuseBatchNormIntoConv",  # every rule applied
    "pkg.torch.onnx.class_hierarchy": "['torch.nn.modules.container.Sequential', "
    "'torch.nn.modules.batchnorm.BatchNorm2d', "
    "'aten._native_batch_norm_legit_no_training.default']",
}


def _conv_bn_stack() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(DEPTH):
        layers += [nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()]
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    ).eval()


def _export(path, folded: bool, metadata: dict[str, str] | None = None) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_conv_bn_stack(), (torch.randn(2, 3, 8, 8),), str(path), dynamo=False, opset_version=17,
                          do_constant_folding=folded)
    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1].startswith("onnx::Conv_") and metadata:
            for key, value in metadata.items():
                node.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save(model, str(path))
    return str(path)


def _check(path: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["check", path, "--format", "json", "--batch", "4"])
    return code, json.loads(out.getvalue())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("folded")
    return {
        "kept": _export(folder / "kept.onnx", folded=False),
        "folded": _export(folder / "folded.onnx", folded=True),
        "folded_with_metadata": _export(folder / "meta.onnx", folded=True, metadata=FUSED_NODE_METADATA),
        "folded_with_rule": _export(folder / "rule.onnx", folded=True, metadata={
            "pkg.onnxscript.rewriter.rule_name": FUSED_NODE_METADATA["pkg.onnxscript.rewriter.rule_name"]}),
        "folded_with_hierarchy": _export(folder / "hier.onnx", folded=True, metadata={
            "pkg.torch.onnx.class_hierarchy": FUSED_NODE_METADATA["pkg.torch.onnx.class_hierarchy"]}),
    }


@pytest.fixture(scope="module")
def checked(files) -> dict[str, tuple[int, dict]]:
    return {name: _check(path) for name, path in files.items()}


def test_a_folded_deep_stack_without_the_metadata_fails_the_gate(checked) -> None:
    """The cause: folded, the file is 24 convolutions without normalisation."""
    code, report = checked["folded"]
    assert code == 1 and report["verdict"] == "fail"


@pytest.mark.parametrize("name", ["folded_with_metadata", "folded_with_rule", "folded_with_hierarchy"])
def test_the_metadata_restores_the_folded_batch_norms(name: str, files, checked) -> None:
    handle = load_onnx(files[name], batch=4)
    norms = [d for _, d in handle.graph.nodes(data=True) if d["op"] == "norm" and d["fn"] == "batch"]
    assert len(norms) == DEPTH
    (note,) = [n for n in handle.warnings if "folded by the exporter" in n]
    assert note.startswith(f"{DEPTH} BatchNorm(s)") and "optimize=False" in note
    code, report = checked[name]
    _, kept = checked["kept"]
    assert code == 0 and report["verdict"] == kept["verdict"] == "pass"
    for side in ("static", "dynamic"):
        restored = report["gradient_flow"][side]["log10_ratio_first_last"]
        assert restored == pytest.approx(kept["gradient_flow"][side]["log10_ratio_first_last"], abs=0.05)


def test_a_conv_without_batch_norm_metadata_is_left_alone(files) -> None:
    handle = load_onnx(files["folded"], batch=4)
    assert not [d for _, d in handle.graph.nodes(data=True) if d["op"] == "norm"]
    assert not [n for n in handle.warnings if "folded by the exporter" in n]
