"""External-data initializer statistics streamed from disk equal those of the loaded tensors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradaudit.errors import InputError
from gradaudit.graph import param_stats
from gradaudit.loaders.onnx_stream import external_initializer_stats


def _save(folder, weights: dict[str, np.ndarray]) -> str:
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits)
    path = str(folder / "model.onnx")
    onnx.save(helper.make_model(graph), path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    return path


def test_streamed_statistics_match(tmp_path) -> None:
    rng = np.random.default_rng(0)
    weights = {"dense": rng.standard_normal((3000, 200)).astype(np.float32),
               "conv": (rng.standard_normal((64, 3, 5, 5)) * 0.1 + 0.2).astype(np.float32),
               "scale": np.ones(7, np.float32)}
    found = external_initializer_stats(_save(tmp_path, weights))
    assert set(found) == set(weights)
    for name, value in weights.items():
        want = param_stats(name, torch.from_numpy(value))
        assert found[name].shape == want.shape and found[name].absmax == want.absmax
        for field in ("mean", "rms", "std", "row_sum_sq"):
            assert getattr(found[name], field) == pytest.approx(getattr(want, field), rel=1e-9, abs=1e-7)


def test_location_outside_the_folder_is_refused(tmp_path) -> None:
    path = _save(tmp_path, {"w": np.ones((4, 4), np.float32)})
    model = onnx.load(path, load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../elsewhere.bin"
    onnx.save(model, path)
    with pytest.raises(InputError, match="climbs out"):
        external_initializer_stats(path)
