"""The accuracy benchmark's quick subset (benchmarks/static_vs_probe.py) must meet its targets.

Eight models spanning the corpus's families, one seed: static log10_ratio_first_last against
the probe's, mean absolute error <= 0.5 decades, every model within 1 decade, and the static
diagnosis equal to the measured one.
"""

from benchmarks.static_vs_probe import CORPUS, QUICK, run, summarise


def test_quick_corpus_meets_accuracy_targets():
    cases = [case for case in CORPUS if case.name in QUICK]
    assert len(cases) == len(QUICK)
    summary = summarise(run(cases, seeds=1))
    assert summary.mae <= 0.5
    assert summary.within_decade >= 0.95
    assert summary.agreement >= 0.95


def test_selection_and_written_out_norms_match_the_probe():
    """A head on the class token alone (the gradient reaches one position of 64) and Llama's
    RMSNorm written as calls: each within 0.3 decades of real backward passes (they were 1.0
    and a signal collapse before the reshape rule counted selection and the norm was matched)."""
    cases = [case for case in CORPUS if case.name in ("vit4-preln-class-token", "res16-written-rmsnorm")]
    rows = run(cases, seeds=1)
    assert len(rows) == 2 and all(row.error <= 0.3 and row.static_diagnosis == row.measured_diagnosis for row in rows)
