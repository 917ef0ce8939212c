"""The registry of report formats: each renderer module declares its own with `@report_format`.

A declaration carries everything the CLI needs to offer the format: its `--format` name and, for
a format worth keeping beside the printed one, the option that also writes it to a file (`--json
PATH`). `gradaudit check` builds its choices and options from this registry when it parses the
command line, so a new format is one renderer module (and its test), with no edit to cli.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Renderer = Callable[..., str]  # (audits, *, color: bool) -> str


@dataclass(frozen=True)
class ReportFormat:
    """One output format as the CLI offers it."""

    name: str  # the value of `--format`
    render: Renderer
    also_write: str | None = None  # the option that also writes this format to a file, e.g. "--json"
    also_write_help: str = ""

    @property
    def path_parameter(self) -> str | None:
        """The click parameter name of `also_write` ("--json" -> "json_path")."""
        return f"{self.also_write.lstrip('-').replace('-', '_')}_path" if self.also_write else None


REPORT_FORMATS: dict[str, ReportFormat] = {}


def report_format(
    name: str, *, also_write: str | None = None, also_write_help: str = ""
) -> Callable[[Renderer], Renderer]:
    """Register the decorated `render(audits, *, color) -> str` as the format `name`."""

    def register(render: Renderer) -> Renderer:
        if name in REPORT_FORMATS:
            raise ValueError(f"report format {name!r} is declared twice")
        REPORT_FORMATS[name] = ReportFormat(name, render, also_write, also_write_help)
        return render

    return register

