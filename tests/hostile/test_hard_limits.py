"""`--timeout` and `--max-memory` are hard limits on each model's audit by the `gradaudit` command.

Each case runs the real command (`python -m gradaudit`, so under its supervisor) on a model that
gets past the declared-size check: a factory whose forward never returns, one that allocates
1.25 GiB in its forward, an ONNX graph whose ConstantOfShape size is computed from the input at
run time (1 GiB), and one that aborts. Each must stop with exit 2 and one line naming the limit
and what was running, print no report and write none; the endless forward within the limit plus
a margin that a slow, shared machine needs, timed from when it starts looping.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from gradaudit.limits import out_of_memory
from tests.hostile import models

ROOT = Path(__file__).resolve().parents[2]
# --timeout of the looping models: the deadline starts at load, and importing torch and tracing
# took over 3 s at load 16, so a shorter limit expired before the forward began to loop.
TIMEOUT_S = 10
MARGIN_S = 20.0  # a shared, loaded machine (load average 16 on 2 cores seen); a missed limit runs on
UNSTOPPED_S = 240
CAP = "300M"  # a quarter of what the models below allocate
GIB_FLOATS = 2**28


HOSTILE_FACTORY = """\
import os
import time
import torch
from torch import nn


class Hostile(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        # float() of a traced value stops torch.fx, so the probe runs this very forward, not a trace
        if float(y.detach().sum()) < float("inf") and torch.is_grad_enabled():
BODY
        return y


def build():
    return Hostile()
"""


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    """`gradaudit check ARGV`; a run that no limit stopped fails the test after UNSTOPPED_S."""
    return subprocess.run([sys.executable, "-m", "gradaudit", "check", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=UNSTOPPED_S)


def factory(tmp_path: Path, forward_body: str) -> str:
    """A `file.py:build` spec whose model runs `forward_body` only in the probe (grad enabled),
    after the loader's own no-grad forward passes have seen a well-behaved model."""
    body = textwrap.indent(textwrap.dedent(forward_body).strip(), " " * 12)
    source = tmp_path / "hostile_model.py"
    source.write_text(HOSTILE_FACTORY.replace("BODY", body))
    return f"{source}:build"


def computed_shape_onnx(path: Path) -> Path:
    """x (N, 4) -> MatMul, plus the mean of ConstantOfShape(Shape(x) * [2^12, 2^11]): 1 GiB at N=8."""
    scale = numpy_helper.from_array(np.array([2**12, 2**11], dtype=np.int64), "scale")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y"]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Mul", ["shape", "scale"], ["big_shape"]),
        helper.make_node("ConstantOfShape", ["big_shape"], ["big"],
                         value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])),
        helper.make_node("ReduceMean", ["big"], ["mean"], keepdims=0),
        helper.make_node("Add", ["y", "mean"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "computed_shape", [models.float_input()],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", models.FEATURES])],
                              [scale, models.weight()])
    return models.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", models.OPSET)]), path)


def assert_stopped(result: subprocess.CompletedProcess, message: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert result.stdout == ""


def test_a_forward_that_never_returns_is_killed_at_the_timeout(tmp_path: Path):
    """Timed from the moment the forward starts looping (its deadline started earlier, at load):
    the command's own start-up is slow on a loaded machine and is no part of the limit."""
    stamp = tmp_path / "looping_since"
    spec = factory(tmp_path, f"""
        open({str(stamp)!r}, "w").write(repr(time.time()))
        while True:  # a Python loop: only a kill from outside the process stops it
            y = y + 0
    """)
    result = run_cli(spec, "--input-shape", "2,4", "--timeout", str(TIMEOUT_S))
    stopped_after = time.time() - float(stamp.read_text())
    assert_stopped(result, f"exceeded --timeout ({TIMEOUT_S} s) while probing {spec}")
    assert stopped_after < TIMEOUT_S + MARGIN_S


def test_debug_shows_where_the_model_was_stuck_before_the_line(tmp_path: Path):
    spec = factory(tmp_path, """
        while True:
            y = y + 0
    """)
    result = run_cli(spec, "--input-shape", "2,4", "--timeout", str(TIMEOUT_S), "--debug")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert any("hostile_model.py" in line and line.endswith(" in forward") for line in lines), result.stderr
    assert lines[-1] == f"gradaudit: error: exceeded --timeout ({TIMEOUT_S} s) while probing {spec}"


def test_an_allocation_in_forward_past_the_cap_is_stopped(tmp_path: Path):
    spec = factory(tmp_path, f"y = y + torch.ones({GIB_FLOATS + GIB_FLOATS // 4}).sum()  # 1.25 GiB at once")
    result = run_cli(spec, "--input-shape", "2,4", "--max-memory", CAP)
    assert_stopped(result, f"exceeded --max-memory (300.0 MiB) while probing {spec}")


def test_a_shape_computed_at_run_time_is_stopped_and_no_report_is_written(tmp_path: Path):
    """The first model passes under a cap just above its tensors (gradaudit's own memory is not
    counted against it); the second stops the run and no report is written."""
    healthy = models.save(models.mlp(), tmp_path / "healthy.onnx")
    growing = computed_shape_onnx(tmp_path / "growing.onnx")
    report = tmp_path / "report.json"
    result = run_cli(str(healthy), str(growing), "--max-memory", "1M", "--json", str(report))
    assert_stopped(result, f"exceeded --max-memory (1.0 MiB) while loading {growing}")
    assert not report.exists()


def test_a_model_that_aborts_the_process_is_one_line_naming_the_stage(tmp_path: Path):
    spec = factory(tmp_path, "os.abort()  # as a C++ library does on an uncaught std::bad_alloc")
    result = run_cli(spec, "--input-shape", "2,4", "--max-memory", CAP)
    assert_stopped(result, f"the audit ended by SIGABRT while probing {spec} (--max-memory 300.0 MiB)")


@pytest.mark.parametrize("problem, found", [
    (MemoryError(), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"), True),
    (OSError(12, "Cannot allocate memory"), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
])
def test_a_failed_allocation_is_found_through_the_errors_that_wrap_it(problem: BaseException, found: bool):
    try:
        try:
            raise problem
        except BaseException as inner:
            raise ValueError("ONNX node 'big' (ConstantOfShape) failed") from inner
    except ValueError as wrapped:
        assert out_of_memory(wrapped) is found


@pytest.mark.parametrize("problem", [MemoryError(), ValueError("an unforeseen graph")])
def test_only_a_failed_allocation_in_a_rule_escapes_as_the_audit_s_error(problem: BaseException):
    """A rule failing on an odd graph becomes a GA503 finding; one out of memory stops the audit,
    so the command can name the cap instead of reporting a model audited without that rule."""
    from dataclasses import replace

    from gradaudit.rules import rule_registry

    def failing(_context):
        raise problem

    rule = replace(rule_registry.all_rules()[0], check=failing)
    if isinstance(problem, MemoryError):
        with pytest.raises(MemoryError):
            rule_registry._apply(rule, None)
    else:
        assert [finding.code for finding in rule_registry._apply(rule, None)] == [rule_registry.RULE_FAILED]
