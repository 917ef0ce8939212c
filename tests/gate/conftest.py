"""Fixtures of the CI-gate tests: the CLI through `main(argv)`, run from a clean folder.

Every test starts in its own empty working directory with no GRADAUDIT_* or NO_COLOR variable,
so neither the checkout's pyproject.toml nor the developer's environment leaks into a test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest

from gradaudit.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
HEALTHY = SAMPLES / "healthy_mlp_kaiming.onnx"
EXPLODING = SAMPLES / "exploding_mlp_normal_init.onnx"
VANISHING_RELU = SAMPLES / "vanishing_relu_default_init.onnx"  # errors GA102 GA104 GA201, warnings GA301 GA401
VANISHING_SIGMOID = SAMPLES / "vanishing_sigmoid_mlp.onnx"  # its GA104 layer list changes with the seed

CliRun = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("GRADAUDIT_") or name == "NO_COLOR":
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRun:
    """Run `gradaudit ARGS` in-process; return (exit code, stdout, stderr)."""

    def run(*argv: object) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def finding_codes(json_text: str) -> set[str]:
    """The codes among the findings of a JSON report of one model."""
    return {finding["code"] for finding in json.loads(json_text)["findings"]}


def write_config(folder: Path, body: str, name: str = "pyproject.toml") -> Path:
    """A TOML file holding `body` as its [tool.gradaudit] table."""
    path = folder / name
    path.write_text("[tool.gradaudit]\n" + body + "\n", encoding="utf-8")
    return path
