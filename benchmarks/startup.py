"""Start-up time of the commands that need no model: `--help`, `rules`, `explain GA101`.

Usage: python benchmarks/startup.py [--repeats 5]

Each command runs `--repeats` times as `python -m gradaudit ...` in a fresh interpreter; the
table prints the median wall time, the same for a bare `python -c pass` (the interpreter's own
start, which no tool can avoid), their difference, and whether torch was imported (checked with
`python -X importtime`, which lists every module an interpreter imports). Target: <= 0.3 s and
no torch.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (("--help",), ("rules",), ("explain", "GA101"))
TARGET_S = 0.3


def imported_modules(args: tuple[str, ...]) -> set[str]:
    """Top-level names of every module `python -m gradaudit ARGS` imports (from -X importtime)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "gradaudit", *args],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def wall_time(command: list[str], repeats: int) -> float:
    """Median seconds of a fresh interpreter running `command`."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, cwd=ROOT, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bare = wall_time([sys.executable, "-c", "pass"], args.repeats)
    print(f"median of {args.repeats}; bare interpreter start {bare:.3f} s; target <= {TARGET_S} s without torch")
    print(f"{'command':<28}{'wall_s':>8}{'minus bare':>12}{'torch':>7}")
    for command in COMMANDS:
        seconds = wall_time([sys.executable, "-m", "gradaudit", *command], args.repeats)
        torch = "torch" in imported_modules(command)
        status = "" if seconds <= TARGET_S and not torch else "  (over target)"
        print(f"{'gradaudit ' + ' '.join(command):<28}{seconds:>8.3f}{seconds - bare:>12.3f}"
              f"{'yes' if torch else 'no':>7}{status}")


if __name__ == "__main__":
    main()
