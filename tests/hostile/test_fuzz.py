"""Property-based fuzzing of the ONNX loader and executor: only InputError (or success) escapes.

Four mutators of small valid models: byte flips of the serialized file, truncation, random
attribute values on a small op set, and random op graphs built from that op set. Each example
is loaded (validation, shape inference, executor build, one traced forward pass) and, when it
loads, audited with one real forward+backward pass. Any other exception type is a crash; a
per-example deadline catches hangs.

Four more run the command line on hostile files: tensor fields (element types, dims, sparse and
external-data entries), torch archives (.pt, .pt2, TorchScript) with mutated zip members,
`--data` batches, and TOML configs with baselines. Their property: exit 0, 1 or 2 only, one line
on exit 2, no file changed but the report asked for.

CI runs FUZZ_EXAMPLES (200) examples per model property and a fifth (a tenth for archives) per
command-line property, about 40 s of CPU in all; a longer run explores freshly randomised examples:

    GRADAUDIT_FUZZ_EXAMPLES=2000 python -m pytest tests/hostile/test_fuzz.py -q
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import tempfile
import warnings
import zipfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from gradaudit.cli import main
from gradaudit.errors import InputError
from gradaudit.loaders import load
from gradaudit.onnx_exec.tensors import HELD_DTYPE
from gradaudit.pipeline import AuditOptions, run_audit
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
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["b"], name="bn", epsilon=1e-5,
                         momentum=0.9),
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
@given(seed=st.sampled_from(sorted(SEEDS)),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=8))
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
        np.random.default_rng(i).normal(size=[draw(st.integers(1, 5))
                                              for _ in range(draw(st.integers(1, 3)))]).astype(np.float32),
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


# --- The command line on hostile files --------------------------------------------------------
# Each example writes its files (model, --data, config, baseline) into a fresh folder and runs
# `gradaudit check` in-process with a JSON report asked for. The property, for every kind of
# input: exit 0, 1 or 2 only; exit 2 says one line; no file in the folder changes except the
# report asked for (the model, its data and every other input stay byte for byte as written).
CLI_FUZZ = settings(FUZZ, max_examples=max(1, FUZZ_EXAMPLES // 5))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_cli(folder: Path, *args: str) -> int:
    """Run `gradaudit check ARGS` on files in `folder` and assert the property; the exit code."""
    report = folder / "report.json"
    before = snapshot(folder)
    out, err = io.StringIO(), io.StringIO()
    with hang_guard(HANG_S), redirect_stdout(out), redirect_stderr(err):
        code = main(["check", *args, "-q", "--passes", "1", "--max-memory", "64M", "--json", str(report)])
    assert code in (0, 1, 2), err.getvalue()
    if code == 2:
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
    changed = {p for p in before.keys() | snapshot(folder).keys() if before.get(p) != snapshot(folder).get(p)}
    assert changed <= {str(report)}, changed
    return code


def cli_folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="gradaudit-fuzz-cli-")


# Tensor fields: every element type code, dims that overflow or go negative, sparse layouts and
# external-data entries, true or lying. Half the bias types drawn are ones gradaudit holds, and
# most examples make at most one edit, so that many reach the audit itself.
ALL_TYPES = [code for name, code in TensorProto.DataType.items() if name not in ("UNDEFINED", "STRING")]
PACKED_INTEGERS = {getattr(TensorProto, n) for n in ("INT4", "UINT4", "INT2", "UINT2") if hasattr(TensorProto, n)}
DIMS = st.lists(st.sampled_from([-1, 0, 1, 2, 4, 5, 2**31, 2**62, 2**63 - 1]), max_size=4)
SPAN_TEXT = st.one_of(st.integers(-(2**70), 2**70).map(str),
                      st.sampled_from(["", "abc", "1e3", " 8", "0x10", "\u0663", "-0"]))
LOCATIONS = st.sampled_from(["w.bin", "", "../w.bin", "/etc/hostname", "missing.bin", "w.bin/", "."])


def _tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]


def _bias_model(draw: st.DrawFn) -> onnx.ModelProto:
    data_type = draw(st.sampled_from(sorted(HELD_DTYPE)) | st.sampled_from(ALL_TYPES), label="bias type")
    integral = data_type in PACKED_INTEGERS or helper.tensor_dtype_to_np_dtype(data_type).kind in "biu"
    try:
        return models.with_typed_bias(data_type, [1, 0, 1, 0] if integral else [0.5, 1.0, 2.0, 4.0],
                                      as_constant=draw(st.booleans()))
    except (TypeError, ValueError):  # a type onnx.helper cannot fill from a list (complex)
        return models.with_typed_bias(TensorProto.FLOAT, [0.5, 1.0, 2.0, 4.0])


def _make_external(draw: st.DrawFn, tensor: onnx.TensorProto, external: bytearray) -> None:
    """Move the tensor's raw bytes to w.bin at a drawn offset; its entries tell the truth or not."""
    payload = tensor.raw_data
    offset = len(external)
    external.extend(payload)
    truthful = {"location": "w.bin", "offset": str(offset), "length": str(len(payload))}
    entries = {key: draw(st.just(value) | (LOCATIONS if key == "location" else SPAN_TEXT), label=key)
               for key, value in truthful.items()}
    if draw(st.booleans(), label="drop length"):
        del entries["length"]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


