"""The property every hostile run must keep: exit 0, 1 or 2 only; exit 2 is one line without a
traceback; no file changes but the outputs the command asked for; no payload ran (its marker is
absent)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("\x1b", "\x07", "\r")  # escape and control bytes that must never reach a terminal


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    """`gradaudit ARGV` as a user runs it: its own process, its real stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "gradaudit", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def assert_clean(text: str) -> None:
    for sequence in FORBIDDEN:
        assert sequence not in text, f"{sequence!r} reached the terminal: {text!r}"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its content (hidden and temporary files included)."""
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_contained(code: int, err: str, before: dict[str, bytes], after: dict[str, bytes],
                     markers: Iterable[Path] = (), outputs: Iterable[Path] = ()) -> None:
    assert code in (0, 1, 2), err
    assert "Traceback" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    for marker in markers:
        assert not marker.exists(), f"the payload ran: {marker} exists"
    asked = {str(path) for path in outputs}
    assert {k: v for k, v in after.items() if k not in asked} == before
