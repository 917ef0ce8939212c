"""The terminal report: order, limits, elision, colour only on request, no escape bytes."""

from __future__ import annotations

import dataclasses

from gradaudit.report import Format, render
from gradaudit.report.text_report import ACTION_WIDTH, MAX_FINDINGS, MAX_RECOMMENDATIONS, TABLE_EDGE_ROWS
from gradaudit.results import Finding
from tests.report import fixtures


def test_verdict_diagnosis_and_reasons_come_first():
    lines = render(fixtures.unhealthy_audit(), Format.TEXT).splitlines()
    assert lines[1].startswith("FAIL") and "vanishing" in lines[1]
    assert lines[2].startswith("  why: first/last gradient ratio")
    assert lines[3].startswith("model: onnx, 1,579,520 parameters, 24 weight layers, depth 24")


def test_errors_are_listed_before_warnings_and_info():
    text = render(fixtures.unhealthy_audit(), Format.TEXT)
    assert text.index("GA104") < text.index("GA402") < text.index("GA501")


def test_findings_are_capped_with_a_count_of_the_rest():
    extra = [Finding("GA501", "info", f"note {i}") for i in range(MAX_FINDINGS + 4)]
    audit = fixtures.unhealthy_audit()
    audit = dataclasses.replace(audit, findings=audit.findings + extra)
    text = render(audit, Format.TEXT)
    assert f"+{len(audit.findings) - MAX_FINDINGS} more" in text
    assert "GA104" in text


def test_long_layer_table_elides_the_middle_but_keeps_both_ends():
    text = render(fixtures.unhealthy_audit(), Format.TEXT)
    assert f"({24 - 2 * TABLE_EDGE_ROWS} layers not shown)" in text
    assert "layers.0 " in text and "layers.46" in text
    assert "layers.24 " not in text


def test_table_shows_predicted_and_measured_or_a_dash_when_not_probed():
    skipped = render(fixtures.probe_skipped_audit(), Format.TEXT)
    row = next(line for line in skipped.splitlines() if "layers.0 " in line)
    assert "-5.00" in row and "—" in row
    assert "probe skipped: unsupported ONNX operator(s): NonMaxSuppression" in skipped


def test_one_line_per_recommendation_with_verification():
    text = render(fixtures.unhealthy_audit(), Format.TEXT)
    line = next(line for line in text.splitlines() if line.startswith("  Re-initialisation:"))
    assert "verified: first/last 10^-4.8 → 10^-0.8" in line


def test_no_escape_bytes_without_colour_even_from_hostile_names():
    text = render(fixtures.hostile_audit(), Format.TEXT)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "redlayer" in text


def test_colour_is_ansi_and_only_ours():
    plain = render(fixtures.hostile_audit(), Format.TEXT)
    coloured = render(fixtures.hostile_audit(), Format.TEXT, color=True)
    assert "\x1b[1;31mFAIL\x1b[0m" in coloured
    assert "\x1b[2J" not in coloured and "\x1b]" not in coloured
    assert plain.count("\n") == coloured.count("\n")


def test_non_finite_layers_are_named_and_marked():
    text = render(fixtures.nonfinite_audit(), Format.TEXT)
    assert "non-finite values first in layers.4" in text
    rows = [line for line in text.splitlines() if line.strip().startswith(("2 ", "3 "))]
    assert len(rows) == 2 and all(row.endswith("non-finite") for row in rows)
    assert "nan" not in text.lower().replace("snan", "")


def test_recommendations_are_capped_and_each_stays_one_short_line():
    audit = fixtures.unhealthy_audit()
    long = dataclasses.replace(audit.recommendations[1], action="insert LayerNorm " * 40)
    audit = dataclasses.replace(audit, recommendations=[long] * (MAX_RECOMMENDATIONS + 2))
    lines = render(audit, Format.TEXT).splitlines()
    shown = [line for line in lines if line.startswith("  Normalization:")]
    assert len(shown) == MAX_RECOMMENDATIONS and "  +2 more (see --json or --html)" in lines
    assert all(len(line) < ACTION_WIDTH + 80 for line in shown)


def test_long_layer_names_keep_their_distinguishing_end():
    audit = fixtures.unhealthy_audit()
    for weight in audit.static.weights:
        weight.layer = "/encoder/blocks/very/long/prefix/" + weight.layer + "/Gemm"
    text = render(audit, Format.TEXT)
    assert "layers.46/Gemm" in text and "layers.44/Gemm" in text


TRIAL = {
    "lr": 0.01,
    "optimizer": "momentum",
    "steps": 50,
    "before": {"outcome": "diverges at step 3", "first_loss": 2.5e9, "last_loss": None, "losses": [2.5e9, 1e12, None]},
    "after": {"outcome": "trains", "first_loss": 1.7, "last_loss": 1.1, "losses": [1.7, 1.1]},
}


def test_the_best_change_shows_its_trial_training_before_and_after():
    audit = fixtures.unhealthy_audit()
    audit.recommendations[0].verified = dict(audit.recommendations[0].verified, trial=TRIAL)
    lines = render(audit, Format.TEXT).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  Re-initialisation:"))
    assert lines[at + 1] == ("    trial training (momentum, lr 0.01, 50 steps): loss 2.5e+09 → non-finite "
                             "(diverges at step 3) before, 1.7 → 1.1 (trains) after")
