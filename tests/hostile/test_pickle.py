"""Pickled `.pt/.pth` files: nothing in them runs unless the user says `--trust`.

The malicious file's payload is a `__reduce__` that opens (creates) a marker file when unpickled.
Without --trust the marker must not exist afterwards; with --trust it does, which proves the
payload is live and the refusal is what kept it from running.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gradaudit.cli import main


class CreatesMarker:
    """Unpickling this object calls open(marker, "w"): arbitrary code by the pickle protocol."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main([*argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_malicious_pickle_runs_nothing_without_trust(capsys, tmp_path: Path, suffix: str):
    marker = tmp_path / "pwned"
    path = tmp_path / f"model{suffix}"
    torch.save(CreatesMarker(marker), path)
    code, err = run(capsys, "check", str(path), "--input-shape", "2,4")
    assert code == 2 and "Traceback" not in err
    assert "unpickling runs arbitrary code" in err and "--trust" in err
    assert not marker.exists()

    code, err = run(capsys, "check", str(path), "--input-shape", "2,4", "--trust")
    assert marker.exists()  # the payload is real: trusting the file ran it
    assert code == 2 and "not a torch.nn.Module" in err


def test_whole_pickled_module_is_refused_without_trust_and_audited_with_it(capsys, tmp_path: Path):
    path = tmp_path / "mlp.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)), path)
    code, err = run(capsys, "check", str(path), "--input-shape", "2,4", "-q")
    assert code == 2 and "pickled object" in err and "--trust" in err
    code, err = run(capsys, "check", str(path), "--input-shape", "2,4", "-q", "--trust")
    assert code in (0, 1), err


def test_state_dict_is_read_with_weights_only(capsys, tmp_path: Path, monkeypatch):
    path = tmp_path / "weights.pth"
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    code, err = run(capsys, "check", str(path), "--input-shape", "2,4")
    assert code == 2 and "state dict" in err
    assert calls and all(call.get("weights_only") is True for call in calls)
