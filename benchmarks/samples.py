"""Every bundled sample through both routes: diagnosis, static vs measured first/last ratio.

Usage: python benchmarks/samples.py
Prints one row per sample and route, and the largest static-vs-measured gap.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gradaudit import gate  # noqa: E402
from gradaudit.loaders import load  # noqa: E402
from gradaudit.pipeline import AuditOptions, run_audit  # noqa: E402
from samples import SAMPLES  # noqa: E402


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def main() -> None:
    print(f"{'sample':<30}{'route':<6}{'diagnosis':<11}{'static':>8}{'measured':>10}{'gap':>7}{'exit':>6}{'secs':>7}")
    worst = 0.0
    for name in sorted(SAMPLES):
        for route, source in (("onnx", ROOT / "samples" / f"{name}.onnx"),
                              ("py", f"{ROOT / 'samples' / name}.py:build")):
            started = time.perf_counter()
            audit = run_audit(load(str(source)), AuditOptions())
            seconds = time.perf_counter() - started
            static, measured = audit.static.log10_ratio_first_last, audit.probe.log10_ratio_first_last
            gap = abs(static - measured) if static is not None and measured is not None else None
            worst = max(worst, gap or 0.0)
            print(f"{name:<30}{route:<6}{audit.diagnosis.label:<11}{_fmt(static):>8}{_fmt(measured):>10}"
                  f"{'n/a' if gap is None else f'{gap:.2f}':>7}{gate.exit_code(audit.findings):>6}{seconds:>7.2f}")
    print(f"largest static-vs-measured gap: {worst:.2f} decades")


if __name__ == "__main__":
    main()
