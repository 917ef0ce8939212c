"""Tiny LayerGraph builder for the static estimator's tests (the loaders are tested elsewhere).

`sequential_graph(layers, input_shape)` turns a list of torch modules, with `Residual(branch)`
for x + branch(x), into a LayerGraph through gradaudit.graph's own helpers.
"""

from __future__ import annotations

import torch
from torch import nn

from gradaudit.graph import add_node, conv_fans, dense_fans, new_graph
from gradaudit.weight_stats import param_stats

ACTIVATION_NAMES = {
    nn.ReLU: "relu",
    nn.Tanh: "tanh",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.Sigmoid: "sigmoid",
}


class Residual(nn.Module):
    """x + branch(x)."""

    def __init__(self, *branch: nn.Module):
        super().__init__()
        self.branch = nn.Sequential(*branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class SelfAttention(nn.Module):
    """nn.MultiheadAttention (batch first) applied as self-attention, one graph node."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]


def _node(module: nn.Module, prefix: str, x: torch.Tensor) -> dict:
    params = {role: param_stats(f"{prefix}.{role}", p) for role, p in module.named_parameters(recurse=False)}
    if isinstance(module, nn.Linear):
        return dict(op="linear", attrs=dense_fans(module.in_features, module.out_features), params=params)
    if isinstance(module, nn.Conv2d):
        attrs = conv_fans(tuple(module.weight.shape), module.groups, module.stride) | {"stride": module.stride}
        return dict(op="conv", attrs=attrs, params=params)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return dict(op="norm", fn="batch", params={("scale" if r == "weight" else r): s for r, s in params.items()})
    if isinstance(module, nn.LayerNorm):
        renamed = {("scale" if r == "weight" else r): s for r, s in params.items()}
        return dict(op="norm", fn="layer", attrs={"normalized_shape": module.normalized_shape}, params=renamed)
    if isinstance(module, SelfAttention):
        attn = module.attn
        params = {
            role: param_stats(f"{prefix}.attn.{role}", p) for role, p in attn.named_parameters() if "." not in role
        }
        params |= {"out_proj_weight": param_stats(f"{prefix}.attn.out_proj.weight", attn.out_proj.weight)}
        params |= {"out_proj_bias": param_stats(f"{prefix}.attn.out_proj.bias", attn.out_proj.bias)}
        return dict(
            op="attention",
            attrs={"embed_dim": attn.embed_dim, "num_heads": attn.num_heads, "batch_first": True},
            params=params,
        )
    if isinstance(module, nn.RNNBase):
        attrs = {
            "hidden": module.hidden_size,
            "seq_len": x.shape[1],
            "time_axis": 1,
            "num_layers": module.num_layers,
            "fan_in": module.input_size,
        }
        renamed = {r.removesuffix("_l0"): param_stats(f"{prefix}.{r}", p) for r, p in module.named_parameters()}
        cell = "rnn_" + module.nonlinearity if isinstance(module, nn.RNN) else module.mode.lower()
        gates = (module.bias_ih_l0 + module.bias_hh_l0).reshape(-1, module.hidden_size).mean(dim=1)
        attrs["gate_bias_means"] = [float(m) for m in gates]
        return dict(op="recurrent", fn=cell, attrs=attrs, params=renamed)
    return dict(op="activation", fn=ACTIVATION_NAMES[type(module)])


def _add_layers(graph, layers, x: torch.Tensor, src: str, prefix: str) -> tuple[str, torch.Tensor]:
    for i, module in enumerate(layers):
        name = f"{prefix}{i}"
        if isinstance(module, Residual):
            end, y = _add_layers(graph, module.branch, x, src, name + ".branch.")
            x = x + y
            add_node(graph, name, name=name, op="add", source="add", out_shape=tuple(x.shape), inputs=[src, end])
        else:
            spec = _node(module, name, x)
            x = module(x)
            if isinstance(x, tuple):
                x = x[0]
            sources = [src] * (3 if isinstance(module, SelfAttention) else 1)
            add_node(
                graph, name, name=name, source=type(module).__name__, out_shape=tuple(x.shape), inputs=sources, **spec
            )
        src = name
    return src, x


def sequential_graph(layers, input_shape: tuple[int, ...], independent_output_gradient: bool = False):
    """A LayerGraph of `layers` applied in order to one float input of `input_shape`.

    `independent_output_gradient` ends the graph in a softmax output, whose loss gradient
    p - onehot holds nothing of the output itself: the setting of THEORY.md's simulations,
    which backpropagate a random gradient (a squared-error loss adds J^T J growth).
    """
    graph = new_graph("torch")
    add_node(graph, "x", name="x", op="input", source="input", out_shape=input_shape)
    graph.graph["inputs"] = ["x"]
    dtype = next((p.dtype for m in layers for p in m.parameters()), torch.float32)
    probe = torch.zeros((2,) + tuple(input_shape[1:]), dtype=dtype)  # shapes only; batch 2 keeps BatchNorm valid
    with torch.no_grad():
        last, _ = _add_layers(graph, layers, probe, "x", "")
    for node in graph.nodes:
        shape = graph.nodes[node]["out_shape"]
        graph.nodes[node]["out_shape"] = (input_shape[0],) + tuple(shape[1:])
    if independent_output_gradient:
        add_node(
            graph,
            "probs",
            name="probs",
            op="softmax",
            source="Softmax",
            attrs={"axis": -1},
            out_shape=graph.nodes[last]["out_shape"],
            inputs=[last],
        )
        last = "probs"
    graph.graph["outputs"] = [last]
    return graph
