"""Regenerate every samples/<name>.onnx from its factory: `python samples/export_onnx.py`.

Each model is exported in eval mode, the usual deployment export (Dropout off, BatchNorm on
running statistics), with fixed shapes, the TorchScript exporter and opset 17. The mode is
*preserved* rather than declared EVAL: declaring EVAL lets the exporter fold BatchNorm into the
preceding Conv, and the audit needs the BatchNormalization node, which gradaudit's executor runs
on batch statistics when probing. The factories seed themselves, so running this again
reproduces the same initializers.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

SAMPLES_DIR = Path(__file__).resolve().parent
OPSET = 17

if __package__ in (None, ""):
    sys.path.insert(0, str(SAMPLES_DIR.parent))

from samples import SAMPLES, factory  # noqa: E402


def input_names(count: int) -> list[str]:
    """"input" for a single-input model, "input_0", "input_1", ... otherwise."""
    return ["input"] if count == 1 else [f"input_{i}" for i in range(count)]


def export_sample(name: str, directory: Path) -> Path:
    """Export the sample `name` to `directory/<name>.onnx` and return the path."""
    model, inputs = factory(name)()
    path = directory / f"{name}.onnx"
    with warnings.catch_warnings():
        # Both are about choices made on purpose above: the TorchScript exporter, and PRESERVE
        # (whose constant-folding caveat concerns modules in training mode; ours are in eval).
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="It is recommended that constant folding be turned off")
        torch.onnx.export(
            model.eval(),
            inputs,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            training=torch.onnx.TrainingMode.PRESERVE,
            input_names=input_names(len(inputs)),
            output_names=["output"],
        )
    return path


def export_all(directory: Path = SAMPLES_DIR) -> list[Path]:
    """Export every sample into `directory`."""
    return [export_sample(name, directory) for name in SAMPLES]


if __name__ == "__main__":
    for written in export_all():
        print(f"wrote {written}")
