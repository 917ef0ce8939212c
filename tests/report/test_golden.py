"""Golden files for the text, JSON and HTML reports.

Each fixture audit is rendered and compared with tests/report/golden/<fixture>.<ext>. Volatile
parts are scrubbed first: the tool version becomes `X.Y.Z` and timings are fixed in the input.
After an intended change to a renderer or template, regenerate the files and review the diff:

    GRADAUDIT_UPDATE_GOLDEN=1 pytest tests/report
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from gradaudit.report import Format, render
from gradaudit.report.common import tool_version
from tests.report import fixtures

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("GRADAUDIT_UPDATE_GOLDEN") == "1"
EXTENSIONS = {Format.TEXT: "txt", Format.JSON: "json", Format.HTML: "html"}
CASES = [
    ("unhealthy", Format.TEXT), ("unhealthy", Format.JSON), ("unhealthy", Format.HTML),
    ("healthy", Format.TEXT), ("healthy", Format.JSON),
    ("probe_skipped", Format.TEXT), ("probe_skipped", Format.JSON),
]


def scrubbed(name: str, fmt: Format) -> str:
    audit = getattr(fixtures, f"{name}_audit")()
    audit = dataclasses.replace(audit, timing={key: 0.5 for key in audit.timing})
    version = tool_version()
    text = render(audit, fmt)
    return text.replace(f'"version": "{version}"', '"version": "X.Y.Z"').replace(
        f'"version":"{version}"', '"version":"X.Y.Z"').replace(f"gradaudit {version}", "gradaudit X.Y.Z")


@pytest.mark.parametrize(("name", "fmt"), CASES, ids=[f"{n}-{f.value}" for n, f in CASES])
def test_matches_golden(name: str, fmt: Format):
    path = GOLDEN / f"{name}.{EXTENSIONS[fmt]}"
    actual = scrubbed(name, fmt)
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run GRADAUDIT_UPDATE_GOLDEN=1 pytest tests/report"
    assert actual == path.read_text(encoding="utf-8"), f"{path.name} changed; review, then update the golden files"
