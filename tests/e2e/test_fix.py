"""`gradaudit fix` and `check --verify` on every unhealthy sample: a verified cure, a new healthy file."""

import hashlib
import json
from pathlib import Path

import onnx
import pytest

from gradaudit.pipeline import AuditOptions
from gradaudit.cli import main
from gradaudit.fixer import fix_onnx

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
UNHEALTHY = sorted(SAMPLES.glob("exploding_*.onnx")) + sorted(SAMPLES.glob("vanishing_*.onnx"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("sample", UNHEALTHY, ids=lambda p: p.stem)
def test_fix_writes_a_healthy_model_from_a_verified_cure(sample, tmp_path):
    before_digest = _digest(sample)
    output = tmp_path / f"{sample.stem}.fixed.onnx"
    result = fix_onnx(str(sample), str(output), AuditOptions())
    assert result.before.diagnosis.label != "healthy"
    cures = [r for r in result.before.recommendations
             if r.verified and r.verified["helped"] and r.verified["diagnosis_after"] == "healthy"]
    assert cures, [r.verified for r in result.before.recommendations]
    assert result.applied and all(r.verified["helped"] for r in result.applied)
    onnx.checker.check_model(onnx.load(str(output)))
    assert result.after.diagnosis.label == "healthy"
    assert _digest(sample) == before_digest  # the input is never touched


def test_fix_command_exit_code_and_refusal_to_overwrite(tmp_path, capsys):
    sample = SAMPLES / "vanishing_relu_default_init.onnx"
    assert main(["fix", str(sample), "-o", str(sample)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    output = tmp_path / "fixed.onnx"
    assert main(["fix", str(sample), "-o", str(output)]) == 0
    assert "vanishing -> healthy" in capsys.readouterr().err
    assert main(["check", str(output), "-q"]) in (0, 1)
    assert "healthy" in capsys.readouterr().out


def test_check_verify_reports_before_after_in_json(tmp_path, capsys):
    sample = SAMPLES / "exploding_residual_stack.onnx"
    report = tmp_path / "audit.json"
    main(["check", str(sample), "--verify", "--json", str(report), "-q"])
    recs = json.loads(report.read_text())["recommendations"]
    verified = [r["verified"] for r in recs if r["verified"]]
    assert {"log10_ratio_before", "log10_ratio_after", "diagnosis_before", "diagnosis_after", "helped"} <= set(verified[0])
    assert any(v["helped"] for v in verified) and any(not v["helped"] for v in verified)  # failures stay failures


def test_fix_prints_a_patch_for_a_factory(capsys):
    assert main(["fix", f"{SAMPLES / 'vanishing_relu_default_init.py'}:build"]) == 0
    out, err = capsys.readouterr()
    assert "paste after the model is built" in out and ".mul_(factor)" in out
    compile(out, "<patch>", "exec")
    assert "vanishing -> healthy" in err


def test_fix_html_compares_the_model_before_and_after_on_one_chart(tmp_path, capsys):
    sample = SAMPLES / "vanishing_relu_default_init.onnx"
    output, report = tmp_path / "fixed.onnx", tmp_path / "fix.html"
    assert main(["fix", str(sample), "-o", str(output), "--html", str(report)]) == 0
    html = report.read_text(encoding="utf-8")
    assert '<div class="compare-chart">' in html  # the comparison view of `check A B --html`
    pages = json.loads(html.split('class="gradaudit-data">', 1)[1].split("</script>", 1)[0])
    assert [page["report"]["model"]["source"] for page in pages] == [str(sample), str(output)]
    assert [page["report"]["diagnosis"] for page in pages] == ["vanishing", "healthy"]
