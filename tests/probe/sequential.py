"""A hand-made loader for nn.Sequential models, so the probe is tested without the real loaders.

Node ids are the child indices as strings; the runner captures child outputs with forward hooks.
"""

from __future__ import annotations

from typing import Any, Collection, Sequence

import torch
from torch import nn

from gradaudit.graph import add_node, conv_fans, dense_fans, new_graph
from gradaudit.model import InputSpec, ModelHandle
from gradaudit.weight_stats import param_stats


class TakeFirst(nn.Module):
    """Keeps the output sequence of a recurrent layer (drops its final hidden state)."""

    def forward(self, x: Any) -> torch.Tensor:
        return x[0]


ACTIVATION_FNS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}


def _node_kind(child: nn.Module) -> tuple[str, str | None, dict[str, Any]]:
    if isinstance(child, nn.Linear):
        return "linear", None, dense_fans(child.in_features, child.out_features)
    if isinstance(child, nn.Conv2d):
        attrs = conv_fans(tuple(child.weight.shape), child.groups, child.stride)
        return "conv", None, attrs
    if type(child) in ACTIVATION_FNS:
        return "activation", ACTIVATION_FNS[type(child)], {}
    if isinstance(child, nn.BatchNorm1d):
        return "norm", "batch", {"eps": child.eps}
    if isinstance(child, nn.Dropout):
        return "dropout", None, {}
    if isinstance(child, nn.LogSoftmax):
        return "softmax", "log_softmax", {"axis": child.dim}
    if isinstance(child, nn.RNN):
        attrs = {"hidden": child.hidden_size, "time_axis": 1 if child.batch_first else 0, "fan_in": child.input_size}
        return "recurrent", "rnn_tanh", attrs
    return "reshape", None, {}


def _params(child: nn.Module, index: int) -> dict:
    roles = {"weight": "weight", "bias": "bias", "weight_ih_l0": "weight_ih", "weight_hh_l0": "weight_hh"}
    if isinstance(child, nn.BatchNorm1d):
        roles = {"weight": "scale", "bias": "bias"}
    return {
        roles[name]: param_stats(f"{index}.{name}", p)
        for name, p in child.named_parameters(recurse=False)
        if name in roles
    }


def sequential_handle(model: nn.Sequential, input_shape: tuple[int, ...]) -> ModelHandle:
    """A ModelHandle for `model` whose LayerGraph is built by walking its children."""
    graph = new_graph("torch")
    add_node(graph, "input", name="input", op="input", source="input", out_shape=input_shape)
    graph.graph["inputs"] = ["input"]
    previous = "input"
    for index, child in enumerate(model):
        op, fn, attrs = _node_kind(child)
        add_node(graph, str(index), name=f"layer{index}", op=op, fn=fn, attrs=attrs,
                 params=_params(child, index), source=type(child).__name__, inputs=[previous])
        previous = str(index)
    graph.graph["outputs"] = [previous]

    def runner(module: nn.Module, inputs: Sequence[Any], capture: Collection[str]):
        captured: dict[str, Any] = {}
        hooks = [
            child.register_forward_hook(lambda m, args, out, key=str(i): captured.__setitem__(key, out))
            for i, child in enumerate(module)
            if str(i) in capture
        ]
        try:
            return module(*inputs), captured
        finally:
            for hook in hooks:
                hook.remove()

    return ModelHandle(source="test", format="torch", graph=graph, inputs=[InputSpec("x", input_shape)],
                       module=model, runner=runner, parameters=sum(p.numel() for p in model.parameters()))


def mlp(depth: int, width: int, activation: type[nn.Module], init: str, bias: bool = False) -> nn.Sequential:
    """depth Linear+activation blocks and a linear head; init "normal" (N(0,1)), "kaiming" or "default"."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width, bias=bias), activation()]
    layers.append(nn.Linear(width, width, bias=bias))
    for layer in layers:
        if isinstance(layer, nn.Linear) and init == "normal":
            nn.init.normal_(layer.weight)
        elif isinstance(layer, nn.Linear) and init == "kaiming":
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    return nn.Sequential(*layers)