@st.composite
def tensor_field_model(draw: st.DrawFn) -> tuple[onnx.ModelProto, bytes]:
    """The MLP with a bias of a drawn type (initializer or Constant), then edits of a tensor's
    type, dims, sparse form or external data; and the bytes of its w.bin."""
    model = _bias_model(draw)
    external = bytearray(draw(st.binary(max_size=16), label="w.bin prefix"))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]), label="edits")):
        tensor = draw(st.sampled_from(_tensors(model)), label="tensor")
        edit = draw(st.sampled_from(["type", "dims", "sparse", "external"]), label="edit")
        if edit == "type":
            tensor.data_type = draw(st.integers(0, 30))
        elif edit == "dims":
            tensor.dims[:] = draw(DIMS)
        elif edit == "sparse" and tensor in model.graph.initializer and tensor.HasField("raw_data"):
            dense = np.frombuffer(tensor.raw_data, np.uint8)
            index = np.array(draw(st.lists(st.integers(-3, dense.size + 3), max_size=16), label="indices"), np.int64)
            model.graph.sparse_initializer.append(helper.make_sparse_tensor(
                numpy_helper.from_array(np.ones(index.size, np.float32), tensor.name),
                numpy_helper.from_array(index.reshape(draw(st.sampled_from([(-1,), (-1, 1)]))), f"{tensor.name}_i"),
                draw(st.just(list(tensor.dims)) | DIMS, label="dense dims")))
            model.graph.initializer.remove(tensor)
        elif edit == "external" and tensor.HasField("raw_data"):
            _make_external(draw, tensor, external)
    return model, bytes(external)


@CLI_FUZZ
@given(case=tensor_field_model())
def test_cli_on_tensor_fields(case: tuple[onnx.ModelProto, bytes]):
    model, external = case
    with cli_folder() as name:
        folder = Path(name)
        (folder / "w.bin").write_bytes(external)
        models.save(model, folder / "model.onnx")
        check_cli(folder, str(folder / "model.onnx"))


# Archives: a torch.save module, a TorchScript module and a torch.export program, each with its
# zip members dropped, renamed (into code/ or out of the archive's folder), overwritten,
# truncated or joined by new ones, saved as .pt, .pt2 or .ts.
@functools.cache
def archive_seeds() -> dict[str, bytes]:
    import torch

    layer = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    seeds = {}
    for kind, save in (("pickle", lambda f: torch.save(layer, f)),
                       ("script", lambda f: torch.jit.save(torch.jit.script(layer), f)),
                       ("export", lambda f: torch.export.save(torch.export.export(layer, (torch.randn(2, 4),)), f))):
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit says it is deprecated
            save(buffer)
        seeds[kind] = buffer.getvalue()
    return seeds


MEMBER_NAMES = st.sampled_from(["code/__torch__.py", "data.pkl", "../escape.pkl", "version", ".data/version",
                                "models/model.json", "constants.pkl", "data/0", "/abs.pkl", ""])


@st.composite
def archive_bytes(draw: st.DrawFn) -> bytes:
    seed = zipfile.ZipFile(io.BytesIO(archive_seeds()[draw(st.sampled_from(["pickle", "script", "export"]),
                                                           label="seed")]))
    members = [(info.filename, seed.read(info)) for info in seed.infolist()]
    for _ in range(draw(st.integers(1, 4), label="edits")):
        edit = draw(st.sampled_from(["drop", "rename", "overwrite", "truncate", "add"]), label="edit")
        index = draw(st.integers(0, max(0, len(members) - 1)))
        if edit == "add" or not members:
            members.append((draw(MEMBER_NAMES), draw(st.binary(max_size=64))))
        elif edit == "drop":
            members.pop(index)
        elif edit == "rename":
            prefix = members[index][0].split("/")[0]
            members[index] = (f"{prefix}/{draw(MEMBER_NAMES)}", members[index][1])
        elif edit == "overwrite":
            members[index] = (members[index][0], draw(st.binary(max_size=64)))
        else:
            members[index] = (members[index][0], members[index][1][: draw(st.integers(0, len(members[index][1])))])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w",
                         compression=draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as archive:
        for name, content in members:
            archive.writestr(name or "unnamed", content)
    return out.getvalue()


