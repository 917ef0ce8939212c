"""Regenerate the README's screenshots of the HTML report: the bundled unhealthy and healthy samples.

    python docs/screenshots.py            # writes docs/screenshots/{unhealthy,healthy}.png

Each sample is audited with the command line (`gradaudit check SAMPLE --verify --html ...`), and
the report (titled with the path relative to the checkout, as the README runs it) is photographed by headless Chromium (Debian's `chromium` on PATH) at 1400x900, the
first screen a reader sees. Exits 2 with one line when chromium is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
SAMPLES = {"unhealthy": "exploding_residual_stack.onnx", "healthy": "healthy_mlp_kaiming.onnx"}
WIDTH, HEIGHT = 1400, 900
HEADLESS_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--hide-scrollbars"]


def report_html(sample: str, folder: Path) -> Path:
    """The HTML report of one bundled sample, written by the command line as a user would."""
    report = folder / f"{Path(sample).stem}.html"
    command = [sys.executable, "-m", "gradaudit", "check", f"samples/{sample}", "--verify",
               "--html", str(report), "--quiet"]
    subprocess.run(command, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)  # exit 1 is the unhealthy verdict
    if not report.is_file():
        raise SystemExit(f"error: gradaudit wrote no report for {sample}")
    return report


def screenshot(page: Path, target: Path, browser: str, folder: Path) -> None:
    """A WIDTHxHEIGHT PNG of `page` as it first appears, taken with a fresh, empty profile."""
    profile = Path(tempfile.mkdtemp(dir=folder))
    subprocess.run([browser, *HEADLESS_FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
                    f"--screenshot={target}", page.as_uri()], check=True, capture_output=True, timeout=120)


def main() -> int:
    browser = shutil.which("chromium")
    if browser is None:
        print("error: chromium is not on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for name, sample in SAMPLES.items():
            screenshot(report_html(sample, Path(scratch)), OUT / f"{name}.png", browser, Path(scratch))
            print(OUT / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
