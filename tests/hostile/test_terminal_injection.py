"""Escape sequences from file names, arguments and `.pt2` strings never reach the terminal raw,
and libraries print nothing of their own (gradaudit.terminal).

The end-to-end cases run `python -m gradaudit` in a subprocess, so torch's own stderr log handlers
are the real ones; stdout and stderr must hold no ESC, BEL or CR and keep the hostile-input
property (tests/hostile/untrusted.py).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import pytest

from gradaudit import cli
from gradaudit.terminal import library_output_captured
from tests.hostile import archives, models
from tests.hostile.untrusted import assert_clean, assert_contained, run_cli, snapshot

HOSTILE = "\x1b]0;owned\x07\x1b[31mred\x1b[0m\rname"


@pytest.mark.parametrize("output", [["-q"], ["--format", "sarif"], ["--format", "junit"]], ids=lambda o: o[-1])
def test_every_output_cleans_a_hostile_file_name(tmp_path: Path, output: list[str]):
    model = models.save(models.mlp(), tmp_path / f"model{HOSTILE}.onnx")
    before = snapshot(tmp_path)
    result = run_cli("check", str(model), *output)
    assert_contained(result.returncode, result.stderr, before, snapshot(tmp_path))
    assert "redname" in result.stdout  # the name is shown, without its escapes
    assert_clean(result.stdout + result.stderr)


def test_progress_line_cleans_the_file_name(capsys):
    with cli._Progress(f"gradaudit: auditing {HOSTILE}.onnx", enabled=True):
        time.sleep(1.3)  # the line appears after one second
    err = capsys.readouterr().err
    assert "gradaudit: auditing redname.onnx" in err
    assert_clean(err.replace("\r\x1b[K", "").replace("\r", ""))  # the line's own return and erase stay


def test_torch_logger_quoting_a_pt2_string_is_silenced(tmp_path: Path):
    """With --trust, torch.export.load logs a traceback quoting the unresolvable target name."""
    def hostile_target(members):
        graph = json.loads(members[archives.GRAPH])
        graph["graph_module"]["graph"]["nodes"][0]["target"] = f"torch.ops.aten.{HOSTILE}.default"
        members[archives.GRAPH] = json.dumps(graph).encode()

    folder = tmp_path / "models"
    folder.mkdir()
    model = archives.rewritten(archives.exported(tmp_path / "model.pt2"), folder / "model.pt2", hostile_target)
    before = snapshot(folder)
    for extra in ([], ["--trust"]):
        result = run_cli("check", str(model), "--input-shape", archives.INPUT_SHAPE, *extra)
        assert_contained(result.returncode, result.stderr, before, snapshot(folder))
        assert result.returncode == 2
        assert_clean(result.stdout + result.stderr)


def test_usage_error_quoting_an_argument_is_clean():
    result = run_cli("check", f"--{HOSTILE}")
    assert result.returncode == 2 and "No such option" in result.stderr
    assert_clean(result.stderr)


def test_library_warnings_and_logs_are_captured(capsys):
    torch_logger = logging.getLogger("torch.export")  # has its own stderr handler once torch is imported
    with library_output_captured():
        warnings.warn_explicit(f"library says {HOSTILE}", UserWarning, "/site-packages/lib.py", 1)
        torch_logger.warning("logged %s", HOSTILE)
        logging.getLogger("onnx").error("logged %s", HOSTILE)
    err = capsys.readouterr().err
    assert "library says" not in err and "logged" not in err

    with library_output_captured(debug=True):
        warnings.warn_explicit(f"library says {HOSTILE}", UserWarning, "/site-packages/lib.py", 1)
    err = capsys.readouterr().err
    assert "library says" in err and "redname" in err and "(from lib.py)" in err
    assert_clean(err)


def test_gradaudit_own_warning_is_shown_cleaned(capsys):
    with library_output_captured():
        warnings.warn_explicit(f"remedy failed on {HOSTILE}", RuntimeWarning, cli.__file__, 1)
    err = capsys.readouterr().err
    assert err.startswith("gradaudit: warning: RuntimeWarning: remedy failed on ") and "redname" in err
    assert_clean(err)
    assert logging.root.manager.disable == logging.NOTSET  # logging is restored afterwards
