"""Conformance against the test data shipped in the onnx wheel, printing the pass table.

Every case under backend/test/data/{simple, pytorch-converted, pytorch-operator} whose operators
are all registered runs in eval semantics on its bundled inputs and must reproduce the bundled
outputs within rtol 1e-3 / atol 1e-7 (NaN where the reference has NaN). The light model-zoo
graphs ship outputs only; their input is the one onnx's backend runner generates
(`arange(n) / n`). Cases with an unregistered op are counted and listed, and must still build
(the op is reported, never a crash).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from gradaudit.onnx_exec import SUPPORTED_OPS, OnnxModule
from gradaudit.onnx_exec.executor import op_key

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
SUITES = ("simple", "pytorch-converted", "pytorch-operator")
PASS_FLOOR = 0.95
RTOL, ATOL = 1e-3, 1e-7


@dataclass
class Case:
    suite: str
    name: str
    model: Path
    datasets: list[tuple[list[Path], list[Path]]]  # (input files, output files) per data set


def _tensor(path: Path) -> np.ndarray:
    return numpy_helper.to_array(onnx.load_tensor(str(path)))


def node_cases() -> list[Case]:
    cases = []
    for suite in SUITES:
        for folder in sorted((DATA / suite).iterdir()):
            sets = [(sorted(d.glob("input_*.pb")), sorted(d.glob("output_*.pb")))
                    for d in sorted(folder.glob("test_data_set_*"))]
            cases.append(Case(suite, folder.name, folder / "model.onnx", sets))
    return cases


def light_cases() -> list[Case]:
    return [Case("light", p.stem, p, [([], [p.with_name(f"{p.stem}_output_0.pb")])])
            for p in sorted((DATA / "light").glob("*.onnx"))]


def _runner_input(model: onnx.ModelProto, name: str) -> torch.Tensor:
    info = next(i for i in model.graph.input if i.name == name)
    shape = [d.dim_value for d in info.type.tensor_type.shape.dim]
    n = int(np.prod(shape))
    return torch.from_numpy((np.arange(n).reshape(shape) / n).astype(np.float32))


def _failure(case: Case, model: onnx.ModelProto) -> str:
    """'' when every data set matches, else what went wrong."""
    module = OnnxModule(model, train_mode=False)
    for inputs, outputs in case.datasets:
        args = [torch.from_numpy(_tensor(p).copy()) for p in inputs] or [_runner_input(model, module.input_names[0])]
        with torch.no_grad():
            got = module(*args)
        got = got if isinstance(got, tuple) else (got,)
        for index, (value, path) in enumerate(zip(got, outputs)):
            expected = _tensor(path)
            actual = value.numpy()
            if (actual.shape != expected.shape
                    or not np.allclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True)):
                return (f"output {index} differs (max abs error "
                        f"{np.nanmax(np.abs(actual - expected)) if actual.shape == expected.shape else 'shape'})")
    return ""


def test_backend_test_data_conformance() -> None:
    passed, failed, unsupported = [], {}, {}
    for case in light_cases() + node_cases():
        model = onnx.load(str(case.model))
        missing = sorted({op_key(n) for n in model.graph.node} - SUPPORTED_OPS)
        if missing:
            assert OnnxModule(model).unsupported == missing  # builds, and names what it cannot run
            for op in missing:
                unsupported.setdefault(op, []).append(case.name)
            continue
        try:
            problem = _failure(case, model)
        except Exception as exc:  # reported in the table, counted as a failure
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            failed[f"{case.suite}/{case.name}"] = problem
        else:
            passed.append(case)
    total = len(passed) + len(failed)
    print(f"\nONNX backend test data: {len(passed)}/{total} supported cases pass ({len(passed) / total:.1%})")
    for suite in ("light",) + SUITES:
        n_pass = sum(c.suite == suite for c in passed)
        n_fail = sum(k.startswith(suite + "/") for k in failed)
        print(f"  {suite:<18} {n_pass:>4} pass {n_fail:>3} fail")
    for name, problem in failed.items():
        print(f"  FAIL {name}: {problem}")
    print("unsupported ops met: " + (", ".join(f"{op} ({len(c)} cases)" for op, c in sorted(unsupported.items()))
                                     or "none"))
    assert total >= 120
    assert len(passed) / total >= PASS_FLOOR, failed
