"""gradaudit: audit a neural network for exploding and vanishing gradients before training.

Public API: `audit(model, example_inputs) -> Audit` and `onnx_to_torch(path_or_proto)`; both import
torch lazily so the command line starts fast.
"""

from __future__ import annotations

from typing import Any

from gradaudit.version import __version__

__all__ = ["__version__", "audit", "onnx_to_torch"]


def audit(model: Any, example_inputs: Any, **options: Any):
    """Audit a torch module on example inputs; see gradaudit.pipeline.audit."""
    from gradaudit.pipeline import audit as _audit

    return _audit(model, example_inputs, **options)


def onnx_to_torch(model: Any, *, train_mode: bool = True):
    """An ONNX model as a torch.nn.Module with its initializers as parameters."""
    from gradaudit.onnx_exec import onnx_to_torch as _convert

    return _convert(model, train_mode=train_mode)
