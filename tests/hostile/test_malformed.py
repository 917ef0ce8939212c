"""Broken model files through the real CLI: one clear line and exit 2, never a traceback or exit 3.

A valid but unhealthy model (NaN weights) is a finding instead; a 10,000-node graph runs in
bounded time; declared sizes of 10^12 elements are refused before anything is allocated.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import onnx
import pytest

from gradaudit.cli import main
from tests.hostile import models

PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_input_error(code: int, err: str, *words: str) -> None:
    """Exit 2 and exactly one `gradaudit: error:` line that contains every word."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("gradaudit: error:"), err
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


def _bytes_file(data: bytes, name: str):
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return make


def _model_file(build, name: str = "model.onnx"):
    return lambda folder: models.save(build(), folder / name)


def _truncated(folder: Path) -> Path:
    data = models.mlp().SerializeToString()
    return _bytes_file(data[: len(data) // 2], "cut.onnx")(folder)


def _directory(folder: Path) -> Path:
    (folder / "looks_like.onnx").mkdir()
    return folder / "looks_like.onnx"


MALFORMED = {
    "empty-file": (_bytes_file(b"", "empty.onnx"), ["empty"]),
    "random-bytes": (_bytes_file(bytes(range(256)) * 16, "noise.onnx"), ["not a readable onnx model"]),
    "truncated-protobuf": (_truncated, ["not a readable onnx model"]),
    "directory": (_directory, ["directory"]),
    "text-file": (_bytes_file(b"just some notes\n", "notes.txt"), ["not a readable onnx model"]),
    "png-renamed-onnx": (_bytes_file(PNG_HEADER + bytes(64), "picture.onnx"), ["not a readable onnx model"]),
    "cycle": (_model_file(models.with_cycle), ["cycle", "'add'", "'loop_back'"]),
    "dangling-input": (_model_file(models.with_dangling_input), ["'W_missing'", "no graph input, initializer"]),
    "missing-output": (_model_file(models.with_missing_output), ["'z_never_made'", "not defined"]),
    "duplicate-node-output": (_model_file(models.with_duplicate_output), ["'y'", "defined twice"]),
    "duplicate-initializer": (_model_file(models.with_duplicate_initializer), ["'W1'", "defined twice"]),
    "opset-too-new": (_model_file(lambda: models.with_opset(99)), ["opset 99", "supports opsets"]),
    "opset-too-old": (_model_file(lambda: models.with_opset(3)), ["opset 3", "supports opsets"]),
    "huge-input": (_model_file(models.with_huge_input), ["'x'", "3.6 TiB", "memory cap"]),
    "huge-constant": (_model_file(models.with_huge_constant), ["'big'", "3.6 TiB", "memory cap"]),
    "zero-size-weight": (_model_file(models.with_empty_weight), ["no floating-point output"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_model_is_one_line_and_exit_2(capsys, tmp_path: Path, case: str):
    make, words = MALFORMED[case]
    path = make(tmp_path)
    started = time.perf_counter()
    code, out, err = run(capsys, "check", str(path))
    assert_input_error(code, err, *words)
    assert out == ""
    assert time.perf_counter() - started < 20  # refused up front, not after a long run


def test_memory_cap_refuses_a_model_under_a_lowered_cap_and_passes_it_when_raised(capsys, tmp_path: Path):
    path = models.save(models.mlp(), tmp_path / "small.onnx")
    code, _, err = run(capsys, "check", str(path), "--max-memory", "256")
    assert_input_error(code, err, "memory cap of 256 B")
    code, _, err = run(capsys, "check", str(path), "--max-memory", "1M")
    assert code == 0, err


def test_static_only_leaves_weights_in_the_file_so_a_cap_below_their_size_still_passes(capsys, tmp_path: Path):
    """Static-only holds no activations and maps the weights (loaders.onnx_weights): only the
    constants it materialises count against the cap."""
    wide = (models.weight("W1", cols=4096, seed=1), models.weight("W2", rows=4096, seed=2))  # large: mapped
    path = models.save(models.mlp(wide), tmp_path / "wide.onnx")
    weight_bytes = sum(4 * math.prod(t.dims) for t in onnx.load(str(path)).graph.initializer)
    code, _, err = run(capsys, "check", str(path), "--max-memory", str(weight_bytes // 2), "--static-only")
    assert code in (0, 1), err
    code, _, err = run(capsys, "check", str(path), "--max-memory", str(weight_bytes // 2))
    assert_input_error(code, err, "memory cap")


def test_bad_max_memory_value_is_a_usage_error(capsys, tmp_path: Path):
    path = models.save(models.mlp(), tmp_path / "small.onnx")
    code, _, err = run(capsys, "check", str(path), "--max-memory", "lots")
    assert code == 2 and "--max-memory" in err and "Traceback" not in err


def test_huge_input_shape_on_the_command_line_is_refused_before_allocating(capsys, tmp_path: Path):
    path = models.save(models.mlp(input_shape=("N", "F")), tmp_path / "symbolic.onnx")
    code, _, err = run(capsys, "check", str(path), "--input-shape", "1000000,1000000")
    assert_input_error(code, err, "memory cap")


def test_nonfinite_weights_are_a_finding_and_the_audit_completes(capsys, tmp_path: Path):
    path = models.save(models.with_nonfinite_weights(), tmp_path / "nan.onnx")
    code, out, err = run(capsys, "check", str(path), "--format", "json")
    assert code == 1, err  # the gate fails on a finding, not an error
    report = json.loads(out)
    assert "GA202" in {finding["code"] for finding in report["findings"]}
    assert report["diagnosis"] == "exploding"


def test_zero_batch_dimension_is_treated_as_symbolic(capsys, tmp_path: Path):
    """Some exporters write 0 for an unknown dim; the probe then uses --batch rows."""
    path = models.save(models.mlp(input_shape=(0, models.FEATURES)), tmp_path / "zero.onnx")
    code, out, err = run(capsys, "check", str(path), "--format", "json", "--batch", "3")
    assert code in (0, 1), err
    assert json.loads(out)["gradient_flow"]["dynamic"]["passes"] >= 1


def test_ten_thousand_node_graph_runs_in_bounded_time(capsys, tmp_path: Path):
    path = models.save(models.deep_chain(10_000), tmp_path / "deep.onnx")
    started = time.perf_counter()
    code, out, err = run(capsys, "check", str(path), "--format", "json", "--passes", "1")
    elapsed = time.perf_counter() - started
    assert code in (0, 1), err
    assert json.loads(out)["gradient_flow"]["dynamic"]["passes"] == 1
    assert elapsed < 30, f"{elapsed:.1f}s for 10,000 nodes"


def test_huge_input_shape_for_a_torch_factory_is_refused_before_allocating(capsys, tmp_path: Path):
    factory = tmp_path / "net.py"
    factory.write_text("import torch\n\ndef build():\n    return torch.nn.Linear(4, 2)\n")
    code, _, err = run(capsys, "check", f"{factory}:build", "--input-shape", "1000000,1000000")
    assert_input_error(code, err, "the inputs of shape (1000000, 1000000)", "7.3 TiB", "memory cap")
