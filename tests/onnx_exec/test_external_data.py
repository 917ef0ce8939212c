"""External data: read from the model's folder, refused when a location leads anywhere else."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradaudit import onnx_to_torch
from gradaudit.errors import InputError
from gradaudit.loaders.onnx_loader import load_onnx


def _linear_model(weight: np.ndarray) -> onnx.ModelProto:
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="dense")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _save_external(model: onnx.ModelProto, path: Path, location: str) -> None:
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=location,
                    size_threshold=0)


def _point_at(path: Path, location: str) -> None:
    """Rewrite the stored location of every external tensor (what a hostile file would hold)."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(path))


@pytest.fixture()
def weight() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


def test_external_weights_load_and_train(tmp_path: Path, weight: np.ndarray) -> None:
    path = tmp_path / "model.onnx"
    _save_external(_linear_model(weight), path, "weights.bin")
    assert (tmp_path / "weights.bin").stat().st_size == weight.nbytes
    module = onnx_to_torch(path)
    np.testing.assert_array_equal(module.w.detach().numpy(), weight)  # exact: the bytes the test wrote
    handle = load_onnx(str(path))
    assert handle.parameters == weight.size
    x = torch.randn(2, 4)
    module(x).sum().backward()
    assert module.w.grad is not None


@pytest.mark.parametrize(
    "location, why",
    [("../secret.bin", "'..'"), ("sub/../../secret.bin", "'..'"), ("missing.bin", "names no file")],
)
def test_locations_outside_the_folder_are_refused(tmp_path: Path, weight: np.ndarray, location: str, why: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "model.onnx"
    _save_external(_linear_model(weight), path, "weights.bin")
    (tmp_path / "secret.bin").write_bytes(weight.tobytes())
    _point_at(path, location)
    for load in (lambda: load_onnx(str(path)), lambda: onnx_to_torch(path)):
        with pytest.raises(InputError, match=why) as info:
            load()
        assert "'w'" in str(info.value) and repr(location) in str(info.value)


def test_absolute_location_is_refused(tmp_path: Path, weight: np.ndarray) -> None:
    path = tmp_path / "model.onnx"
    _save_external(_linear_model(weight), path, "weights.bin")
    _point_at(path, str(tmp_path / "weights.bin"))
    with pytest.raises(InputError, match="absolute path"):
        load_onnx(str(path))


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_leading_out_is_refused(tmp_path: Path, weight: np.ndarray) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "model.onnx"
    _save_external(_linear_model(weight), path, "weights.bin")
    outside = tmp_path / "outside.bin"
    (folder / "weights.bin").rename(outside)
    (folder / "weights.bin").symlink_to(outside)
    with pytest.raises(InputError, match="symlink"):
        load_onnx(str(path))
