"""Valid or merely odd inputs: each is a working audit or one line of exit 2, never exit 3.

Tensors of every type ONNX stores (bfloat16, float16, float8, float4, 4- and 2-bit integers)
are audited with their values; strings are refused by name. A sparse initializer is made dense.
Shapes that cannot be indexed, external-data spans that are not non-negative integers inside
the file, a zip that looks like TorchScript, a raw pickle as --data, configs and baselines nested
deeper than a parser recurses, a folder 1,100 levels deep and a file name that is not UTF-8
each get a one-line answer.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradaudit.cli import main
from gradaudit.loaders import load
from tests.hostile import models


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(["check", *args])
    return code, capsys.readouterr().err


def one_line_refusal(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradaudit: error:"), err
    for word in words:
        assert word in lines[0], err


FLOATS, SIGNED, UNSIGNED = [0.5, 1.0, 2.0, 4.0], [1, -2, 3, -4], [1, 2, 3, 0]
STORED_TYPES = {
    "BFLOAT16": FLOATS, "FLOAT16": FLOATS, "FLOAT8E4M3FN": FLOATS, "FLOAT8E4M3FNUZ": FLOATS, "FLOAT8E5M2": FLOATS,
    "FLOAT8E5M2FNUZ": FLOATS, "FLOAT8E8M0": FLOATS, "FLOAT4E2M1": FLOATS, "INT4": SIGNED, "UINT4": UNSIGNED,
    "INT2": [1, 0, -1, -2], "UINT2": UNSIGNED,
}


@pytest.mark.parametrize("as_constant", [False, True], ids=["initializer", "constant"])
@pytest.mark.parametrize("type_name", [name for name in STORED_TYPES if hasattr(TensorProto, name)])
def test_every_stored_type_is_audited_with_its_values(tmp_path: Path, capsys, type_name: str, as_constant: bool):
    values = STORED_TYPES[type_name]
    path = models.save(models.with_typed_bias(getattr(TensorProto, type_name), values, as_constant=as_constant),
                       tmp_path / "typed.onnx")
    code, err = run(capsys, str(path), "-q")
    assert code in (0, 1), err
    held = load(str(path)).module.state_dict().values()
    expected = torch.tensor(values, dtype=torch.float32)
    assert any(t.shape == (4,) and torch.allclose(t.float(), expected) for t in held)  # exact values of each type


def test_a_bfloat16_model_gets_weight_statistics(tmp_path: Path, capsys):
    """Weights, input and output all bfloat16: the probe runs and measures every layer."""
    rng = np.random.default_rng(0)
    weights = [helper.make_tensor(f"W{i}", TensorProto.BFLOAT16, [4, 4], rng.normal(0, 0.7, 16).tolist())
               for i in (1, 2)]
    model = models.mlp(tuple(weights))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.elem_type = TensorProto.BFLOAT16
    path = models.save(model, tmp_path / "bf16.onnx")
    code = main(["check", str(path), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    layers = report["gradient_flow"]["dynamic"]["layers"]
    assert [layer["param"] for layer in layers] == ["W1", "W2"]
    assert all(0.1 < layer["weight_rms"] < 3.0 for layer in layers)


@pytest.mark.parametrize("as_constant", [False, True], ids=["initializer", "constant"])
def test_a_string_tensor_is_refused_by_name(tmp_path: Path, capsys, as_constant: bool):
    model = models.mlp()
    strings = helper.make_tensor("labels", TensorProto.STRING, [2], [b"cat", b"dog"])
    if as_constant:
        model.graph.node.append(helper.make_node("Constant", [], ["labels"], name="label_table", value=strings))
    else:
        model.graph.initializer.append(strings)
    code, err = run(capsys, str(models.save(model, tmp_path / "strings.onnx")), "-q")
    one_line_refusal(code, err, "label" if as_constant else "'labels'", "STRING")


def test_a_sparse_initializer_is_audited_as_its_dense_weight(tmp_path: Path, capsys):
    model = models.with_sparse_weight()
    path = models.save(model, tmp_path / "sparse.onnx")
    code, err = run(capsys, str(path), "-q")
    assert code in (0, 1), err
    dense = numpy_helper.to_array(models.mlp().graph.initializer[0])
    module = load(str(path)).module
    weight = getattr(module, module.param_names["W1"]).detach().numpy()
    np.testing.assert_array_equal(weight,
                                  np.where(dense > 0, dense, 0))  # exact: a copy of the stored values, no arithmetic


def test_a_sparse_constant_is_made_dense(tmp_path: Path, capsys):
    model = models.mlp()
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([1.5], np.float32), "shift"),
                                       numpy_helper.from_array(np.array([2], np.int64), "shift_idx"), [models.FEATURES])
    model.graph.node.insert(0, helper.make_node("Constant", [], ["shift"], name="shift_value", sparse_value=sparse))
    model.graph.node.insert(2, helper.make_node("Add", ["h", "shift"], ["hs"], name="add_shift"))
    model.graph.node[3].input[0] = "hs"
    code, err = run(capsys, str(models.save(model, tmp_path / "sparse_constant.onnx")), "-q")
    assert code in (0, 1), err


@pytest.mark.parametrize("case, words", [
    ("index out of range", ("'W1'", "outside its shape")),
    ("negative index", ("'W1'", "outside its shape")),
    ("terabytes declared", ("'W1'", "memory cap")),
])
def test_a_malformed_sparse_initializer_is_one_line(tmp_path: Path, capsys, case: str, words: tuple[str, ...]):
    if case == "terabytes declared":
        model = models.with_sparse_weight(np.array([0]))
        model.graph.sparse_initializer[0].dims[:] = [10**6, 10**6]
    else:
        model = models.with_sparse_weight(np.array([3, 10**6] if case == "index out of range" else [-1, 2]))
    code, err = run(capsys, str(models.save(model, tmp_path / "sparse.onnx")), "-q")
    one_line_refusal(code, err, *words)


@pytest.mark.parametrize("where", ["initializer", "constant"])
def test_a_shape_that_cannot_be_indexed_is_refused(tmp_path: Path, capsys, where: str):
    empty = onnx.TensorProto(name="E", data_type=TensorProto.FLOAT, dims=[2**62, 0])
    model = models.mlp()
    if where == "initializer":
        model.graph.initializer.append(empty)
    else:
        model.graph.node.append(helper.make_node("Constant", [], ["E"], name="empty_value", value=empty))
    code, err = run(capsys, str(models.save(model, tmp_path / "empty.onnx")), "-q")
    one_line_refusal(code, err, "'E'" if where == "initializer" else "empty_value", str(2**62))


def test_a_constant_whose_payload_misses_its_shape_is_refused(tmp_path: Path, capsys):
    model = models.mlp()
    short = onnx.TensorProto(name="k", data_type=TensorProto.FLOAT, dims=[1000], float_data=[1.0])
    model.graph.node.append(helper.make_node("Constant", [], ["k"], name="short_value", value=short))
    code, err = run(capsys, str(models.save(model, tmp_path / "short.onnx")), "-q")
    one_line_refusal(code, err, "short_value", "1000")


def _external(folder: Path, entries: dict[str, str], columns: int) -> Path:
    """The MLP with W1 (4 x columns: mapped when large, read by onnx when small) stored
    externally in w.bin with the given offset/length entries."""
    w1 = models.weight("W1", cols=columns, seed=1)
    model = models.mlp((w1, models.weight("W2", rows=columns, seed=2)))
    (folder / "w.bin").write_bytes(w1.raw_data * 2)
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "w.bin", **entries}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return models.save(model, folder / "model.onnx")


@pytest.mark.parametrize("columns", [4, 2048], ids=["read", "mapped"])
@pytest.mark.parametrize("entries, words", [
    ({"offset": "-16"}, ("offset '-16'",)),
    ({"offset": "sixteen"}, ("offset 'sixteen'",)),
    ({"offset": "0", "length": "-4"}, ("length '-4'",)),
    ({"offset": "0", "length": "1e3"}, ("length '1e3'",)),
    ({"offset": str(2**70)}, ("past the end",)),
    ({"offset": "8", "length": str(10**9)}, ("past the end",)),
])
def test_an_external_span_that_is_not_in_the_file_is_one_line(tmp_path: Path, capsys, entries, words, columns: int):
    code, err = run(capsys, str(_external(tmp_path, entries, columns)), "-q")
    one_line_refusal(code, err, "'W1'", *words)


def test_an_external_tensor_without_length_reads_its_own_bytes(tmp_path: Path, capsys):
    """No length entry: the span is the rest of the file, which must then hold the tensor exactly."""
    path = _external(tmp_path, {"offset": str(len(models.weight("W1", cols=2048).raw_data))}, 2048)
    code, err = run(capsys, str(path), "-q")
    assert code in (0, 1), err


def test_a_zip_with_a_code_folder_is_one_line(tmp_path: Path, capsys):
    path = tmp_path / "scripted.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps({"weights": [1, 2]}))
        archive.writestr("model/code/__torch__/model.py", "def forward(self, x):\n    return x\n")
    code, err = run(capsys, str(path), "-q", "--input-shape", "2,4")
    one_line_refusal(code, err, str(path))


@pytest.mark.parametrize("name, content", [
    ("batch.pt", pickle.dumps({"inputs": [1.0, 2.0]})),
    ("batch.npy", pickle.dumps(np.ones((2, 4)))),
])
def test_a_raw_pickle_as_data_is_one_line(tmp_path: Path, capsys, name: str, content: bytes):
    (tmp_path / name).write_bytes(content)
    model = models.save(models.mlp(), tmp_path / "mlp.onnx")
    code, err = run(capsys, str(model), "-q", "--data", str(tmp_path / name))
    one_line_refusal(code, err, f"--data {tmp_path / name}")


DEPTH = 5000


@pytest.mark.parametrize("nested", [
    "ignore = " + "[" * DEPTH + "]" * DEPTH,
    "thresholds = " + "{a = " * DEPTH + "1" + "}" * DEPTH,
], ids=["arrays", "inline-tables"])
def test_a_config_nested_thousands_deep_is_one_line(tmp_path: Path, capsys, nested: str):
    config = tmp_path / "deep.toml"
    config.write_text(f"[tool.gradaudit]\n{nested}\n")
    model = models.save(models.mlp(), tmp_path / "mlp.onnx")
    code, err = run(capsys, str(model), "-q", "--config", str(config))
    one_line_refusal(code, err, str(config), "nested too deeply")


@pytest.mark.parametrize("body", [
    "[" * 10**5 + "]" * 10**5,
    '{"schema": "gradaudit.baseline/1", "findings": [' + '{"a": ' * 10**5 + "1" + "}" * 10**5 + "]}",
], ids=["arrays", "objects"])
def test_a_baseline_nested_thousands_deep_is_one_line(tmp_path: Path, capsys, body: str):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(body)
    model = models.save(models.mlp(), tmp_path / "mlp.onnx")
    code, err = run(capsys, str(model), "-q", "--baseline", str(baseline))
    one_line_refusal(code, err, str(baseline), "nested too deeply")


@pytest.fixture
def deep_folder(tmp_path: Path):
    """tmp_path/d/d/.../d (1,100 levels) holding deep.onnx, built and removed through folder
    descriptors (shutil.rmtree recurses once per level)."""
    folders = [os.open(tmp_path, os.O_RDONLY)]
    for _ in range(1100):
        os.mkdir("d", dir_fd=folders[-1])
        folders.append(os.open("d", os.O_RDONLY, dir_fd=folders[-1]))
    with open(os.open("deep.onnx", os.O_WRONLY | os.O_CREAT, dir_fd=folders[-1]), "wb") as file:
        file.write(models.mlp().SerializeToString())
    yield tmp_path
    os.unlink("deep.onnx", dir_fd=folders[-1])
    for inner, outer in zip(reversed(folders[1:]), reversed(folders[:-1])):
        os.close(inner)
        os.rmdir("d", dir_fd=outer)
    os.close(folders[0])


def test_a_model_1100_folders_deep_is_found_and_audited(deep_folder: Path, capsys):
    code = main(["check", str(deep_folder), "-q"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code in (0, 1)
    assert len(out) == 1 and out[0].endswith("/d" * 1100 + "/deep.onnx)")


def test_a_file_name_that_is_not_utf8_is_written_as_escapes(tmp_path: Path, capsys):
    path = models.save(models.mlp(), tmp_path / os.fsdecode(b"model-\xff\xfe.onnx"))
    reports = {flag: tmp_path / f"audit.{flag[2:]}" for flag in ("--json", "--html", "--sarif", "--junit")}
    code = main(["check", str(path), "--format", "json", *(a for flag, p in reports.items() for a in (flag, str(p)))])
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert json.loads(out)["model"]["source"].endswith("model-\\xff\\xfe.onnx")
    for report in reports.values():  # JSON doubles the backslash, a SARIF URI percent-encodes it
        assert re.search(r"model-(\\\\|\\|%5C)xff(\\\\|\\|%5C)xfe\.onnx", report.read_text(encoding="utf-8")), report


def test_fix_writes_a_bfloat16_model_back_in_bfloat16(tmp_path: Path, capsys):
    """Eight bfloat16 Tanh layers with tiny weights vanish; the rescaled weights keep their type."""
    rng = np.random.default_rng(0)
    nodes, previous, weights = [], "x", []
    for index in range(8):
        weights.append(helper.make_tensor(f"W{index}", TensorProto.BFLOAT16, [16, 16],
                                          rng.normal(0, 0.02, 256).tolist()))
        nodes += [helper.make_node("MatMul", [previous, f"W{index}"], [f"h{index}"], name=f"fc{index}"),
                  helper.make_node("Tanh", [f"h{index}"], [f"a{index}"], name=f"act{index}")]
        previous = f"a{index}"
    graph = helper.make_graph(nodes, "vanishing", [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["N", 16])],
                              [helper.make_tensor_value_info(previous, TensorProto.BFLOAT16, ["N", 16])], weights)
    source = models.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                         tmp_path / "vanishing.onnx")
    fixed = tmp_path / "fixed.onnx"
    assert main(["fix", str(source), "-o", str(fixed)]) == 0, capsys.readouterr().err
    written = onnx.load(str(fixed)).graph.initializer
    assert all(t.data_type == TensorProto.BFLOAT16 for t in written)
    before = numpy_helper.to_array(weights[0]).astype(np.float32).std()
    assert numpy_helper.to_array(written[0]).astype(np.float32).std() > 2 * before  # rescaled up, not left as it was
