"""Wall time of a full audit (load + static + 3-pass probe) of each onnx model-zoo graph.

Usage: python benchmarks/model_zoo.py [--passes 3]
Prints one row per graph: nodes, parameters, seconds per stage, diagnosis, verdict.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradaudit.loaders import load  # noqa: E402
from gradaudit.pipeline import AuditOptions, run_audit  # noqa: E402

LIGHT = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    print(f"{'model':<24}{'nodes':>7}{'params':>12}{'load_s':>8}{'static_s':>9}{'probe_s':>9}{'total_s':>9}  diagnosis "
          "/ verdict")
    for path in sorted(LIGHT.glob("light_*.onnx")):
        started = time.perf_counter()
        handle = load(str(path))
        options = AuditOptions(passes=args.passes)
        options.timing["load_s"] = time.perf_counter() - started
        audit = run_audit(handle, options)
        total = time.perf_counter() - started
        t = audit.timing
        print(f"{path.stem:<24}{handle.graph.number_of_nodes():>7}{audit.parameters:>12,}{t['load_s']:>8.2f}"
              f"{t['static_s']:>9.2f}{t['probe_s']:>9.2f}{total:>9.2f}  {audit.diagnosis.label} / {audit.verdict}")


if __name__ == "__main__":
    main()
