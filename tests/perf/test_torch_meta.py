"""--static-only on a factory: the model is built on the meta device and each init is replayed."""

from __future__ import annotations

import json

import pytest
import torch

from gradaudit.cli import main
from gradaudit.loaders.torch_loader import load_torch
from gradaudit.loaders.torch_meta import EmptyInit, load_static_only, load_torch_meta
from gradaudit.pipeline import AuditOptions, run_audit

SPEC = "tests/perf/models.py:"
SHAPES = [(4, 12)]


def _weights(handle) -> dict[str, object]:
    return {s.name: s for _, d in handle.graph.nodes(data=True) for s in d["params"].values()}


def test_same_graph_as_the_full_loader() -> None:
    meta, full = load_torch_meta(SPEC + "tiny_lm", SHAPES), load_torch(SPEC + "tiny_lm", SHAPES)
    assert [(n, d["op"])
            for n, d in meta.graph.nodes(data=True)] == [(n, d["op"]) for n, d in full.graph.nodes(data=True)]
    assert meta.inputs == full.inputs and meta.parameters == full.parameters
    assert meta.module is None and meta.runner is None


def test_default_inits_replayed_with_their_distributions() -> None:
    meta, full = _weights(load_torch_meta(SPEC + "tiny_lm", SHAPES)), _weights(load_torch(SPEC + "tiny_lm", SHAPES))
    assert set(meta) == set(full)
    for name, stats in meta.items():
        assert stats.shape == full[name].shape
        assert stats.rms == pytest.approx(full[name].rms, rel=0.15), name
    assert (meta["norms.0.weight"].mean == 0.5
            and meta["norms.0.weight"].std < 1e-6)  # constructor value kept; exact: the constructor's fill value


def test_init_loop_after_construction_is_replayed() -> None:
    meta = _weights(load_torch_meta(SPEC + "tiny_lm_custom_init", SHAPES))
    assert meta["ups.0.weight"].rms == pytest.approx(0.3, rel=0.1)
    assert meta["ups.0.bias"].rms == 0.0  # `.data.zero_()` through the alias; exact: zeros


def test_static_diagnosis_matches_the_full_loader() -> None:
    options = AuditOptions(static_only=True)
    meta = run_audit(load_torch_meta(SPEC + "tiny_lm_custom_init", SHAPES), options)
    full = run_audit(load_torch(SPEC + "tiny_lm_custom_init", SHAPES), options)
    assert meta.diagnosis.label == full.diagnosis.label
    assert meta.static.log10_ratio_first_last == pytest.approx(full.static.log10_ratio_first_last, abs=0.1)


def test_no_parameter_memory_and_the_callers_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    recorder = EmptyInit()
    with recorder.active():
        layer = torch.nn.Linear(4096, 4096)
    assert layer.weight.is_meta and layer.bias.is_meta
    load_torch_meta(SPEC + "tiny_lm", SHAPES)
    assert torch.equal(torch.get_rng_state(), before)  # exact: RNG state bytes


def test_unreplayable_write_is_reported() -> None:
    recorder = EmptyInit()
    with recorder.active():
        a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
        with torch.no_grad():
            b.weight.copy_(a.weight)
    model = torch.nn.Sequential(a, b)
    from gradaudit.loaders.torch_meta import replay_inits

    stats, notes = replay_inits(model, recorder)
    assert any(note.startswith("1.weight") and "another meta tensor" in note for note in notes)
    assert set(stats) == {"0.weight", "0.bias", "1.weight", "1.bias"}


def test_model_without_meta_support_falls_back_to_the_full_loader() -> None:
    handle = load_static_only(SPEC + "data_dependent", [(4, 8)], max_memory=300)  # weights 288 B: "too big"
    assert handle.module is not None
    assert any("meta tensors" in note for note in handle.warnings)


def test_cli_static_only_factory_reports_like_the_full_loader(capsys) -> None:
    args = ["check", SPEC + "tiny_lm", "--input-shape", "4,12", "--static-only", "--format", "json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    full = run_audit(load_torch(SPEC + "tiny_lm", SHAPES), AuditOptions(static_only=True))
    assert report["verdict"] == full.verdict and report["model"]["parameters"] == full.parameters
    assert sorted(f["code"] for f in report["findings"]) == sorted(f.code for f in full.findings)


def test_small_models_are_analysed_with_their_real_weights() -> None:
    """Meta replay is for models that do not fit: one that fits gets exact statistics, decided
    before any meta trace (a model that does not even run on meta goes straight there)."""
    assert load_static_only(SPEC + "tiny_lm", SHAPES).module is not None
    direct = load_static_only(SPEC + "data_dependent", [(4, 8)])
    assert direct.module is not None and not any("meta tensors" in note for note in direct.warnings)
    huge = load_static_only(SPEC + "tiny_lm", SHAPES, max_memory=1024)  # "does not fit" in 1 KiB
    assert huge.module is None


def test_deep_copies_of_an_initialised_layer_replay_its_init(tmp_path) -> None:
    """nn.TransformerEncoder deep-copies its initialised layer: each copy replays the writes its
    source had when copied, so every layer gets the distribution the full loader sees."""
    factory = tmp_path / "encoder.py"
    factory.write_text(
        "import torch\n\ndef build():\n"
        "    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)\n"
        "    return torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), (torch.randn(2, 5, 16),)\n"
    )
    meta, full = load_torch_meta(f"{factory}:build"), load_torch(f"{factory}:build")
    assert meta.warnings == []
    meta_stats, full_stats = _weights(meta), _weights(full)
    assert set(meta_stats) == set(full_stats) and any(name.startswith("layers.1.") for name in meta_stats)
    for name, stats in meta_stats.items():
        if stats.numel >= 256:  # a 16-element bias's RMS is too noisy a draw to compare
            assert stats.rms == pytest.approx(full_stats[name].rms, rel=0.15), name
        assert stats.std == 0 or full_stats[name].std > 0, name  # constant stays constant


def test_an_init_the_meta_device_never_saw_is_reported(tmp_path) -> None:
    """A parameter whose values were set where the recorder cannot see (here: a tensor made
    outside the factory, on meta, never written) has unknown statistics, and the handle says so."""
    factory = tmp_path / "unseen.py"
    factory.write_text(
        "import torch\n\nWEIGHT = torch.empty(8, 8, device='meta')\n\ndef build():\n"
        "    layer = torch.nn.Linear(8, 8)\n"
        "    layer.weight = torch.nn.Parameter(WEIGHT)\n"
        "    return layer, (torch.randn(2, 8),)\n"
    )
    notes = load_torch_meta(f"{factory}:build").warnings
    assert any("weight" in note and "statistics unknown" in note for note in notes), notes
