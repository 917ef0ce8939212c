"""Baselines: record today's findings so the gate fails only on new ones.

A finding is matched by model + code + layers, never by its numbers, so a baseline survives seed
and library jitter (bandit and ruff baselines work the same way). The layers are matched by
overlap, not equality: a finding that groups layers (the layers where a flow problem concentrates,
the layers with dead units) gains or loses the layers that sit near its threshold from one seed to
the next — measured on the bundled samples, 3 of the 5 unhealthy ones change a layer list between
seeds 0..3 — while it keeps its core. So a finding is known when the baseline records the same
code on the same model touching at least one of its layers (or, for a model-wide finding without
layers, the same code). The model is keyed by its file name or factory spec, so a baseline written
in one checkout works in another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from gradaudit.errors import InputError
from gradaudit.limits import default_max_memory, read_capped
from gradaudit.results import Audit, Finding

BASELINE_SCHEMA = "gradaudit.baseline/1"


def model_key(source: str) -> str:
    """A checkout-independent name for a model: the file name, or the factory spec's target."""
    target, sep, attr = source.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{Path(target).name}:{attr}"
    return Path(source).name if not sep else source


@dataclass
class Baseline:
    """The recorded findings: (model key, code) -> the layer sets recorded under that code."""

    recorded: dict[tuple[str, str], list[frozenset[str]]] = field(default_factory=dict)

    def add(self, model: str, code: str, layers: Iterable[str]) -> None:
        self.recorded.setdefault((model, code), []).append(frozenset(layers))

    def knows(self, model: str, finding: Finding) -> bool:
        """Same model and code, and a shared layer (or no layers on both sides)."""
        layers = frozenset(finding.layers)
        return any(
            (layers & known) or (not layers and not known) for known in self.recorded.get((model, finding.code), [])
        )


def to_json(audits: Iterable[Audit]) -> str:
    entries = []
    for audit in audits:
        key = model_key(audit.source)
        for finding in audit.findings:
            entries.append({"model": key, "code": finding.code, "layers": list(finding.layers),
                            "severity": finding.severity, "message": finding.message})
    return json.dumps({"schema": BASELINE_SCHEMA, "findings": entries}, indent=2) + "\n"


def load(path: str, cap: int | None = None) -> Baseline:
    """The findings a baseline file records; InputError when unreadable, malformed, not a regular
    file or over `cap` bytes (default: the memory cap)."""
    text = read_capped(path, default_max_memory() if cap is None else cap, f"baseline {path}")
    try:
        data = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise InputError(f"baseline {path}: cannot read it ({problem})") from None
    except RecursionError:  # json parses nested arrays and objects recursively
        raise InputError(f"baseline {path}: nested too deeply to read") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != BASELINE_SCHEMA or not isinstance(data.get("findings"), list):
        raise InputError(f"baseline {path}: not a {BASELINE_SCHEMA} file (write one with `gradaudit baseline`)")
    known = Baseline()
    for entry in data["findings"]:
        valid = (isinstance(entry, dict) and isinstance(entry.get("model"), str) and isinstance(entry.get("code"), str)
                 and isinstance(entry.get("layers"), list) and all(isinstance(layer, str) for layer in entry["layers"]))
        if not valid:
            raise InputError(f"baseline {path}: malformed entry {entry!r}")
        known.add(entry["model"], entry["code"], entry["layers"])
    return known


def new_findings(audit: Audit, known: Baseline | None) -> list[Finding]:
    """The findings of `audit` that the baseline does not record (all of them without one)."""
    if known is None:
        return list(audit.findings)
    key = model_key(audit.source)
    return [f for f in audit.findings if not known.knows(key, f)]
