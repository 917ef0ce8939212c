"""SARIF 2.1.0 output, for code-scanning dashboards (GitHub, GitLab, Azure DevOps).

One result per finding with `ruleId` = the finding's code; one rule per code with its help text
from `audit.explanations`; the model file as the artifact every result points at, and the layers
as logical locations. A PyTorch model's finding points at the source line defining its layer
when the orchestrator found one (`Audit.locations`). Built as plain dicts: the SARIF
object-model package (sarif-om) has seen no release since 2019, and the few objects needed here
read more clearly as literals.
"""

from __future__ import annotations

import json
from pathlib import PurePath, PurePosixPath
from typing import Any, Sequence
from urllib.parse import quote

from gradaudit.report.common import severity_rank
from gradaudit.report.formats import report_format
from gradaudit.report.json_report import to_dict
from gradaudit.results import Audit

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"error": "error", "warning": "warning", "info": "note"}


def artifact_uri(source: str) -> str:
    """The model's file as a URI reference: a factory spec `pkg.mod:fn` maps to `pkg/mod.py`.

    `path/to/file.py:factory` keeps its path; a Windows drive letter (`C:`) is not a factory.
    """
    path, colon, attr = source.rpartition(":")
    if colon and attr.isidentifier() and len(path) > 1:
        is_module = "/" not in path and "\\" not in path and not path.endswith(".py")
        source = PurePosixPath(*path.split(".")).as_posix() + ".py" if is_module else path
    pure = PurePath(source)
    if pure.is_absolute():
        return "file://" + quote(pure.as_posix())
    return quote(pure.as_posix())


def _rule(code: str, explanation: dict[str, str], level: str) -> dict[str, Any]:
    summary = explanation.get("summary") or code
    doc = explanation.get("doc") or summary
    return {
        "id": code,
        "name": explanation.get("name") or code,
        "shortDescription": {"text": summary},
        "fullDescription": {"text": summary},
        "help": {"text": doc, "markdown": doc},
        "defaultConfiguration": {"level": level},
    }


def _source_location(place: dict[str, Any]) -> dict[str, Any]:
    return {"artifactLocation": {"uri": artifact_uri(place["uri"])}, "region": {"startLine": place["line"]}}


def _result(finding: dict[str, Any], rule_index: int, uri: str, locations: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The finding at the source line defining its first located layer (the other layers' lines
    as related locations), else at the model file."""
    places = list({(p["uri"], p["line"]): p for p in (locations.get(layer) for layer in finding["layers"])
                   if p}.values())
    physical = _source_location(places[0]) if places else {"artifactLocation": {"uri": uri, "index": 0}}
    location: dict[str, Any] = {"physicalLocation": physical}
    if finding["layers"]:
        location["logicalLocations"] = [{"name": name, "kind": "module"} for name in finding["layers"]]
    result = {
        "ruleId": finding["code"],
        "ruleIndex": rule_index,
        "level": LEVELS.get(finding["severity"], "note"),
        "message": {"text": finding["message"]},
        "locations": [location],
        "partialFingerprints": {"gradauditFinding/v1": finding["fingerprint"]},
        "properties": {"layers": finding["layers"], "evidence": finding["evidence"]},
    }
    if len(places) > 1:
        result["relatedLocations"] = [
            {"id": i, "physicalLocation": _source_location(place)} for i, place in enumerate(places[1:], 1)]
    return result


def sarif_run(audit: Audit) -> dict[str, Any]:
    """One SARIF run: the tool, the rules that fired, one result per finding of this model."""
    report = to_dict(audit)
    uri = artifact_uri(report["model"]["source"])
    codes: dict[str, str] = {}  # code -> most severe level among its findings, in order of appearance
    for finding in report["findings"]:
        known = codes.get(finding["code"])
        if known is None or severity_rank(finding["severity"]) < severity_rank(known):
            codes[finding["code"]] = finding["severity"]
    index = {code: i for i, code in enumerate(codes)}
    rules = [_rule(code, report["explanations"].get(code, {}), LEVELS.get(sev, "note")) for code, sev in codes.items()]
    return {
        "tool": {"driver": {"name": "gradaudit", "version": report["tool"]["version"], "rules": rules}},
        "artifacts": [{"location": {"uri": uri}}],
        "results": [_result(f, index[f["code"]], uri, audit.locations) for f in report["findings"]],
        "invocations": [{"executionSuccessful": True}],
        "properties": {"verdict": report["verdict"], "diagnosis": report["diagnosis"]},
    }


def to_sarif(audits: Sequence[Audit]) -> dict[str, Any]:
    """The audits as one SARIF 2.1.0 log, one run per model."""
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [sarif_run(a) for a in audits]}


@report_format("sarif", also_write="--sarif", also_write_help="Also write a SARIF 2.1.0 report here.")
def render_sarif(audits: Sequence[Audit], *, color: bool = False) -> str:
    """The SARIF log as indented JSON; `color` is ignored."""
    return json.dumps(to_sarif(audits), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
