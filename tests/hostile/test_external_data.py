"""External data locations that leave the model's folder are refused before a byte is read.

A hostile model names `../secret.bin`, an absolute path, or a file in its folder that is a
symlink to somewhere else; each is exit 2 with one line naming the tensor. A location inside the
folder is the control: the same model then loads and is audited.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import external_data_helper, numpy_helper

from gradaudit.cli import main
from tests.hostile import models


def external_model(folder: Path, location: str) -> Path:
    """The MLP with its first weight stored externally at `location` (relative to `folder`)."""
    model = models.mlp()
    tensor = model.graph.initializer[0]
    external_data_helper.set_external_data(tensor, location=location, offset=0, length=len(tensor.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    return models.save(model, folder / "model.onnx")


def weight_bytes() -> bytes:
    return numpy_helper.to_array(models.mlp().graph.initializer[0]).astype(np.float32).tobytes()


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """model/ holds the model; outside/secret.bin is a file next to it, outside its folder."""
    model_dir, outside = tmp_path / "model", tmp_path / "outside"
    model_dir.mkdir()
    outside.mkdir()
    (outside / "secret.bin").write_bytes(weight_bytes())
    return model_dir, outside / "secret.bin"


def check(capsys, path: Path) -> tuple[int, str]:
    code = main(["check", str(path), "-q"])
    return code, capsys.readouterr().err


def test_location_inside_the_folder_loads(layout, capsys):
    model_dir, _ = layout
    (model_dir / "weights.bin").write_bytes(weight_bytes())
    code, err = check(capsys, external_model(model_dir, "weights.bin"))
    assert code in (0, 1), err


@pytest.mark.parametrize("kind", ["dot-dot", "absolute", "symlink-out"])
def test_location_outside_the_folder_is_refused(layout, capsys, kind: str):
    model_dir, secret = layout
    if kind == "dot-dot":
        location = "../outside/secret.bin"
    elif kind == "absolute":
        location = str(secret)
    else:
        (model_dir / "weights.bin").symlink_to(secret)
        location = "weights.bin"
    code, err = check(capsys, external_model(model_dir, location))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "'W1'" in lines[0] and "model's folder" in lines[0], lines[0]
