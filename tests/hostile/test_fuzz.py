"""Property-based fuzzing of the ONNX loader and executor: only InputError (or success) escapes.

Four mutators of small valid models: byte flips of the serialized file, truncation, random
attribute values on a small op set, and random op graphs built from that op set. Each example
is loaded (validation, shape inference, executor build, one traced forward pass) and, when it
loads, audited with one real forward+backward pass. Any other exception type is a crash; a
per-example deadline catches hangs.

CI runs FUZZ_EXAMPLES (200) examples per property, about 15 s in all; a longer run explores
freshly randomised examples:

    GRADAUDIT_FUZZ_EXAMPLES=2000 python -m pytest tests/hostile/test_fuzz.py -q
"""

from __future__ import annotations

import os
import signal
import tempfile
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from gradaudit.pipeline import AuditOptions, run_audit
from gradaudit.errors import InputError
from gradaudit.loaders import load
from tests.hostile import models

FUZZ_EXAMPLES = int(os.environ.get("GRADAUDIT_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=timedelta(seconds=10),
    database=None,  # failures print their example; nothing is written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize="GRADAUDIT_FUZZ_EXAMPLES" not in os.environ,  # CI is reproducible; long runs explore
)
HANG_S = 30
SMALL_CAP = 64 * 1024**2  # keeps every example's tensors small and fast
CHANNELS = 3


@contextmanager
def hang_guard(seconds: int) -> Iterator[None]:
    """Interrupt an example that runs past `seconds` (hypothesis's deadline only reports it after)."""

    def interrupt(signum: int, frame: object) -> None:
        raise AssertionError(f"the example ran over {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def audit_bytes(data: bytes) -> None:
    """Load and audit one model file; let only InputError through."""
    with hang_guard(HANG_S), tempfile.TemporaryDirectory(prefix="gradaudit-fuzz-") as folder:
        path = Path(folder) / "fuzz.onnx"
        path.write_bytes(data)
        try:
            run_audit(load(str(path), max_memory=SMALL_CAP), AuditOptions(passes=1, timeout=5.0))
        except InputError:
            pass  # refused with one clear line: the outcome wanted for a broken model


def conv_model() -> onnx.ModelProto:
    """x(N,3,8,8) -> Conv -> BatchNorm -> Relu -> MaxPool -> Flatten -> Gemm -> Softmax."""
    rng = np.random.default_rng(0)
    tensors = {
        "cw": rng.normal(0, 0.3, (CHANNELS, CHANNELS, 3, 3)), "cb": np.zeros(CHANNELS),
        "gamma": np.ones(CHANNELS), "beta": np.zeros(CHANNELS), "mean": np.zeros(CHANNELS), "var": np.ones(CHANNELS),
        "gw": rng.normal(0, 0.3, (2, CHANNELS * 16)), "gb": np.zeros(2),
    }
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1],
                         kernel_shape=[3, 3], dilations=[1, 1], group=1),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["b"], name="bn", epsilon=1e-5, momentum=0.9),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["g"], name="head", transB=1, transA=0, alpha=1.0, beta=1.0),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=-1),
    ]
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in tensors.items()]
    graph = helper.make_graph(nodes, "conv", [models.float_input(shape=("N", CHANNELS, 8, 8))],
                              [models.float_input("y", shape=("N", 2))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", models.OPSET)])


SEEDS = {"mlp": models.mlp().SerializeToString(), "conv": conv_model().SerializeToString()}


@FUZZ
@given(seed=st.sampled_from(sorted(SEEDS)), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=8))
def test_byte_flips(seed: str, flips: list[tuple[int, int]]):
    data = bytearray(SEEDS[seed])
    for position, mask in flips:
        data[position % len(data)] ^= mask
    audit_bytes(bytes(data))


@FUZZ
@given(seed=st.sampled_from(sorted(SEEDS)), keep=st.floats(0.0, 1.0, exclude_max=True))
def test_truncation(seed: str, keep: float):
    data = SEEDS[seed]
    audit_bytes(data[: int(len(data) * keep)])


# Values of each attribute type (same type as the attribute replaced, so the checker lets most
# through and the executor sees them): out-of-range axes, zero or negative sizes, NaN epsilons.
ATTRIBUTE_VALUES = {
    onnx.AttributeProto.INT: st.integers(-5, 9),
    onnx.AttributeProto.FLOAT: st.floats(allow_nan=True, allow_infinity=True, width=32),
    onnx.AttributeProto.INTS: st.lists(st.integers(-3, 9), min_size=1, max_size=6),
    onnx.AttributeProto.STRING: st.sampled_from([b"", b"NOTSET", b"SAME_UPPER", b"VALID", b"tanh"]),
}


@FUZZ
@given(data=st.data())
def test_random_attribute_values(data: st.DataObject):
    model = conv_model()
    attributes = [(node, attr) for node in model.graph.node for attr in node.attribute]
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        node, attr = data.draw(st.sampled_from(attributes), label="attribute")
        value = data.draw(ATTRIBUTE_VALUES[attr.type], label="value")
        attr.CopyFrom(helper.make_attribute(attr.name, value))
    audit_bytes(model.SerializeToString())


UNARY = ["Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Exp", "Log", "Sqrt", "Softmax", "Transpose", "Flatten",
         "ReduceMean", "Identity", "Dropout", "LeakyRelu"]
BINARY = ["Add", "Mul", "Sub", "Div", "MatMul", "Concat", "Pow", "Max"]


@st.composite
def random_graph(draw: st.DrawFn) -> onnx.ModelProto:
    """A chain-with-skips of ops from a small set, reading random earlier tensors and weights."""
    rank = draw(st.integers(1, 4), label="rank")
    shape = [draw(st.integers(1, 5)) for _ in range(rank)]
    inits = [numpy_helper.from_array(
        np.random.default_rng(i).normal(size=[draw(st.integers(1, 5)) for _ in range(draw(st.integers(1, 3)))]).astype(np.float32),
        f"w{i}") for i in range(draw(st.integers(0, 3)))]
    tensors = ["x", *(t.name for t in inits)]
    nodes = []
    for index in range(draw(st.integers(1, 12), label="nodes")):
        op = draw(st.sampled_from(UNARY + BINARY), label="op")
        reads = [draw(st.sampled_from(tensors)) for _ in range(2 if op in BINARY else 1)]
        attrs = {"axis": draw(st.integers(-4, 4))} if op in ("Concat", "Softmax", "Flatten") else {}
        nodes.append(helper.make_node(op, reads, [f"t{index}"], name=f"{op.lower()}_{index}", **attrs))
        tensors.append(f"t{index}")
    graph = helper.make_graph(nodes, "random", [models.float_input(shape=shape)],
                              [helper.make_tensor_value_info(tensors[-1], TensorProto.FLOAT, [])], inits)
    opset = draw(st.sampled_from([7, 11, 13, 17, 21]), label="opset")
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@FUZZ
@given(model=random_graph())
def test_random_op_graphs(model: onnx.ModelProto):
    audit_bytes(model.SerializeToString())
