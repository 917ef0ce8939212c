"""Hand-built ModelHandles, StaticResults and ProbeResults for the rule and remedy tests.

The loaders, the static estimator and the probe are written in parallel; these builders mirror
their contracts (gradaudit.graph node schema, gradaudit.results) from real torch modules, with
a small closed-form chain estimator standing in for the static analysis.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from gradaudit.diagnosis import FlowSummary, diagnose, log10_ratio
from gradaudit.graph import add_node, dense_fans, forward_order, new_graph, weight_layers
from gradaudit.loss import output_grad_sq
from gradaudit.model import InputSpec, ModelHandle
from gradaudit.results import LayerProbe, NodeEstimate, ProbeResult, StaticResult, WeightEstimate
from gradaudit.rules.critical_variance import activation_moments
from gradaudit.weight_stats import param_stats

ACTIVATION_NAMES = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SELU: "selu", nn.GELU: "gelu"}
BATCH = 8


def mlp(width: int, depth: int, act: type = nn.ReLU, std: float | None = None, seed: int = 0) -> nn.Sequential:
    """depth x (Linear(width, width) + act); weights N(0, std^2) when std is given, biases 0."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(depth):
        linear = nn.Linear(width, width)
        if std is not None:
            nn.init.normal_(linear.weight, std=std)
        nn.init.zeros_(linear.bias)
        layers += [linear, act()]
    return nn.Sequential(*layers)


def _node_for(graph, node_id: str, name: str, module: nn.Module, prev: str) -> None:
    params = {role: param_stats(f"{name}.{attr}", getattr(module, attr))
              for role, attr in (("weight", "weight"), ("bias", "bias"), ("scale", "weight"))
              if getattr(module, attr, None) is not None}
    width = None
    if isinstance(module, nn.Linear):
        kind = dict(op="linear", attrs=dense_fans(module.in_features, module.out_features))
        params.pop("scale")
        width = module.out_features
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d)):
        kind = dict(op="norm", fn="layer" if isinstance(module, nn.LayerNorm) else "batch")
        params.pop("weight")
    else:
        kind = dict(op="activation", fn=ACTIVATION_NAMES[type(module)])
        params = {}
    shape = (BATCH, width) if width else graph.nodes[prev]["out_shape"]
    add_node(graph, node_id, name=name, source=type(module).__name__, params=params, out_shape=shape,
             inputs=[prev], **kind)


def sequential_handle(model: nn.Sequential, fmt: str = "torch") -> ModelHandle:
    """A LayerGraph of a Sequential of Linear / activation / norm modules, named by index."""
    graph = new_graph(fmt)
    width = next(m for m in model if isinstance(m, nn.Linear)).in_features
    add_node(graph, "x", name="input", op="input", source="input", out_shape=(BATCH, width))
    prev = "x"
    for name, module in model.named_children():
        _node_for(graph, f"n{name}", name, module, prev)
        prev = f"n{name}"
    graph.graph.update(inputs=["x"], outputs=[prev])
    return ModelHandle("fixture", fmt, graph, [InputSpec("input", (BATCH, width))], module=model,
                       parameters=sum(p.numel() for p in model.parameters()))


def _forward_q(graph, node: str, q: dict[str, float]) -> tuple[float, float]:
    """(output second moment, backward variance gain) of one node given its inputs' moments."""
    data, preds = graph.nodes[node], list(graph.predecessors(node))
    q_in = q[preds[0]] if preds else 1.0
    if data["op"] == "linear":
        w, b = data["params"]["weight"], data["params"].get("bias")
        return data["attrs"]["fan_in"] * w.rms**2 * q_in + (b.rms**2 if b else 0.0), data["attrs"]["fan_out"] * w.rms**2
    if data["op"] == "activation":
        phi_sq, dphi_sq = activation_moments(data["fn"], data["attrs"], q_in)
        return phi_sq, dphi_sq
    if data["op"] == "norm":
        return 1.0, 1.0 / q_in
    if data["op"] == "add":
        return sum(q[p] for p in preds), 1.0
    return q_in, 1.0


def _half_log10(x: float) -> float:
    return 0.5 * math.log10(x) if x > 0 else -math.inf


def chain_static(handle: ModelHandle) -> StaticResult:
    """Mean-field propagation (THEORY.md) over the graph: q forward, squared gradients backward."""
    graph, q, gain_sq = handle.graph, {}, {}
    order = forward_order(graph)
    for node in order:
        q[node], gain_sq[node] = _forward_q(graph, node, q)
    out = graph.graph["outputs"][0]
    grad = {n: 0.0 for n in order}
    grad[out] = output_grad_sq(q[out], graph.nodes[out]["out_shape"])
    for node in reversed(order):
        for pred in graph.predecessors(node):
            grad[pred] += grad[node] * gain_sq[node]
    nodes = {n: NodeEstimate(q[n], 0.0, grad[n], _half_log10(gain_sq[n])) for n in order}
    weights = []
    for wl in weight_layers(graph):
        q_in = q[next(iter(graph.predecessors(wl.node)))]
        weights.append(WeightEstimate(wl.node, wl.layer, wl.param, wl.op, nodes[wl.node].log10_gain,
                                      _half_log10(q_in * grad[wl.node] * BATCH)))
    grads = [10.0**w.log10_grad_rms for w in weights]
    ratio = log10_ratio(grads[0], grads[-1]) if grads else None
    out_rms = math.sqrt(q[out])
    return StaticResult(nodes, weights, ratio, out_rms, diagnose(FlowSummary(ratio, grads, out_rms)))


