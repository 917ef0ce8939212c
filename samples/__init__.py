"""Bundled sample models: small networks whose gradient-flow diagnosis is measured, not intended.

Each sample is one module with `build(seed=0) -> (model, example_inputs)`; `SAMPLES` maps every
sample name to the diagnosis its measurement gives (see samples/README.md for the numbers), and
`export_onnx.py` writes the `.onnx` file of each next to its factory.
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch

SAMPLES: dict[str, str] = {
    "healthy_mlp_kaiming": "healthy",
    "healthy_bn_cnn": "healthy",
    "healthy_preln_transformer": "healthy",
    "exploding_mlp_normal_init": "exploding",
    "exploding_residual_stack": "exploding",
    "exploding_tanh_rnn": "exploding",
    "exploding_bn_plain_stack": "exploding",
    "vanishing_sigmoid_mlp": "vanishing",
    "vanishing_relu_default_init": "vanishing",
    "vanishing_sigmoid_cnn": "vanishing",
    "vanishing_dead_relu_mlp": "vanishing",
    "vanishing_lstm_closed_gate": "vanishing",
}


def factory(name: str) -> Callable[..., tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]:
    """The `build` function of the sample called `name`."""
    if name not in SAMPLES:
        raise KeyError(f"no sample named {name!r}; known: {', '.join(SAMPLES)}")
    return importlib.import_module(f"samples.{name}").build
