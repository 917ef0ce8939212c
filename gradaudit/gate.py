"""The CI gate: verdict and exit code as pure functions of the findings (DESIGN.md, exit codes).

`verdict` describes the model (fail: an error finding; warn: a warning; pass: neither) whatever
the gate's threshold; `exit_code` applies the user's `--fail-on` to it.
"""

from __future__ import annotations

from typing import Iterable

from gradaudit.results import Finding, Severity

FAIL_ON_CHOICES = ("error", "warning", "never")

EXIT_PASS = 0
EXIT_GATE_FAILED = 1
EXIT_INPUT_ERROR = 2
EXIT_INTERNAL_ERROR = 3


def verdict(findings: Iterable[Finding]) -> str:
    worst = max((Severity.rank(f.severity) for f in findings), default=Severity.INFO)
    return "fail" if worst >= Severity.ERROR else "warn" if worst >= Severity.WARNING else "pass"


def exit_code(findings: Iterable[Finding], fail_on: str = "error") -> int:
    """1 when any finding is at or above `fail_on` ("never" always passes), else 0."""
    if fail_on not in FAIL_ON_CHOICES:
        raise ValueError(f"fail_on must be one of {FAIL_ON_CHOICES}, not {fail_on!r}")
    if fail_on == "never":
        return EXIT_PASS
    threshold = Severity.rank(fail_on)
    failed = any(Severity.rank(f.severity) >= threshold for f in findings)
    return EXIT_GATE_FAILED if failed else EXIT_PASS
