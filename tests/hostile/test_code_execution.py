"""Loading a model runs nothing it carries unless the user says --trust.

Each hostile `.pt2` plants a payload in one part torch.export.load would run (tests/hostile/
archives.py); a TorchScript file's forward overwrites a file it names. Without --trust the run
keeps the hostile-input property (tests/hostile/untrusted.py) and the marker never appears. Where
torch's own loader would run the payload, the same file with --trust does create the marker: the
payload is live, so the refusal (or the checked copy) is what kept it from running.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gradaudit.cli import main
from tests.hostile import archives
from tests.hostile.untrusted import assert_contained, snapshot

# payloads torch.export.load runs with --trust, before or during the load-time forward pass
LIVE_WITH_TRUST = {"sample-inputs-pickle", "weight-use-pickle", "sympify-expression", "guards-code"}
# what gradaudit's checked copy drops instead of refusing: the model still loads and is audited
DROPPED = {"sample-inputs-pickle", "guards-code"}


def check(capsys, model: Path, *extra: str) -> tuple[int, str]:
    code = main(["check", str(model), "--input-shape", archives.INPUT_SHAPE, "-q", *extra])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> Path:
    return archives.exported(tmp_path_factory.mktemp("genuine") / "model.pt2")


def test_a_genuine_export_loads_without_trust(capsys, genuine: Path):
    before = snapshot(genuine.parent)
    code, err = check(capsys, genuine)
    assert code in (0, 1), err
    assert snapshot(genuine.parent) == before


def test_a_dynamic_shape_export_loads_without_trust(capsys, tmp_path: Path):
    code, err = check(capsys, archives.exported(tmp_path / "model.pt2", dynamic_batch=True), "--batch", "5")
    assert code in (0, 1), err


@pytest.mark.parametrize("case", sorted(archives.hostile_changes(Path("unused"))))
def test_a_hostile_pt2_runs_nothing_without_trust(capsys, tmp_path: Path, genuine: Path, case: str):
    marker = tmp_path.parent / f"{tmp_path.name}-pwned"  # outside the model's folder
    folder = tmp_path / "models"
    folder.mkdir()
    model = archives.rewritten(genuine, folder / "model.pt2", archives.hostile_changes(marker)[case])
    before = snapshot(folder)
    code, err = check(capsys, model)
    assert_contained(code, err, before, snapshot(folder), markers=[marker])
    if case in DROPPED:
        assert code in (0, 1), err
    else:
        assert code == 2 and "--trust" in err, err

    if case in LIVE_WITH_TRUST:
        check(capsys, model, "--trust")
        assert marker.exists(), "the payload should be live under --trust"
        marker.unlink()


def test_two_members_of_one_name_are_refused(capsys, tmp_path: Path, genuine: Path):
    marker = tmp_path.parent / f"{tmp_path.name}-pwned"
    folder = tmp_path / "models"
    folder.mkdir()
    model = archives.with_duplicate_graph(genuine, folder / "model.pt2", marker)
    before = snapshot(folder)
    code, err = check(capsys, model)
    assert_contained(code, err, before, snapshot(folder), markers=[marker])
    assert code == 2 and "same name" in err


def test_torchscript_is_refused_without_trust(capsys, tmp_path: Path):
    target = tmp_path / "victim.bin"
    target.write_bytes(bytes(8))
    model = archives.scripted_writer(tmp_path / "scripted.pt", target)
    before = snapshot(tmp_path)
    code, err = check(capsys, model)
    assert_contained(code, err, before, snapshot(tmp_path))
    assert code == 2 and "TorchScript" in err and "--trust" in err
    assert target.read_bytes() == bytes(8)

    code, err = check(capsys, model, "--trust")
    assert code in (0, 1), err
    assert target.read_bytes() == b"A" * 8  # the forward is live: trusting the file let it write
