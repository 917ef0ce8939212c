"""Regenerate the README's screenshots of the HTML report: the bundled unhealthy and healthy samples,
in English and in Simplified Chinese.

    python docs/screenshots.py   # docs/screenshots/{unhealthy,healthy}.png and {unhealthy,healthy}.zh.png

Each sample is audited with the command line (`gradaudit check SAMPLE --verify --lang LANG --html
...`), and the report (titled with the path relative to the checkout, as the README runs it) is
photographed by headless Chromium (Debian's `chromium` on PATH) at 1400x900, the first screen a
reader sees. Exits 2 with one line when chromium is missing, or when no font with Chinese glyphs
is installed (`fc-list :lang=zh` lists none; apt-get install fonts-noto-cjk), since the Chinese
screenshots would show empty boxes.
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
LANGUAGES = {"en": "", "zh": ".zh"}  # language -> the suffix of its screenshots' names
WIDTH, HEIGHT = 1400, 900
HEADLESS_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--hide-scrollbars"]


def report_html(sample: str, lang: str, folder: Path) -> Path:
    """The HTML report of one bundled sample in `lang`, written by the command line as a user would."""
    report = folder / f"{Path(sample).stem}.{lang}.html"
    command = [sys.executable, "-m", "gradaudit", "check", f"samples/{sample}", "--verify", "--lang", lang,
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


def has_chinese_font() -> bool:
    """Is a font with Chinese glyphs installed (fontconfig, which Chromium reads on Linux)?"""
    listing = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False)
    return bool(listing.stdout.strip())


def main() -> int:
    browser = shutil.which("chromium")
    if browser is None:
        print("error: chromium is not on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    if not shutil.which("fc-list") or not has_chinese_font():
        print("error: no font with Chinese glyphs is installed (apt-get install fonts-noto-cjk)", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for lang, suffix in LANGUAGES.items():
            for name, sample in SAMPLES.items():
                target = OUT / f"{name}{suffix}.png"
                screenshot(report_html(sample, lang, Path(scratch)), target, browser, Path(scratch))
                print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