def flow_static(handle: ModelHandle, ratio: float, layer_gains: dict[str, float],
                output_rms: float = 1.0, recurrent: dict[str, float] | None = None) -> StaticResult:
    """A StaticResult with a given first/last ratio and per-node backward gains (by display name)."""
    graph = handle.graph
    nodes = {n: NodeEstimate(1.0, 0.0, 1.0, layer_gains.get(graph.nodes[n]["name"], 0.0)) for n in graph.nodes}
    weights = [WeightEstimate(wl.node, wl.layer, wl.param, wl.op, 0.0, -2.0) for wl in weight_layers(graph)]
    grads = [10.0**w.log10_grad_rms for w in weights]
    flow = FlowSummary(ratio, grads, output_rms, recurrent_log10_time_ratio=recurrent or {})
    return StaticResult(nodes, weights, ratio, output_rms, diagnose(flow), recurrent_log10_time_ratio=recurrent or {})


def probe_result(handle: ModelHandle, grad_rms: list[float] | None = None, **layer_overrides) -> ProbeResult:
    """A ProbeResult for the handle's weight layers; `layer_overrides[name] = {field: value}`."""
    wls = weight_layers(handle.graph)
    grads = grad_rms or [0.01] * len(wls)
    layers = []
    for wl, grad in zip(wls, grads):
        fields = dict(grad_rms=grad, weight_rms=0.05, act_mean=0.0, act_std=1.0, dead_frac=0.0, saturated_frac=0.0)
        fields.update(layer_overrides.get(wl.layer, {}))
        layers.append(LayerProbe(wl.node, wl.layer, wl.param, **fields))
    extra = {k: layer_overrides.pop(k) for k in ("nonfinite", "first_nonfinite", "grad_norm", "sharpness",
                                                  "recurrent_log10_time_ratio", "output_rms") if k in layer_overrides}
    ratio = log10_ratio(grads[0], grads[-1]) if grads else None
    flow = FlowSummary(ratio, grads, extra.get("output_rms", 1.0), extra.get("nonfinite", False),
                       extra.get("recurrent_log10_time_ratio", {}))
    return ProbeResult(layers, 3, extra.get("nonfinite", False), extra.get("first_nonfinite"),
                       extra.get("output_rms", 1.0), ratio, diagnose(flow),
                       recurrent_log10_time_ratio=extra.get("recurrent_log10_time_ratio", {}),
                       grad_norm=extra.get("grad_norm", 1.5), sharpness=extra.get("sharpness"))


def residual_handle(blocks: int, width: int = 64, branch_scale: float = 1.0, norm_after_add: bool = False,
                    seed: int = 0) -> ModelHandle:
    """x -> Linear stem -> blocks x (x + Linear(ReLU(x)) * branch_scale [-> LayerNorm]), He init."""
    torch.manual_seed(seed)
    graph = new_graph("torch")
    add_node(graph, "x", name="input", op="input", source="input", out_shape=(BATCH, width))

    def linear(node: str, name: str, prev: str, scale: float = 1.0) -> None:
        weight = torch.randn(width, width) * math.sqrt(2.0 / width) * scale
        add_node(graph, node, name=name, op="linear", source="Linear", attrs=dense_fans(width, width),
                 params={"weight": param_stats(f"{name}.weight", weight)}, out_shape=(BATCH, width), inputs=[prev])

    linear("stem", "stem", "x")
    stream = "stem"
    for b in range(blocks):
        add_node(graph, f"act{b}", name=f"blocks.{b}.act", op="activation", fn="relu", source="ReLU",
                 out_shape=(BATCH, width), inputs=[stream])
        linear(f"fc{b}", f"blocks.{b}.fc", f"act{b}", branch_scale)
        add_node(graph, f"add{b}", name=f"blocks.{b}.add", op="add", source="add", out_shape=(BATCH, width),
                 inputs=[stream, f"fc{b}"])
        stream = f"add{b}"
        if norm_after_add:
            add_node(graph, f"ln{b}", name=f"blocks.{b}.ln", op="norm", fn="layer", source="LayerNorm",
                     out_shape=(BATCH, width), inputs=[stream])
            stream = f"ln{b}"
    graph.graph.update(inputs=["x"], outputs=[stream])
    return ModelHandle("fixture", "torch", graph, [InputSpec("input", (BATCH, width))])


def recurrent_handle(cell: str = "rnn_tanh", hidden: int = 16, seq_len: int = 50) -> ModelHandle:
    """input -> one recurrent node (torch gate stacking) -> Linear head."""
    torch.manual_seed(0)
    gates = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[cell]
    graph = new_graph("torch")
    add_node(graph, "x", name="input", op="input", source="input", out_shape=(BATCH, seq_len, 8))
    params = {"weight_ih": param_stats("rnn.weight_ih_l0", torch.randn(gates * hidden, 8) / 4),
              "weight_hh": param_stats("rnn.weight_hh_l0", torch.randn(gates * hidden, hidden) / 4),
              "bias_ih": param_stats("rnn.bias_ih_l0", torch.zeros(gates * hidden)),
              "bias_hh": param_stats("rnn.bias_hh_l0", torch.zeros(gates * hidden))}
    add_node(graph, "rnn", name="rnn", op="recurrent", fn=cell, source="RNN", params=params,
             attrs={"hidden": hidden, "seq_len": seq_len, "fan_in": 8}, out_shape=(BATCH, seq_len, hidden),
             inputs=["x"])
    add_node(graph, "head", name="head", op="linear", source="Linear", attrs=dense_fans(hidden, 4),
             params={"weight": param_stats("head.weight", torch.randn(4, hidden) / 4)}, out_shape=(BATCH, seq_len, 4),
             inputs=["rnn"])
    graph.graph.update(inputs=["x"], outputs=["head"])
    return ModelHandle("fixture", "torch", graph, [InputSpec("input", (BATCH, seq_len, 8))])
