"""What reaches the terminal: gradaudit's own lines, cleaned, and nothing printed by a library.

A file name, a layer name or a string inside a model can carry escape sequences that rewrite the
terminal (or a CI log). gradaudit's lines quote such strings, so they all go through `say`, which
applies the cleaner the reports use (gradaudit.report.common.clean); the reports clean each
model-supplied field themselves, so their own colour codes survive.

torch and onnx print too: through the `warnings` module, and through loggers (torch's have their
own stderr handlers), with messages that quote the model (torch.export.load logs a failed archive
member, with a traceback). While a command runs, `library_output_captured` records the warnings
and disables logging; afterwards gradaudit's own warnings are printed cleaned, and with --debug
the libraries' warnings as well.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from typing import Iterator

import click

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def say(text: str, *, err: bool = False, multiline: bool = False, nl: bool = True) -> None:
    """Echo a line (or, with `multiline`, a block such as a code patch) without escape sequences."""
    from gradaudit.report.common import clean

    click.echo(clean(text, multiline=multiline), err=err, nl=nl)


@contextmanager
def library_output_captured(debug: bool = False) -> Iterator[None]:
    """Record warnings and silence every logger for the duration; then report the warnings."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield
    finally:
        logging.disable(previous)
        for warning in caught:
            own = os.path.abspath(warning.filename).startswith(PACKAGE_DIR + os.sep)
            if own or debug:
                origin = "" if own else f" (from {os.path.basename(warning.filename)})"
                say(f"gradaudit: warning: {warning.category.__name__}: {warning.message}{origin}", err=True)
