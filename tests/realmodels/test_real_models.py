"""A CI-sized slice of the real-model corpus (benchmarks/real_models.py): the gate's promise.

A standard architecture at its library's default init passes the gate; a broken variant that
benchmarks/train_labels.py measured failing to train (stalls or diverges with every optimiser)
fails it. torch.nn architectures always run; torchvision and transformers ones only where
installed (`pip install -e '.[zoo]'`). The full corpus, every route, is the benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gradaudit import gate
from gradaudit.pipeline import audit

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from real_models import CORPUS, build, export, fails_to_train, labels  # noqa: E402

STANDARD_TORCH_NN = ("nn_lstm", "nn_gru", "nn_transformer_postln", "nn_transformer_preln", "nn_resnet",
                     "nn_mlp_kaiming")
FAILING_TO_TRAIN = sorted(name for name, entry in CORPUS.items()
                          if entry.library == "torch.nn" and fails_to_train(name, labels()))
# hf_rwkv: an embedding at std 1e-4 in front of a LayerNorm (scale-invariant), trains (train_labels.json)
ZOO = (("tv_resnet18", "torchvision"), ("tv_mobilenet_v2", "torchvision"), ("hf_gpt2", "transformers"),
       ("hf_rwkv", "transformers"))


def _errors(report) -> list[str]:
    return [f"{f.code}: {f.message}" for f in report.findings if f.severity == "error"]


@pytest.mark.parametrize("name", STANDARD_TORCH_NN)
def test_standard_torch_nn_architecture_passes_the_gate(name):
    model, inputs = build(name)
    report = audit(model, inputs)
    assert gate.exit_code(report.findings) == gate.EXIT_PASS, _errors(report)
    assert not [f for f in report.findings if f.code in ("GA501", "GA106") and f.severity != "info"]


def test_labels_cover_broken_variants_that_fail_to_train():
    """The stored labels hold measured failures to train, so the next test checks something."""
    assert len(FAILING_TO_TRAIN) >= 5


DEEP = {"broken_bn_deep50", "broken_relu_plain50", "broken_tanh_plain50"}  # 50 layers: over ~10 s


@pytest.mark.parametrize("name",
                         [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n for n in FAILING_TO_TRAIN])
def test_broken_variant_that_fails_to_train_fails_the_gate(name):
    model, inputs = build(name)
    report = audit(model, inputs)
    assert gate.exit_code(report.findings) == gate.EXIT_GATE_FAILED, (CORPUS[name].note, report.findings)


@pytest.mark.parametrize("name", ["nn_transformer_preln", "nn_resnet"])
def test_legacy_onnx_export_passes_and_agrees_with_the_factory(name, tmp_path):
    from gradaudit.loaders import load
    from gradaudit.pipeline import AuditOptions, run_audit

    path = tmp_path / f"{name}.onnx"
    export(name, "onnx-legacy", path)
    onnx_report = run_audit(load(str(path)), AuditOptions())
    model, inputs = build(name)
    factory_report = audit(model, inputs)
    assert gate.exit_code(onnx_report.findings) == gate.EXIT_PASS, _errors(onnx_report)
    assert onnx_report.diagnosis.label == factory_report.diagnosis.label
    assert (onnx_report.probe.log10_ratio_first_last == pytest.approx(factory_report.probe.log10_ratio_first_last,
                                                                      abs=0.25))


@pytest.mark.slow
@pytest.mark.parametrize("name, library", ZOO)
def test_zoo_architecture_at_default_init_passes_the_gate(name, library):
    pytest.importorskip(library)
    model, inputs = build(name)
    report = audit(model, inputs)
    assert gate.exit_code(report.findings) == gate.EXIT_PASS, _errors(report)


@pytest.mark.slow
def test_dynamo_export_with_folded_batch_norms_passes_and_agrees_with_the_factory(tmp_path):
    """torchvision mobilenet_v2 exported with dynamo=True in eval mode: onnxscript folds its 52
    BatchNorms into the convolutions; restored from the node metadata, it audits as what trains."""
    pytest.importorskip("torchvision")
    pytest.importorskip("onnxscript")
    from gradaudit.loaders import load
    from gradaudit.pipeline import AuditOptions, run_audit

    path = tmp_path / "mobilenet_v2.onnx"
    export("tv_mobilenet_v2", "onnx-dynamo", path)
    handle = load(str(path))
    assert [note for note in handle.warnings if note.startswith("52 BatchNorm(s) were folded by the exporter")]
    onnx_report = run_audit(handle, AuditOptions())
    model, inputs = build("tv_mobilenet_v2")
    factory_report = audit(model, inputs)
    assert gate.exit_code(onnx_report.findings) == gate.EXIT_PASS, _errors(onnx_report)
    assert onnx_report.diagnosis.label == factory_report.diagnosis.label
    assert onnx_report.probe.log10_ratio_first_last == pytest.approx(
        factory_report.probe.log10_ratio_first_last, abs=0.25
    )
