"""Baselines: record today's findings so the gate fails only on new ones.

A finding is matched by model + code + layers (`Finding.fingerprint`), never by its numbers, so a
baseline survives seed and library jitter (bandit and ruff baselines work the same way). The model
is keyed by its file name or factory spec, so a baseline written in one checkout works in another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from gradaudit.errors import InputError
from gradaudit.results import Audit, Finding

BASELINE_SCHEMA = "gradaudit.baseline/1"


def model_key(source: str) -> str:
    """A checkout-independent name for a model: the file name, or the factory spec's target."""
    target, sep, attr = source.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{Path(target).name}:{attr}"
    return Path(source).name if not sep else source


def to_json(audits: Iterable[Audit]) -> str:
    entries = []
    for audit in audits:
        key = model_key(audit.source)
        for finding in audit.findings:
            entries.append({"model": key, "code": finding.code, "layers": list(finding.layers),
                            "severity": finding.severity, "message": finding.message})
    return json.dumps({"schema": BASELINE_SCHEMA, "findings": entries}, indent=2) + "\n"


def load(path: str) -> set[tuple[str, str]]:
    """The (model, fingerprint) pairs a baseline file records; InputError when unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise InputError(f"baseline {path}: cannot read it ({problem})") from None
    if not isinstance(data, dict) or data.get("schema") != BASELINE_SCHEMA or not isinstance(data.get("findings"), list):
        raise InputError(f"baseline {path}: not a {BASELINE_SCHEMA} file (write one with `gradaudit baseline`)")
    known = set()
    for entry in data["findings"]:
        try:
            finding = Finding(entry["code"], "info", "", tuple(entry["layers"]))
            known.add((entry["model"], finding.fingerprint()))
        except (KeyError, TypeError):
            raise InputError(f"baseline {path}: malformed entry {entry!r}") from None
    return known


def new_findings(audit: Audit, known: set[tuple[str, str]]) -> list[Finding]:
    """The findings of `audit` that the baseline does not record."""
    key = model_key(audit.source)
    return [f for f in audit.findings if (key, f.fingerprint()) not in known]
