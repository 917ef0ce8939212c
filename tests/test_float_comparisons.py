"""Guard: no test compares computed floating-point values bit for bit.

CI runs on whatever x86-64 CPU the next machine has, and torch, numpy and onnxruntime pick
kernels by CPU features and memory alignment, so the last bits of a float result differ across
machines (an orthogonal init's QR, a reduction's order). This test reads every test file and fails
on the comparisons that only hold bit for bit:

- `torch.equal`, `np.array_equal` / `array_equiv`, `np.testing.assert_array_equal` / `assert_equal`;
- `assert_close` / `assert_allclose` / `allclose` / `isclose` with both `rtol` and `atol` zero;
- `pytest.approx(..., abs=<= 1e-10)` without `rel` (pytest then ignores the relative tolerance);
- `==` or `!=` against a float literal (`x == 0.5`).

A comparison that is exact on purpose (a copy of the same bytes, integers, a value the test itself
wrote, zero weights) carries `# exact: <reason>` on one of its lines.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

TESTS = Path(__file__).resolve().parent
MARKER = "exact:"
EXACT_CALLS = {"array_equal", "array_equiv", "assert_array_equal", "assert_equal"}
TOLERANCE_CALLS = {"assert_close", "assert_allclose", "allclose", "isclose"}
TINY_ABS = 1e-10


def _number(node: ast.AST) -> float | None:
    """A literal number, negated literals included; None for anything computed."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _number(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_torch_equal(call: ast.Call) -> bool:
    func = call.func
    return isinstance(func, ast.Attribute) and func.attr == "equal" and isinstance(func.value, ast.Name) \
        and func.value.id == "torch"


def _problem(node: ast.AST) -> str | None:
    """Why this node compares floats exactly, or None."""
    if isinstance(node, ast.Call):
        name, keywords = _call_name(node), {k.arg: k.value for k in node.keywords if k.arg}
        if name in EXACT_CALLS or _is_torch_equal(node):
            return f"{name}() compares bit for bit"
        if name in TOLERANCE_CALLS and _number(keywords.get("rtol", ast.Constant(None))) == 0 \
                and _number(keywords.get("atol", ast.Constant(None))) == 0:
            return f"{name}() with rtol=0 and atol=0"
        if name == "approx" and "rel" not in keywords:
            tolerance = _number(keywords.get("abs", ast.Constant(None)))
            if tolerance is not None and tolerance <= TINY_ABS:
                return f"approx(abs={tolerance:g}) without rel is exact to the last bits"
    if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
        operands = [node.left, *node.comparators]
        if any(isinstance(_number(o), float) and isinstance(_literal(o), float) for o in operands):
            return "== against a float literal"
    return None


def _literal(node: ast.AST):
    """The Python value of a (possibly negated) literal, to tell 2.0 from 2."""
    while isinstance(node, ast.UnaryOp):
        node = node.operand
    return node.value if isinstance(node, ast.Constant) else None


def _marked_lines(source: str) -> set[int]:
    return {token.start[0] for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT and MARKER in token.string}


def exact_float_comparisons(path: Path, root: Path = TESTS.parent) -> list[str]:
    """`path:line: why` (path relative to root) for each unmarked exact comparison in one file."""
    source = path.read_text(encoding="utf-8")
    tree, marked = ast.parse(source), _marked_lines(source)
    spans = {}
    for statement in ast.walk(tree):
        if isinstance(statement, ast.stmt):
            for child in ast.walk(statement):
                spans.setdefault(id(child), range(statement.lineno, statement.end_lineno + 1))
    problems = []
    for node in ast.walk(tree):
        why = _problem(node)
        if why and not marked.intersection(spans.get(id(node), range(node.lineno, node.lineno + 1))):
            problems.append((node.lineno, f"{path.relative_to(root)}:{node.lineno}: {why}"))
    return [text for _, text in sorted(problems)]


def test_no_test_compares_computed_floats_bit_for_bit():
    problems = [p for path in sorted(TESTS.rglob("*.py")) if path != Path(__file__)
                for p in exact_float_comparisons(path)]
    assert not problems, "compare with a tolerance, or mark `# exact: <reason>`:\n" + "\n".join(problems)


def test_the_guard_catches_each_pattern(tmp_path: Path):
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import numpy as np, torch, pytest\n"
        "assert torch.equal(a, b)\n"
        "np.testing.assert_array_equal(a, b)\n"
        "assert np.array_equal(a, b)\n"
        "torch.testing.assert_close(a, b, rtol=0, atol=0)\n"
        "assert x == pytest.approx(y, abs=1e-12)\n"
        "assert x == 0.5\n"
        "assert -1.0 != x\n"
        "assert torch.equal(a, b)  # exact: a copy of the same tensor\n"
        "assert x == 3 and n == pytest.approx(y, abs=1e-12, rel=1e-6)\n"
        "torch.testing.assert_close(a, b, rtol=0, atol=1e-6)\n",
        encoding="utf-8",
    )
    found = [int(line.split(":")[1]) for line in exact_float_comparisons(sample, tmp_path)]
    assert found == [2, 3, 4, 5, 6, 7, 8]

