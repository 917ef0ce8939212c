"""The onnx package's own operator test cases, run through gradaudit's ONNX executor.

`onnx.backend.test.case.node.collect_testcases()` builds every per-operator case in process (a
one-node model, its inputs, the reference outputs of onnx's reference implementation). A case
counts when all its inputs and outputs are numeric tensors (numpy arrays or scalars of a bool,
integer or float type, bfloat16 and float8 included; strings, sequences, optionals and the
TensorProto-only types are left out). A case passes when the model passes gradaudit's structural
validation (the opset range included), builds, and reproduces every reference output in shape and
values within the case's own tolerances, floored at rtol 1e-3 / atol 1e-5, and for a float16 or
bfloat16 output at that type's epsilon (the reference rounds every intermediate to the half
type, torch keeps some in float32: they differ by an ulp); NaN where the reference has NaN. Every
case runs in this process, in eval semantics (the reference has no training mode).

    python -m benchmarks.onnx_conformance            # the pass table by operator, then every failure
    python -m benchmarks.onnx_conformance --write-known tests/conformance/node_known_failures.txt

tests/conformance/test_node_cases.py runs the same measure, holds its floor and fails on any case
that fails outside the known-failures list (case name, tab, reason: one a line).
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import onnx
import torch

from gradaudit.errors import UnsupportedOperatorError
from gradaudit.loaders.onnx_validate import structural_problem
from gradaudit.onnx_exec import OnnxModule

MIN_RTOL, MIN_ATOL = 1e-3, 1e-5


@dataclass(frozen=True)
class NodeCase:
    name: str
    operator: str
    model: onnx.ModelProto
    data_sets: tuple[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]], ...]
    rtol: float
    atol: float


@dataclass
class Outcome:
    """Results of a run: failing case -> reason, and the pass/fail counts per operator."""

    failures: dict[str, str] = field(default_factory=dict)
    by_operator: dict[str, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )  # op -> [passed, total]

    @property
    def total(self) -> int:
        return sum(t for _, t in self.by_operator.values())

    @property
    def passed(self) -> int:
        return self.total - len(self.failures)


def _numeric(value: Any) -> bool:
    return isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biufV"


def _operator(case: Any) -> str:
    """The op type the case tests: its model's single node, else the op its name starts with."""
    ops = [n.op_type for n in case.model.graph.node]
    return ops[0] if len(set(ops)) == 1 else re.sub(r"^test_", "", case.name).split("_")[0]


@lru_cache(maxsize=1)
def node_cases() -> tuple[NodeCase, ...]:
    """The numeric cases of the installed onnx, built once per process (this takes seconds)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators overflow casts on purpose
        cases = collect_testcases()
    chosen = []
    for case in cases:
        if case.kind != "node" or not all(_numeric(v) for ins, outs in case.data_sets for v in (*ins, *outs)):
            continue
        sets = tuple(
            (tuple(np.asarray(v) for v in ins), tuple(np.asarray(v) for v in outs)) for ins, outs in case.data_sets
        )
        chosen.append(
            NodeCase(case.name, _operator(case), case.model, sets, max(case.rtol, MIN_RTOL), max(case.atol, MIN_ATOL))
        )
    return tuple(chosen)


def _to_torch(array: np.ndarray) -> torch.Tensor:
    """ml_dtypes arrays (bfloat16, float8) have no torch twin via numpy: bfloat16 goes through
    float32 (exact), float8 stays float32, as the executor holds float8 initializers."""
    if array.dtype.kind == "V" or array.dtype.name.startswith(("bfloat16", "float8", "float4")):
        held = torch.bfloat16 if array.dtype.name == "bfloat16" else torch.float32
        return torch.from_numpy(array.astype(np.float32)).to(held)
    return torch.from_numpy(array.copy())


def _to_numpy(value: torch.Tensor) -> np.ndarray:
    value = value.detach()
    return (value.float() if value.dtype == torch.bfloat16 else value).numpy()


def _mismatch(index: int, actual: np.ndarray, expected: np.ndarray, case: NodeCase) -> str:
    rtol, atol = case.rtol, case.atol
    if expected.dtype.name in ("float16", "bfloat16"):
        rtol = atol = max(rtol, float(torch.finfo(getattr(torch, expected.dtype.name)).eps))
    if expected.dtype.kind in "V" or expected.dtype.name.startswith(("bfloat16", "float8", "float4")):
        expected = expected.astype(np.float32)
    if actual.shape != expected.shape:
        return f"output {index} has shape {list(actual.shape)}, expected {list(expected.shape)}"
    if expected.dtype.kind == "b" or actual.dtype.kind == "b":
        same = np.array_equal(actual.astype(bool), expected.astype(bool))  # exact: truth values
    else:
        same = np.allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True)
    if same:
        return ""
    error = np.nanmax(np.abs(actual.astype(np.float64) - expected.astype(np.float64))) if actual.size else 0.0
    return f"output {index} differs (max abs error {error:.3g})"


def failure(case: NodeCase) -> str:
    """'' when the case passes, else its reason in one line."""
    problem = structural_problem(case.model)
    if problem:
        return f"refused: {problem}"
    try:
        module = OnnxModule(case.model, train_mode=False)
        if module.unsupported:
            return f"unsupported: {', '.join(module.unsupported)}"
        for inputs, outputs in case.data_sets:
            with torch.no_grad():
                got = module.run([_to_torch(a) for a in inputs])[0]
            got = got if isinstance(got, tuple) else (got,)
            if len(got) < len(outputs):
                return f"{len(got)} outputs, expected {len(outputs)}"
            for index, (value, expected) in enumerate(zip(got, outputs)):
                problem = _mismatch(index, _to_numpy(value), expected, case)
                if problem:
                    return problem
    except UnsupportedOperatorError as exc:
        return f"unsupported: {exc}"
    except Exception as exc:  # reported with its case, counted as a failure
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
    return ""


def run(cases: tuple[NodeCase, ...] | None = None) -> Outcome:
    outcome = Outcome()
    for case in node_cases() if cases is None else cases:
        problem = failure(case)
        counts = outcome.by_operator[case.operator]
        counts[1] += 1
        if problem:
            outcome.failures[case.name] = problem
        else:
            counts[0] += 1
    return outcome


def table(outcome: Outcome) -> str:
    """The pass table by operator (failing operators first), then every failing case."""
    lines = [f"onnx node cases: {outcome.passed}/{outcome.total} pass ({outcome.passed / max(outcome.total, 1):.1%}), "
             f"onnx {onnx.__version__} (opset {onnx.defs.onnx_opset_version()})"]
    rows = sorted(outcome.by_operator.items(), key=lambda item: (item[1][0] == item[1][1], item[0]))
    lines += [f"  {op:<32} {p:>3}/{t:<3}" for op, (p, t) in rows]
    lines += [f"  FAIL {name}: {reason}" for name, reason in sorted(outcome.failures.items())]
    return "\n".join(lines)


def read_known(path: str) -> dict[str, str]:
    """The known-failures file: case name -> the reason it fails."""
    with open(path, encoding="utf-8") as handle:
        return dict(line.rstrip("\n").split("\t", 1) for line in handle if line.strip())


def write_known(path: str, outcome: Outcome) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{name}\t{reason}\n" for name, reason in sorted(outcome.failures.items()))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-known", metavar="PATH", help="write the failing cases as the known-failures file")
    args = parser.parse_args()
    result = run()
    if args.write_known:
        write_known(args.write_known, result)
    print(table(result))
