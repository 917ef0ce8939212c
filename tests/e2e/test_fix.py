"""`gradaudit fix` and `check --verify` on every unhealthy sample: a verified cure, a new healthy file."""

import hashlib
import json
from pathlib import Path

import onnx
import pytest

from gradaudit.cli import main
from gradaudit.fixer import fix_onnx
from gradaudit.pipeline import AuditOptions
from gradaudit.remedies.structure import restructured

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
UNHEALTHY = sorted(SAMPLES.glob("exploding_*.onnx")) + sorted(SAMPLES.glob("vanishing_*.onnx"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Only an architecture change cures these (BN undoes every rescale of a plain BN stack).
NEEDS_STRUCTURE = {"exploding_bn_plain_stack"}
# Its original trains in the trial as well: it vanishes through time, and the trial's loss falls
# through its depth of layers (its first layer moves as its head does).
TRAINS_UNFIXED = {"vanishing_lstm_closed_gate"}


@pytest.mark.parametrize("sample", UNHEALTHY, ids=lambda p: p.stem)
def test_fix_writes_a_healthy_model_from_a_verified_cure(sample, tmp_path):
    before_digest = _digest(sample)
    output = tmp_path / f"{sample.stem}.fixed.onnx"
    result = fix_onnx(str(sample), str(output), AuditOptions(), structural=True)
    assert result.before.diagnosis.label != "healthy"
    cures = [r for r in result.before.recommendations
             if r.verified and r.verified["helped"] and r.verified["diagnosis_after"] == "healthy"]
    assert cures, [r.verified for r in result.before.recommendations]
    assert (
        any(restructured(r) for r in cures)
        if sample.stem in NEEDS_STRUCTURE
        else any(not restructured(r) for r in cures)
    )
    assert result.applied and all(r.verified["helped"] for r in result.applied)
    written = onnx.load(str(output))
    onnx.checker.check_model(written)
    if sample.stem in NEEDS_STRUCTURE:  # scaled skips added, the norms kept
        ops = [node.op_type for node in written.graph.node]
        assert ops.count("Add") >= 40 and ops.count("BatchNormalization") == 50, [r.change for r in result.applied]
    assert result.after.diagnosis.label == "healthy"
    trial = result.applied[0].verified["trial"]  # the best change is the one whose trial trains
    assert trial["after"]["outcome"] == "trains"
    assert (trial["before"]["outcome"] == "trains") == (sample.stem in TRAINS_UNFIXED), trial["before"]["outcome"]
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
    main(["check", str(sample), "--verify", "--json", str(report), "-q", "--timeout", "3000"])  # a loaded CI machine
    recs = json.loads(report.read_text())["recommendations"]
    verified = [r["verified"] for r in recs if r["verified"]]
    assert {"log10_ratio_before", "log10_ratio_after", "diagnosis_before", "diagnosis_after", "helped"} <= set(
        verified[0]
    )
    assert any(v["helped"] for v in verified) and any(not v["helped"] for v in verified)  # failures stay failures
    (trial,) = [v["trial"] for v in verified if "trial" in v]  # the best change only
    assert trial["before"]["outcome"].startswith("diverges") and trial["after"]["outcome"] == "trains"
    assert (
        len(trial["after"]["losses"]) == trial["steps"] and trial["after"]["losses"][-1] < trial["after"]["losses"][0]
    )


def test_fix_structural_prints_a_definition_patch_for_a_factory(capsys):
    assert main(["fix", f"{SAMPLES / 'exploding_bn_plain_stack.py'}:build", "--structural", "--timeout", "3000"]) == 0
    out, err = capsys.readouterr()
    assert "graph rewrite(s)" in err
    assert "(add_skip) @@" in out and "# + ScaledSkip(" in out and "ScaledSkip(branch" in out
    compile(out, "<patch>", "exec")
    assert "exploding -> healthy" in err


def test_fix_html_compares_the_model_before_and_after_on_one_chart(tmp_path, capsys):
    sample = SAMPLES / "vanishing_relu_default_init.onnx"
    output, report = tmp_path / "fixed.onnx", tmp_path / "fix.html"
    assert main(["fix", str(sample), "-o", str(output), "--html", str(report)]) == 0
    html = report.read_text(encoding="utf-8")
    assert '<div class="compare-chart">' in html  # the comparison view of `check A B --html`
    pages = json.loads(html.split('class="gradaudit-data">', 1)[1].split("</script>", 1)[0])
    assert [page["report"]["model"]["source"] for page in pages] == [str(sample), str(output)]
    assert [page["report"]["diagnosis"] for page in pages] == ["vanishing", "healthy"]
