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
