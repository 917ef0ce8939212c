"""Error types that carry their exit code, so the CLI maps failures without guessing.

DESIGN.md: exit 2 is a usage or input error (one clear line, no traceback), exit 3 an internal
error. Anything the user handed us that we cannot read raises `InputError`.
"""

from __future__ import annotations

import os

# Set (to anything but "" or "0") by tests that build models gradaudit fully supports (the
# `strict_static` fixture of tests/conftest.py): a static failure that would otherwise become an
# "unknown" node, reported only through GA501, then raises where it happens.
STRICT_STATIC_ENV = "GRADAUDIT_STRICT_STATIC"


class GradauditError(Exception):
    """Base class of errors gradaudit raises on purpose."""

    exit_code = 3


class InputError(GradauditError):
    """The model, a flag or a file the user gave is unusable; the message names the problem."""

    exit_code = 2


class UnsupportedOperatorError(GradauditError):
    """The ONNX executor cannot run an operator; the static analysis may still go on."""

    exit_code = 2

    def __init__(self, op_types: list[str]):
        self.op_types = sorted(set(op_types))
        super().__init__("unsupported ONNX operator(s): " + ", ".join(self.op_types))


def strict_static() -> bool:
    """Must a failing gain or ONNX mapping raise instead of leaving its node unknown (with its reason)?"""
    return os.environ.get(STRICT_STATIC_ENV, "") not in ("", "0")


def failure(error: BaseException) -> str:
    """An exception as a reason a report can show: its type and message."""
    return f"{type(error).__name__}: {error}"
