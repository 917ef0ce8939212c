"""Files: nothing beside or over the input model, reports only where asked, none after a failure.

Each test lists the model's folder and the report folder before and after a run; the only
difference allowed is the report files the command line asked for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gradaudit.cli import main
from tests.hostile import models


def listing(*folders: Path) -> dict[str, bytes]:
    """Every file under the folders, with its content (hidden temp files included)."""
    return {str(p): p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    model_dir, out_dir = tmp_path / "model", tmp_path / "out"
    model_dir.mkdir()
    out_dir.mkdir()
    models.save(models.mlp(), model_dir / "mlp.onnx")
    return model_dir, out_dir


REPORT_FLAGS = ("--json", "--html", "--sarif", "--junit")


def report_args(out_dir: Path) -> list[str]:
    return [arg for flag in REPORT_FLAGS for arg in (flag, str(out_dir / f"audit.{flag[2:]}"))]


def test_a_run_writes_only_the_asked_reports(folders, capsys):
    model_dir, out_dir = folders
    before = listing(model_dir, out_dir)
    assert main(["check", str(model_dir / "mlp.onnx"), "-q", *report_args(out_dir)]) == 0
    after = listing(model_dir, out_dir)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing changed, model included
    assert sorted(set(after) - set(before)) == sorted(str(out_dir / f"audit.{flag[2:]}") for flag in REPORT_FLAGS)


def test_an_input_error_leaves_no_report(folders, capsys):
    model_dir, out_dir = folders
    broken = model_dir / "broken.onnx"
    models.save(models.with_cycle(), broken)
    before = listing(model_dir, out_dir)
    assert main(["check", str(broken), *report_args(out_dir)]) == 2
    assert listing(model_dir, out_dir) == before


def test_an_internal_error_midway_leaves_no_report(folders, capsys, monkeypatch):
    """The audit finishes, then the HTML renderer fails: no report of any format is written."""
    import dataclasses

    from gradaudit.report.formats import REPORT_FORMATS

    def broken_renderer(audits, *, color=False):
        raise RuntimeError("renderer blew up")

    monkeypatch.setitem(REPORT_FORMATS, "html", dataclasses.replace(REPORT_FORMATS["html"], render=broken_renderer))
    model_dir, out_dir = folders
    before = listing(model_dir, out_dir)
    assert main(["check", str(model_dir / "mlp.onnx"), *report_args(out_dir)]) == 3
    assert "renderer blew up" in capsys.readouterr().err
    assert listing(model_dir, out_dir) == before


def test_a_failing_write_leaves_no_temporary_file(folders, capsys, monkeypatch):
    import os

    def refuse_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse_rename)
    model_dir, out_dir = folders
    before = listing(model_dir, out_dir)
    assert main(["check", str(model_dir / "mlp.onnx"), "--json", str(out_dir / "audit.json")]) == 3
    assert listing(model_dir, out_dir) == before


@pytest.mark.parametrize("via_symlink", [False, True], ids=["same-path", "symlink-to-model"])
def test_a_report_path_that_is_the_model_is_refused(folders, capsys, via_symlink: bool):
    model_dir, out_dir = folders
    model = model_dir / "mlp.onnx"
    target = model
    if via_symlink:
        target = out_dir / "report.json"
        target.symlink_to(model)
    before = listing(model_dir, out_dir)
    assert main(["check", str(model), "--json", str(target)]) == 2
    assert "refusing to overwrite the input model" in capsys.readouterr().err
    assert listing(model_dir, out_dir) == before
