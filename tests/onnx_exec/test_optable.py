"""docs/onnx_ops.md is the registry's table, regenerated; every registered op appears once."""

from __future__ import annotations

from pathlib import Path

from gradaudit.onnx_exec import SUPPORTED_OPS
from gradaudit.onnx_exec.optable import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "onnx_ops.md"


def test_docs_table_is_up_to_date() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m gradaudit.onnx_exec.optable > docs/onnx_ops.md"


def test_every_registered_op_has_one_row() -> None:
    rows = [line.split("|")[1].strip() for line in render().splitlines() if line.startswith("| ")
            and not line.startswith(("| operator", "| ---"))]
    assert sorted(rows) == sorted(SUPPORTED_OPS)
    for op in ("Resize", "Einsum", "Trilu", "Range", "LSTM", "SequenceAt", "Shrink"):
        assert op in rows
