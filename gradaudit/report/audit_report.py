"""The audit `gradaudit.audit()` returns: an `Audit` that renders itself (in Jupyter, as HTML,
as JSON) with the renderers of this package, so the result dataclasses stay free of rendering."""

from __future__ import annotations

import os

from gradaudit.i18n import use_language
from gradaudit.report import Format, render, write_atomic
from gradaudit.report.html_report import render_html_fragment
from gradaudit.results import Audit


class AuditReport(Audit):
    """An `Audit` with the report's renderings as methods (the notebook API), each in the
    language the audit was worded in."""

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the summary-first HTML report, scoped to one wrapper element so
        it does not restyle the notebook, with no external request."""
        with use_language(self.language):
            return render_html_fragment([self])

    def to_html(self) -> str:
        """The self-contained HTML page `gradaudit check --html` writes, in the audit's language."""
        return self._rendered(Format.HTML)

    def to_json(self) -> str:
        """The `gradaudit.report/1` JSON document `gradaudit check --format json` prints."""
        return self._rendered(Format.JSON)

    def _rendered(self, fmt: Format) -> str:
        with use_language(self.language):
            return render(self, fmt)

    def save_html(self, path: str | os.PathLike[str]) -> None:
        """Write the HTML page to `path` atomically: a failed write leaves no partial file."""
        write_atomic(path, self.to_html())
