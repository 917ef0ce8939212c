"""Edits apply to a copy, verification re-measures, the planned run and --data reach the findings."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradaudit.loaders.torch_loader import from_module
from gradaudit.pipeline import AuditOptions, run_audit
from gradaudit.remedies.batch_file import read_batch
from gradaudit.remedies.edits import Edit, WeightRecommendation, apply, apply_edits
from gradaudit.remedies.verify import modified_handle


def _relu_mlp(depth: int, std: float) -> nn.Sequential:
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        linear = nn.Linear(32, 32)
        nn.init.normal_(linear.weight, std=std / math.sqrt(32))
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(32, 4))


def test_apply_changes_a_copy_only():
    model = _relu_mlp(2, 1.0)
    original = model[0].weight.detach().clone()
    rec = WeightRecommendation("reinitialization", ["0"], "", "", change="rescale",
                               edits=(Edit("scale", "0.weight", 3.0), Edit("fill", "0.bias", 0.5, (0, 4))))
    changed = apply(model, rec)
    assert torch.equal(model[0].weight, original)  # exact: the original must not be written
    assert torch.allclose(changed[0].weight, 3.0 * original)
    assert torch.all(changed[0].bias[:4] == 0.5) and torch.all(changed[0].bias[4:] == 0.0)  # exact: fill values


def test_prune_keeps_the_asked_share_of_weight_energy():
    model = _relu_mlp(1, 1.0)
    pruned = apply_edits(model, (Edit("prune", "0.weight", 0.5),))
    kept = float((pruned[0].weight.detach() ** 2).sum() / (model[0].weight.detach() ** 2).sum())
    assert 0.45 < kept <= 0.55 and float((pruned[0].weight == 0).float().mean()) > 0.5  # small weights go first


def test_modified_handle_refreshes_the_static_statistics():
    model = _relu_mlp(2, 1.0)
    handle = from_module(model, (torch.randn(8, 32),))
    changed = modified_handle(handle, (Edit("scale", "0.weight", 2.0),))

    def stats(h):
        return next(d["params"]["weight"] for _, d in h.graph.nodes(data=True)
                    if "weight" in d["params"] and d["params"]["weight"].name == "0.weight")

    assert stats(changed).rms == pytest.approx(2.0 * stats(handle).rms, rel=1e-5)
    assert stats(changed).row_sum_sq == pytest.approx(4.0 * stats(handle).row_sum_sq, rel=1e-5)


def test_verify_cures_a_vanishing_torch_mlp():
    audit = run_audit(from_module(_relu_mlp(24, 0.5), (torch.randn(16, 32),)), AuditOptions(verify=True))
    assert audit.diagnosis.label == "vanishing"
    verified = [r.verified for r in audit.recommendations if r.verified]
    assert any(v["helped"] and v["diagnosis_after"] == "healthy" for v in verified), verified


def test_planned_learning_rate_findings_and_recommendation():
    handle = from_module(_relu_mlp(3, math.sqrt(2.0)), (torch.randn(16, 32),))
    audit = run_audit(handle, AuditOptions(lr=10.0, optimizer="sgd"))
    codes = {f.code for f in audit.findings}
    assert {"GA601", "GA602"} <= codes
    diverges = next(f for f in audit.findings if f.code == "GA602")
    assert diverges.severity == "error" and "diverges in a trial run at step" in diverges.message
    assert diverges.evidence["limit"] == pytest.approx(2.0 / audit.probe.sharpness)
    lr_recs = [r for r in audit.recommendations if r.remedy == "lr_adaptation" and "peak learning rate" in r.action]
    assert lr_recs and lr_recs[0].verified["trains"]
    assert lr_recs[0].verified["recommended_lr"] < 10.0
    calm = run_audit(handle, AuditOptions(lr=1e-4, optimizer="adam"))
    assert not {"GA602"} & {f.code for f in calm.findings}


def test_data_batch_drives_input_recentring(tmp_path):
    path = tmp_path / "batch.npy"
    np.save(path, (np.random.default_rng(0).random((16, 32)) * 255).astype(np.float32))
    batch = read_batch(str(path))
    handle = from_module(_relu_mlp(2, math.sqrt(2.0)), (torch.randn(16, 32),))
    audit = run_audit(handle, AuditOptions(data=batch))
    finding = next(f for f in audit.findings if f.code == "GA603")
    assert finding.evidence["mean"] == pytest.approx(float(batch[0].mean()), rel=1e-3)
    assert any(r.remedy == "batch_shift" and "x - " in r.action for r in audit.recommendations)
    assert not any(f.code == "GA603" for f in run_audit(handle, AuditOptions()).findings)


def test_read_batch_formats_and_refusals(tmp_path):
    from gradaudit.errors import InputError

    first, second = np.ones((4, 3), np.float32), np.arange(4, dtype=np.int64)
    np.savez(tmp_path / "two.npz", first, second)
    torch.save((torch.zeros(2, 5), torch.ones(2)), tmp_path / "pair.pt")
    loaded = read_batch(str(tmp_path / "two.npz"))
    assert [tuple(t.shape) for t in loaded] == [(4, 3), (4,)] and loaded[1].dtype == torch.int64
    assert [tuple(t.shape) for t in read_batch(str(tmp_path / "pair.pt"))] == [(2, 5), (2,)]
    (tmp_path / "batch.csv").write_text("1,2\n")
    torch.save({"not": "a tensor"}, tmp_path / "dict.pt")
    for bad in ("batch.csv", "missing.npy", "dict.pt"):
        with pytest.raises(InputError):
            read_batch(str(tmp_path / bad))
