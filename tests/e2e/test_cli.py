"""End-to-end tests of the command line through `main(argv)` and through a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gradaudit.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and "gradaudit" in out


def test_rules_and_explain(capsys):
    code, out, _ = run(capsys, "rules")
    assert code == 0
    codes = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert len(codes) >= 10 and all(c.startswith("GA") for c in codes)
    code, out, _ = run(capsys, "explain", codes[0])
    assert code == 0 and len(out.splitlines()) > 3
    code, _, err = run(capsys, "explain", "GA999")
    assert code == 2 and "GA999" in err


def _assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in err.lower(), err


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: d / "missing.onnx", ["no such file"]),
        (lambda d: d, ["directory"]),
        (lambda d: (d / "junk.onnx").write_bytes(bytes(range(256)) * 8) and d / "junk.onnx", []),
        (lambda d: (d / "empty.onnx").write_bytes(b"") == 0 and d / "empty.onnx", []),
        (lambda d: (d / "cut.onnx").write_bytes((SAMPLES / "healthy_mlp_kaiming.onnx").read_bytes()[:300])
         and d / "cut.onnx", []),
    ],
    ids=["missing", "directory", "random-bytes", "empty", "truncated"],
)
def test_bad_model_files_exit_2_and_write_nothing(tmp_path, capsys, make, words):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    target = make(model_dir)
    report = tmp_path / "audit.html"
    code, _, err = run(capsys, "check", str(target), "--html", str(report))
    _assert_one_line_error(code, err, *words)
    assert not report.exists()


def test_bad_factory_specs(tmp_path, capsys):
    code, _, err = run(capsys, "check", "no_such_module_xyz:build")
    _assert_one_line_error(code, err, "no_such_module_xyz")
    code, _, err = run(capsys, "check", f"{SAMPLES / 'healthy_mlp_kaiming.py'}:nope")
    _assert_one_line_error(code, err, "nope")
    raising = tmp_path / "raising.py"
    raising.write_text("def build():\n    raise ValueError('broken factory')\n")
    code, _, err = run(capsys, "check", f"{raising}:build")
    _assert_one_line_error(code, err, "broken factory")


def test_input_shape_that_does_not_fit(tmp_path, capsys):
    factory = tmp_path / "plain.py"
    factory.write_text("import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(10, 4))\n")
    code, _, err = run(capsys, "check", f"{factory}:build", "--input-shape", "8,7")
    _assert_one_line_error(code, err, "shape")
    code, _, err = run(capsys, "check", f"{factory}:build", "--input-shape", "8,x")
    assert code == 2 and "Traceback" not in err


def test_refuses_to_overwrite_the_model(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes((SAMPLES / "healthy_mlp_kaiming.onnx").read_bytes())
    code, _, err = run(capsys, "check", str(model), "--json", str(model))
    _assert_one_line_error(code, err, "overwrite")
    assert model.read_bytes() == (SAMPLES / "healthy_mlp_kaiming.onnx").read_bytes()


def test_fail_on_levels(capsys):
    model = str(SAMPLES / "exploding_mlp_normal_init.onnx")
    assert run(capsys, "check", model, "--static-only")[0] == 1
    assert run(capsys, "check", model, "--static-only", "--fail-on", "never")[0] == 0


def test_subprocess_json_to_stdout():
    proc = subprocess.run(
        [sys.executable, "-m", "gradaudit", "check", str(SAMPLES / "healthy_mlp_kaiming.onnx"), "--format", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["schema"] == "gradaudit.report/1"
    assert report["diagnosis"] == "healthy"


def test_a_loss_the_factory_returns_drives_the_probe_and_the_trial_run(tmp_path, capsys):
    """Its curvature is 2000x the default squared error's, so lr 0.01 diverges only under it."""
    factory = tmp_path / "own_loss.py"
    factory.write_text(
        "import torch\n\n"
        "def steep(outputs, inputs):\n    return 1000.0 * outputs.square().mean()\n\n"
        "def build():\n    torch.manual_seed(0)\n"
        "    return torch.nn.Linear(4, 1), torch.randn(8, 4), steep\n\n"
        "def build_default():\n    torch.manual_seed(0)\n    return torch.nn.Linear(4, 1), torch.randn(8, 4)\n")
    reports = {}
    for name in ("build", "build_default"):
        out = tmp_path / f"{name}.json"
        main(["check", f"{factory}:{name}", "--lr", "0.01", "--trial-steps", "20", "--json", str(out)])
        capsys.readouterr()
        reports[name] = json.loads(out.read_text())
    own = next(f for f in reports["build"]["findings"] if f["code"] == "GA602")
    assert own["severity"] == "error" and "diverges in a trial run" in own["message"]
    assert own["evidence"]["loss"] == "model's own loss"
    assert "GA602" not in {f["code"] for f in reports["build_default"]["findings"]}


def test_a_factory_loss_that_is_not_callable_is_a_usage_error(tmp_path, capsys):
    factory = tmp_path / "bad_loss.py"
    factory.write_text("import torch\n\ndef build():\n    return torch.nn.Linear(4, 1), torch.randn(8, 4), 3\n")
    code, _, err = run(capsys, "check", f"{factory}:build")
    _assert_one_line_error(code, err, "not a callable")
