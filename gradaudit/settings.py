"""The settings of one run, resolved once: defaults <- [tool.gradaudit] <- environment <- flags.

`check`, `baseline`, `fix` and the verification of their changes all read one `Settings`
(gradaudit.pipeline turns it into the audit's options), so a threshold or an ignore in the
pyproject reaches every one of them. The option table, its defaults and its one-line errors for
unknown keys and bad values stay in gradaudit.config; this module gives the result its types.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from gradaudit.config import resolve, rule_config
from gradaudit.errors import InputError
from gradaudit.rules import RuleConfig


@dataclass(frozen=True)
class Settings:
    """Every setting of a run; built by `resolve_settings`, never by hand (the defaults of the
    configurable ones live in gradaudit.config.OPTIONS)."""

    fail_on: str
    input_shapes: tuple[tuple[int, ...], ...] | None  # None: the loaders' defaults
    batch: int
    passes: int
    seed: int
    timeout: float
    baseline: str | None
    static_only: bool
    loss: str
    trial_steps: int
    lang: str
    rule_config: RuleConfig  # the thresholds and ignores (the RuleConfig fields among the options)
    # set by flags only
    max_memory: int | None = None
    trust: bool = False
    sharpness: bool = False
    verify: bool = False
    lr: float | None = None
    optimizer: str | None = None
    data: str | None = None

    @property
    def shape_list(self) -> list[tuple[int, ...]] | None:
        """The input shapes as the loaders take them (None: their defaults)."""
        return list(self.input_shapes) if self.input_shapes else None


# the settings no config file sets, and their values when no flag does
_FLAG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings) if f.default is not dataclasses.MISSING}
# the config option a field is named differently from
_OPTION_OF_FIELD = {"input_shapes": "input-shape"}


def _option(field: str) -> str:
    return _OPTION_OF_FIELD.get(field, field.replace("_", "-"))


def resolve_settings(
    flags: Mapping[str, Any], config_file: str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """The settings of a run from the flags the user typed (keyed by field name; None = not
    given), the environment (os.environ when None) and `config_file` or the nearest pyproject."""
    names = {f.name for f in dataclasses.fields(Settings)}
    unknown = set(flags) - names
    if unknown:
        raise TypeError(f"not a setting: {', '.join(sorted(unknown))}")
    merged = resolve({_option(name): value for name, value in flags.items()}, config_file, environ)
    values: dict[str, Any] = {name: merged.get(_option(name)) for name in names - {"rule_config"}}
    values["input_shapes"] = tuple(_shape(shape) for shape in merged["input-shape"]) or None
    for name, default in _FLAG_DEFAULTS.items():
        if values[name] is None:
            values[name] = default
    return Settings(**values, rule_config=rule_config(merged))


def parse_shape(text: str) -> tuple[int, ...]:
    """`8,3,32,32` (or `8x3x32x32`) as a shape; ValueError with the reason otherwise."""
    try:
        dims = tuple(int(part) for part in text.replace("x", ",").split(","))  # an empty part is an error
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of integers (e.g. 8,3,32,32)") from None
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"{text!r}: every dimension must be a positive integer")
    return dims


def _shape(value: object) -> tuple[int, ...]:
    """One input shape: a flag's parsed tuple, or the config's list of integers or string."""
    if isinstance(value, tuple):
        return value
    if isinstance(value, list) and all(isinstance(d, int) and d > 0 for d in value):
        return tuple(value)
    if isinstance(value, str):
        try:
            return parse_shape(value)
        except ValueError as problem:
            raise InputError(f"config 'input-shape': {problem}") from None
    raise InputError(f"config 'input-shape': {value!r} is not a shape such as \"8,3,32,32\"")