@settings(CLI_FUZZ, max_examples=max(1, FUZZ_EXAMPLES // 10))
@given(data=archive_bytes(), suffix=st.sampled_from([".pt", ".pt2", ".ts"]))
def test_cli_on_torch_archives(data: bytes, suffix: str):
    with cli_folder() as name:
        folder = Path(name)
        (folder / f"model{suffix}").write_bytes(data)
        check_cli(folder, str(folder / f"model{suffix}"), "--input-shape", "2,4")


# --data files: .npy, .npz and .pt batches of drawn dtypes and shapes, their .npy headers
# rewritten with other shapes, then bytes flipped or cut.
NPY_SHAPES = st.sampled_from(["(8, 4)", "(4,)", "()", "(1000000, 1000000)", "(-1, 4)", "(8, 4, 0)", "(2**62, 0)",
                              "'x'"])


@st.composite
def data_bytes(draw: st.DrawFn) -> tuple[str, bytes]:
    import torch

    suffix = draw(st.sampled_from([".npy", ".npz", ".pt"]), label="suffix")
    shape = (draw(st.integers(1, 8)), draw(st.sampled_from([4, 3])))
    dtype = draw(st.sampled_from(["<f4", "<f8", "<f2", "<i8", "|u1", "|b1"]))
    array = np.random.default_rng(0).normal(size=shape).astype(dtype)
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, array)
    elif suffix == ".npz":
        np.savez(buffer, *[array] * draw(st.integers(0, 2)))
    else:
        torch.save(torch.from_numpy(array) if draw(st.booleans()) else [torch.from_numpy(array)], buffer)
    data = buffer.getvalue()
    if draw(st.booleans(), label="new shape"):
        data = data.replace(repr(shape).encode(), draw(NPY_SHAPES).encode())
    data = bytearray(data)
    for position, mask in draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=3),
                               label="flips"):
        data[position % len(data)] ^= mask
    return suffix, bytes(data[: draw(st.integers(0, len(data)), label="kept") if draw(st.booleans()) else len(data)])


@CLI_FUZZ
@given(case=data_bytes())
def test_cli_on_data_files(case: tuple[str, bytes]):
    suffix, data = case
    with cli_folder() as name:
        folder = Path(name)
        models.save(models.mlp(), folder / "model.onnx")
        (folder / f"batch{suffix}").write_bytes(data)
        check_cli(folder, str(folder / "model.onnx"), "--data", str(folder / f"batch{suffix}"))


# Configs and baselines: TOML tables of known and unknown keys with values of every TOML type,
# nested at drawn depths; baseline JSON of drawn structure around the real schema.
SCALARS = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                    st.text(max_size=8))
VALUES = st.recursive(SCALARS,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner,
                                                                                  max_size=2),
                      max_leaves=6)
CONFIG_KEYS = st.sampled_from(["fail-on", "input-shape", "batch", "passes", "seed", "timeout", "baseline",
                               "static-only", "ignore", "per-layer-ignore", "unknown-key", "max-memory"])


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


@st.composite
def config_text(draw: st.DrawFn) -> bytes:
    table = draw(st.dictionaries(CONFIG_KEYS, VALUES, max_size=4), label="table")
    lines = ["[tool.gradaudit]"] + [f"{key} = {toml_value(value)}" for key, value in table.items()]
    depth = draw(st.sampled_from([0, 10, 3000]), label="nesting")
    if depth:
        lines.append("deep = " + "[" * depth + "]" * depth)
    data = bytearray("\n".join(lines).encode())
    for position, mask in draw(st.lists(st.tuples(st.integers(0, 10**4), st.integers(1, 255)), max_size=2),
                               label="flips"):
        data[position % len(data)] ^= mask
    return bytes(data)


@st.composite
def baseline_text(draw: st.DrawFn) -> bytes:
    entry = st.fixed_dictionaries({}, optional={"model": VALUES | st.just("model.onnx"),
                                                "code": VALUES | st.just("GA101"),
                                                "layers": VALUES | st.just(["fc1"])})
    document = draw(st.one_of(VALUES, st.fixed_dictionaries(
        {"schema": st.sampled_from(["gradaudit.baseline/1", "other"]) | VALUES,
         "findings": st.lists(entry, max_size=3) | VALUES})))
    text = json.dumps(document)
    depth = draw(st.sampled_from([0, 10, 10**5]), label="nesting")
    return ("[" * depth + text + "]" * depth).encode()


@CLI_FUZZ
@given(config=config_text(), baseline=baseline_text())
def test_cli_on_configs_and_baselines(config: bytes, baseline: bytes):
    with cli_folder() as name:
        folder = Path(name)
        models.save(models.mlp(), folder / "model.onnx")
        (folder / "gradaudit.toml").write_bytes(config)
        (folder / "baseline.json").write_bytes(baseline)
        check_cli(folder, str(folder / "model.onnx"), "--config", str(folder / "gradaudit.toml"),
                  "--baseline", str(folder / "baseline.json"))
