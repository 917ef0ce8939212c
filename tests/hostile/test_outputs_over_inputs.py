"""No output of a run may be one of its inputs (gradaudit.output_guard).

Each case names, as a report or fixed-model path, a file the run reads: a model found by expanding
a folder, a model's external data file, the --data batch, the config file (given or found), the
baseline the config names, a factory's file; directly, through a symlink or through a hard link.
Every one must be refused before any work: exit 2, one line, no file changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from gradaudit.cli import main
from tests.hostile import models
from tests.hostile.untrusted import assert_contained, snapshot

FACTORY = '''import torch


def build():
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)), (torch.randn(2, 4),)
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A repository: a model folder (one model with external data), a batch, a config naming a
    baseline, a factory file; the run's working directory."""
    models_dir = tmp_path / "models" / "nested"
    models_dir.mkdir(parents=True)
    models.save(models.mlp(), models_dir / "plain.onnx")
    onnx.save_model(models.mlp(), str(models_dir / "external.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    np.save(tmp_path / "batch.npy", np.zeros((2, models.FEATURES), dtype=np.float32))
    (tmp_path / "pyproject.toml").write_text('[tool.gradaudit]\nbaseline = "recorded.json"\n')
    (tmp_path / "recorded.json").write_text('{"schema": "gradaudit.baseline/1", "findings": []}\n')
    (tmp_path / "factory.py").write_text(FACTORY)
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(capsys, project: Path, argv: list[str], words: str) -> None:
    before = snapshot(project)
    code = main(argv)
    err = capsys.readouterr().err
    assert_contained(code, err, before, snapshot(project))
    assert code == 2 and words in err, err


def hard_link(project: Path, target: str) -> str:
    link = project / "out" / "report.json"
    os.link(project / target, link)
    return str(link)


def sym_link(project: Path, target: str) -> str:
    link = project / "out" / "report.json"
    link.symlink_to(project / target)
    return str(link)


def same_path(project: Path, target: str) -> str:
    return str(project / target)


LINKS = {"same-path": same_path, "hard-link": hard_link, "symlink": sym_link}


@pytest.mark.parametrize("link", LINKS)
def test_a_report_over_a_model_found_in_a_folder(capsys, project: Path, link: str):
    report = LINKS[link](project, "models/nested/plain.onnx")
    refused(capsys, project, ["check", "models", "--json", report], "refusing to overwrite the input model")


@pytest.mark.parametrize("link", LINKS)
def test_a_report_over_external_data(capsys, project: Path, link: str):
    report = LINKS[link](project, "models/nested/weights.bin")
    refused(capsys, project, ["check", "models", "--html", report], "external data file")


@pytest.mark.parametrize("link", ["same-path", "hard-link"])
def test_fix_output_over_external_data(capsys, project: Path, link: str):
    output = LINKS[link](project, "models/nested/weights.bin")
    refused(capsys, project, ["fix", "models/nested/external.onnx", "-o", output], "external data file")


def test_fix_output_over_the_data_batch(capsys, project: Path):
    refused(capsys, project, ["fix", "models/nested/plain.onnx", "-o", "batch.npy", "--data", "batch.npy"],
            "--data batch")


def test_a_report_over_the_data_batch(capsys, project: Path):
    refused(capsys, project, ["check", "models", "--data", "batch.npy", "--junit", "batch.npy"], "--data batch")


def test_a_report_over_the_config_found(capsys, project: Path):
    refused(capsys, project, ["check", "models", "--sarif", "pyproject.toml"], "config file")


def test_a_report_over_the_config_given(capsys, project: Path):
    (project / "ci.toml").write_text("[tool.gradaudit]\n")
    refused(capsys, project, ["check", "models", "--config", "ci.toml", "--json", sym_link(project, "ci.toml")],
            "config file")


def test_a_report_over_the_baseline_read(capsys, project: Path):
    refused(capsys, project, ["check", "models", "--json", hard_link(project, "recorded.json")], "baseline")


def test_a_report_over_a_factory_file(capsys, project: Path):
    refused(capsys, project, ["check", "factory.py:build", "--json", "factory.py"], "factory file")


def test_two_reports_in_one_file(capsys, project: Path):
    refused(capsys, project, ["check", "models", "--json", "out/a", "--html", "out/a"], "name the same file")


def test_baseline_output_over_a_model_or_the_config(capsys, project: Path):
    refused(capsys, project, ["baseline", "models", "-o", "models/nested/external.onnx"], "input model")
    refused(capsys, project, ["baseline", "models", "-o", "pyproject.toml"], "config file")


def test_baseline_may_rewrite_the_baseline_it_does_not_read(capsys, project: Path):
    """`baseline` records findings; the file the config names is its usual output, not an input."""
    assert main(["baseline", "models", "-o", "recorded.json", "-q"]) == 0
    assert "gradaudit.baseline/1" in (project / "recorded.json").read_text()


def test_reports_beside_the_inputs_are_written(capsys, project: Path):
    code = main(["check", "models", "--data", "batch.npy", "-q", "--json", "models/nested/report.json"])
    assert code in (0, 1), capsys.readouterr().err
    assert (project / "models" / "nested" / "report.json").is_file()
