"""Escape and control sequences from a model never reach the terminal: real CLI, real output.

Node names, op types and attribute names carrying ESC [ 31m, ESC ] ... BEL, CR and BEL go through
`python -m gradaudit check` in a subprocess; stdout and stderr must hold none of those bytes
(the CLI is not on a terminal here, so gradaudit itself adds no colour codes).
"""

from __future__ import annotations

from pathlib import Path

from onnx import helper

from tests.hostile import hostile_names, models
from tests.hostile.untrusted import assert_clean, run_cli


def test_report_and_errors_strip_escapes_from_the_model(tmp_path: Path):
    named = models.save(hostile_names.probed_model(hostile_names.TERMINAL), tmp_path / "names.onnx")
    custom = models.save(hostile_names.unsupported_op_model(hostile_names.TERMINAL[0]), tmp_path / "op.onnx")
    result = run_cli("check", str(named), str(custom))
    assert result.returncode in (0, 1), result.stderr
    assert "red" in result.stdout and "bell" in result.stdout  # the names are shown, cleaned
    assert_clean(result.stdout)
    assert_clean(result.stderr)


def test_error_line_quoting_a_model_string_is_clean(tmp_path: Path):
    """The ONNX checker's message quotes the unknown attribute's name verbatim."""
    model = models.mlp()
    model.graph.node[1].attribute.append(helper.make_attribute("\x1b[31mevil\x07\rname", 1))
    result = run_cli("check", str(models.save(model, tmp_path / "attr.onnx")))
    assert result.returncode == 2
    assert "evil" in result.stderr
    assert_clean(result.stderr)
