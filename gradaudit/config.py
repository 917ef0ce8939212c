"""Configuration: `[tool.gradaudit]` in the nearest pyproject.toml, environment, command line.

Every option is declared once in OPTIONS (name, type, default, doc); the rule thresholds are the
fields of `gradaudit.rules.RuleConfig`, exposed under the same kebab-case names. Precedence, as in
coverage.py and ruff: command line > environment (GRADAUDIT_FAIL_ON, ...) > pyproject > defaults.
Unknown keys and ill-typed values are input errors that name the key.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gradaudit.errors import InputError
from gradaudit.gate import FAIL_ON_CHOICES
from gradaudit.i18n import LANGUAGES
from gradaudit.limits import default_max_memory, read_capped

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


# The planned run's losses (`loss`; gradaudit.loss computes them), here so the CLI reads them without torch.
LOSSES = ("auto", "mse", "cross-entropy", "bce", "nll")


@dataclass(frozen=True)
class Option:
    key: str
    kind: str  # "str" | "path" | "int" | "float" | "bool" | "list" | "dict"
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None  # inclusive bounds of a number
    maximum: float | None = None
    holds_codes: bool = False  # a list (or a dict of lists) of rule codes, checked against the registry


OPTIONS: tuple[Option, ...] = (
    Option("fail-on", "str", "error", "lowest severity that fails the gate", FAIL_ON_CHOICES),
    Option("input-shape", "list", [], "input shapes, batch first, e.g. [\"8,3,32,32\"]"),
    Option("batch", "int", 8, "batch size for symbolic batch dimensions", minimum=1),
    Option("passes", "int", 3, "real forward+backward passes of the probe", minimum=1, maximum=100),
    Option("seed", "int", 0, "seed of synthetic batches and the default loss"),
    Option("timeout", "float", 300.0, "seconds the audit of each model may take (load to verification)", minimum=1.0),
    Option("baseline", "path", None,
           "baseline file (relative to the config file): only findings not in it fail the gate"),
    Option("static-only", "bool", False, "skip the dynamic probe"),
    Option("loss", "str", "auto",
           "the planned run's loss (a loss_fn given to gradaudit.audit wins over it): auto = squared "
           "error, or the log-likelihood of a softmax output", LOSSES),
    Option("trial-steps", "int", 50, "steps of the trial run at the planned --lr", minimum=1, maximum=10_000),
    Option("lang", "str", "en", "language of the text and HTML reports and of `explain`: en | zh", LANGUAGES),
)


def rule_options() -> tuple[Option, ...]:
    """The RuleConfig fields as options (thresholds, ignore, per-layer ignores).

    Its numbers are decades, so never negative; its lists, and the lists its dicts map to, hold
    rule codes, so a typo in a code is caught here instead of silently ignoring nothing.
    """
    from gradaudit.rules import RuleConfig

    kinds = {int: "int", float: "float", bool: "bool", str: "str"}
    found = []
    for field in dataclasses.fields(RuleConfig):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
        kind = kinds.get(type(default), "dict" if isinstance(default, dict) else "list")
        doc = field.metadata.get("doc", "") if field.metadata else ""
        found.append(Option(field.name.replace("_", "-"), kind, default, doc,
                            minimum=0.0 if kind in ("int", "float") else None, holds_codes=kind in ("list", "dict")))
    return tuple(found)


def all_options() -> dict[str, Option]:
    return {o.key: o for o in OPTIONS + rule_options()}


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml from `start` (cwd) upward."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_file(path: Path, required: bool, cap: int | None = None) -> dict[str, Any]:
    """The [tool.gradaudit] table of a TOML file ({} when absent and not required); the file is
    read only if it is a regular file under `cap` bytes (default: the memory cap)."""
    text = read_capped(path, default_max_memory() if cap is None else cap, f"config {path}")
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as problem:
        raise InputError(f"config {path}: cannot read it ({problem})") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise InputError(f"config {path}: nested too deeply to read") from None
    table = data.get("tool", {}).get("gradaudit")
    if table is None:
        if required:
            raise InputError(f"config {path}: has no [tool.gradaudit] table")
        return {}
    if not isinstance(table, dict):
        raise InputError(f"config {path}: [tool.gradaudit] must be a table")
    return table


_TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "path": lambda v: isinstance(v, str) and bool(v),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
}


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _from_environment(option: Option, text: str, name: str) -> Any:
    """Environment values are strings: lists are ';'-separated, booleans 1/true/yes/on or 0/false/no/off."""
    try:
        if option.kind == "int":
            return int(text)
        if option.kind == "float":
            return float(text)
    except ValueError:
        raise InputError(f"environment {name}: must be {option.kind}, got {text!r}") from None
    if option.kind == "bool":
        word = text.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise InputError(f"environment {name}: must be one of {', '.join(TRUE_WORDS + FALSE_WORDS)}, got {text!r}")
        return word in TRUE_WORDS
    if option.kind == "list":
        return [part for part in text.split(";") if part]
    if option.kind == "dict":
        raise InputError(f"environment {name}: '{option.key}' can only be set in a config file")
    return text


def _checked(option: Option, value: Any, origin: str) -> Any:
    if not _TYPE_CHECKS[option.kind](value):
        raise InputError(f"{origin}: '{option.key}' must be of type {option.kind}, got {value!r}")
    if option.choices and value not in option.choices:
        raise InputError(f"{origin}: '{option.key}' must be one of {', '.join(option.choices)}, got {value!r}")
    problem = _range_problem(option, value) or (_codes_problem(value) if option.holds_codes else "")
    if problem:
        raise InputError(f"{origin}: '{option.key}' {problem}")
    return float(value) if option.kind == "float" else value


def _range_problem(option: Option, value: Any) -> str:
    if option.minimum is not None and value < option.minimum:
        return f"must be at least {option.minimum:g}, got {value!r}"
    if option.maximum is not None and value > option.maximum:
        return f"must be at most {option.maximum:g}, got {value!r}"
    return ""


def _codes_problem(value: list | dict) -> str:
    """What is wrong with a list of rule codes, or a dict of such lists keyed by layer globs."""
    from gradaudit.rules import all_rules

    per_layer = isinstance(value, dict)
    known = {rule.code for rule in all_rules()} | ({"ALL"} if per_layer else set())
    lists = value.values() if per_layer else [value]
    for codes in lists:
        if not isinstance(codes, list) or not all(isinstance(code, str) for code in codes):
            return f"must hold lists of rule codes such as [\"GA301\"], got {codes!r}"
        unknown = [code for code in codes if code not in known]
        if unknown:
            return f"names unknown rule code(s) {', '.join(unknown)} (see `gradaudit rules`)"
    return ""


def resolve(
    cli_values: Mapping[str, Any], config_file: str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Merge defaults < pyproject (or --config) < environment < command line; keys kebab-case."""
    options = all_options()
    merged = {key: option.default for key, option in options.items()}
    path = Path(config_file) if config_file else find_pyproject()
    if config_file and not path.is_file():
        raise InputError(f"config {config_file}: no such file")
    table = read_file(path, required=bool(config_file), cap=cli_values.get("max-memory")) if path else {}
    for key, value in table.items():
        if key not in options:
            raise InputError(f"config {path}: unknown key '{key}' (known: {', '.join(sorted(options))})")
        merged[key] = _checked(options[key], value, f"config {path}")
        if options[key].kind == "path":
            merged[key] = str(path.parent / value)
    environ = os.environ if environ is None else environ
    for key, option in options.items():
        name = "GRADAUDIT_" + key.upper().replace("-", "_")
        if name in environ:
            merged[key] = _checked(option, _from_environment(option, environ[name], name), f"environment {name}")
    for key, value in cli_values.items():
        if value is not None:
            merged[key] = value
    return merged


def rule_config(merged: Mapping[str, Any]):
    """A RuleConfig from the merged options."""
    from gradaudit.rules import RuleConfig

    names = {f.name for f in dataclasses.fields(RuleConfig)}
    return RuleConfig(**{k.replace("-", "_"): v for k, v in merged.items() if k.replace("-", "_") in names})
