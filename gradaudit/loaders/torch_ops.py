"""How torch modules and functions map onto the LayerGraph vocabulary (gradaudit.graph).

Two registries, one small rule per entry: `MODULE_RULES` for the modules kept whole as fx leaves
(their gain semantics are known as a unit: Linear, ConvNd, norms, activations, RNNs, attention...)
and `FUNCTION_RULES` for everything fx records inside traced-through code (`F.relu`, `x + y`,
`torch.cat`, `x.view`, `@`). A rule reads one `Call` (concrete argument values, which operands
are activations and which are constants) and returns a `NodeSpec`. Anything without a rule
becomes op "unknown" with its torch name as source, so the static estimate says it is partial.
The activations' entries of both come from their declarations (gradaudit.activations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from gradaudit.activations import DECLARED, Activation
from gradaudit.graph import NodeSpec, ParamStats, conv_fans, dense_fans


@dataclass
class Call:
    """One traced call as the rules see it.

    `args`/`kwargs` hold concrete values; `is_data[i]` tells whether positional argument i is an
    activation (depends on a model input). `param` turns a constant operand into ParamStats named
    after the module parameter it comes from; `module_param` does the same for a leaf's attribute.
    """

    name: str
    args: tuple
    kwargs: dict[str, Any]
    is_data: tuple[bool, ...]
    out: Any
    param: Callable[[int, str, int], ParamStats | None]  # (position, keyword, out_axis)
    module_param: Callable[[str, int], ParamStats | None]  # (attribute path, out_axis)

    def arg(self, index: int, key: str, default: Any = None) -> Any:
        if key in self.kwargs:
            return self.kwargs[key]
        return self.args[index] if index < len(self.args) else default


def per_dim(value: Any, dims: int) -> list[Any]:
    """A per-spatial-dimension list from torch's int-or-tuple arguments (stride=2 -> [2, 2])."""
    return list(value) if isinstance(value, (tuple, list)) else [value] * dims


def _params(call: Call, **roles: str) -> dict[str, ParamStats]:
    found = {role: call.module_param(attr, 0) for role, attr in roles.items()}
    return {role: stats for role, stats in found.items() if stats is not None}


# ---- leaf modules ------------------------------------------------------------------------------


def _linear_module(m: nn.Linear, call: Call) -> NodeSpec:
    return NodeSpec("linear", attrs=dense_fans(m.in_features, m.out_features),
                    params=_params(call, weight="weight", bias="bias"))


def conv_attrs(weight_shape: tuple[int, ...], stride: Any, groups: int, dilation: Any,
               transposed: bool) -> dict[str, Any]:
    """Conv attrs of the schema: fans from graph.conv_fans plus the geometry."""
    dims = len(weight_shape) - 2
    strides = per_dim(stride, dims)
    return {
        **conv_fans(weight_shape, groups, strides, transposed),
        "stride": strides,
        "groups": groups,
        "kernel": list(weight_shape[2:]),
        "dilation": per_dim(dilation, dims),
        "transposed": transposed,
    }


def _conv_module(m: nn.modules.conv._ConvNd, call: Call) -> NodeSpec:
    attrs = conv_attrs(tuple(m.weight.shape), m.stride, m.groups, m.dilation, m.transposed)
    return NodeSpec("conv", attrs=attrs, params=_params(call, weight="weight", bias="bias"))


def _embedding_module(m: nn.Embedding | nn.EmbeddingBag, call: Call) -> NodeSpec:
    return NodeSpec("embedding", attrs={"num_embeddings": m.num_embeddings, "fan_in": 1.0},
                    params=_params(call, weight="weight"))


def _norm_module(kind: str) -> Callable[[nn.Module, Call], NodeSpec]:
    def rule(m: nn.Module, call: Call) -> NodeSpec:
        attrs: dict[str, Any] = {}
        if getattr(m, "eps", None) is not None:
            attrs["eps"] = float(m.eps)
        if kind == "batch":
            attrs["momentum"] = m.momentum
        if hasattr(m, "normalized_shape"):
            shape = per_dim(m.normalized_shape, 1)
            attrs.update(normalized_shape=shape, axis=list(range(-len(shape), 0)))
        if kind == "group":
            attrs["num_groups"] = m.num_groups
        if kind == "lrn":
            attrs.update(size=m.size, alpha=m.alpha, beta=m.beta, bias=m.k)
        return NodeSpec("norm", kind, attrs, _params(call, scale="weight", bias="bias"))

    return rule


def _activation_module(declared: Activation) -> Callable[[nn.Module, Call], NodeSpec]:
    def rule(m: nn.Module, call: Call) -> NodeSpec:
        attrs = {key: getattr(m, attr) for key, attr in declared.module_attrs.items()}
        return NodeSpec("activation", declared.name, attrs)

    return rule


def _prelu_module(m: nn.PReLU, call: Call) -> NodeSpec:
    return NodeSpec("activation", "prelu", {"slope": float(m.weight.detach().mean())}, _params(call, slope="weight"))


def _pool_module(kind: str) -> Callable[[nn.Module, Call], NodeSpec]:
    def rule(m: nn.Module, call: Call) -> NodeSpec:
        if hasattr(m, "output_size"):
            return adaptive_pool(kind, call.args[0], m.output_size)
        dims = max(call.args[0].dim() - 2, 1)
        stride = m.stride if m.stride is not None else m.kernel_size
        return NodeSpec("pool", kind, {"kernel": per_dim(m.kernel_size, dims), "stride": per_dim(stride, dims)})

    return rule


def adaptive_pool(kind: str, x: torch.Tensor, output_size: Any) -> NodeSpec:
    """Adaptive pooling to size 1 everywhere is global pooling; otherwise an equivalent kernel."""
    spatial = list(x.shape[2:]) if x.dim() > 2 else list(x.shape[-1:])
    sizes = [s if o is None else o for s, o in zip(spatial, per_dim(output_size, len(spatial)))]
    if all(o == 1 for o in sizes):
        return NodeSpec("pool", "global_" + kind, {"kernel": spatial, "stride": spatial})
    kernel = [s // o for s, o in zip(spatial, sizes)]
    return NodeSpec("pool", kind, {"kernel": kernel, "stride": kernel})


def softmax_axis(dim: Any, ndim: int) -> int:
    """torch's implicit softmax dim (`_get_softmax_dim`) when none is given."""
    if dim is not None:
        return int(dim)
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_module(fn: str | None) -> Callable[[nn.Module, Call], NodeSpec]:
    def rule(m: nn.Module, call: Call) -> NodeSpec:
        return NodeSpec("softmax", fn, {"axis": softmax_axis(m.dim, call.args[0].dim())})

    return rule


def _recurrent_module(m: nn.RNNBase, call: Call) -> NodeSpec:
    cell = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}[m.mode]
    x = call.args[0]
    time_axis = 1 if m.batch_first and x.dim() == 3 else 0
    attrs = {
        "hidden": m.hidden_size,
        "seq_len": int(x.shape[time_axis]),
        "time_axis": time_axis,
        "num_layers": m.num_layers,
        "bidirectional": m.bidirectional,
        "fan_in": m.input_size,
    }
    if m.bias:  # per-gate offsets (a forget-gate bias) that the stacked bias's statistics hide
        gates = (m.bias_ih_l0 + m.bias_hh_l0).detach().reshape(-1, m.hidden_size).mean(dim=1)
        attrs["gate_bias_means"] = [float(v) for v in gates]
    params: dict[str, ParamStats] = {}
    for attr in m._flat_weights_names:
        role = attr.removesuffix("_l0")  # first layer under the schema's roles, deeper ones by torch name
        stats = call.module_param(attr, 0)
        if stats is not None:
            params[role] = stats
    return NodeSpec("recurrent", cell, attrs, params)


def _attention_module(m: nn.MultiheadAttention, call: Call) -> NodeSpec:
    head_dim = m.embed_dim // m.num_heads
    attrs = {"embed_dim": m.embed_dim, "num_heads": m.num_heads, "scale": 1.0 / math.sqrt(head_dim)}
    params = _params(call, in_proj_weight="in_proj_weight", in_proj_bias="in_proj_bias")
    if "in_proj_weight" not in params:  # separate q/k/v projections (kdim/vdim differ)
        params.update(_params(call, in_proj_weight="q_proj_weight", k_proj_weight="k_proj_weight",
                              v_proj_weight="v_proj_weight"))
    params.update(_params(call, out_proj_weight="out_proj.weight", out_proj_bias="out_proj.bias"))
    return NodeSpec("attention", attrs=attrs, params=params)


def _fixed(op: str, fn: str | None = None) -> Callable[[Any, Call], NodeSpec]:
    return lambda m, call: NodeSpec(op, fn)


def _dropout_module(m: nn.Module, call: Call) -> NodeSpec:
    return NodeSpec("dropout", attrs={"p": float(m.p)})


# The declared activations' modules, subclasses first (ReLU6 is a Hardtanh): rules are checked in order.
_ACTIVATION_MODULES = sorted(
    ((getattr(nn, name), _activation_module(declared)) for declared in DECLARED for name in declared.torch_modules),
    key=lambda entry: -len(entry[0].__mro__),
)
MODULE_RULES: list[tuple[type | tuple[type, ...], Callable[[Any, Call], NodeSpec]]] = [
    *_ACTIVATION_MODULES,
    (nn.Linear, _linear_module),
    (nn.modules.conv._ConvNd, _conv_module),
    ((nn.Embedding, nn.EmbeddingBag), _embedding_module),
    (nn.modules.batchnorm._BatchNorm, _norm_module("batch")),
    (nn.LayerNorm, _norm_module("layer")),
    (nn.GroupNorm, _norm_module("group")),
    (nn.modules.instancenorm._InstanceNorm, _norm_module("instance")),
    (nn.RMSNorm, _norm_module("rms")),
    (nn.LocalResponseNorm, _norm_module("lrn")),
    (nn.PReLU, _prelu_module),
    (nn.modules.dropout._DropoutNd, _dropout_module),
    (nn.modules.pooling._MaxPoolNd, _pool_module("max")),
    (nn.modules.pooling._AvgPoolNd, _pool_module("avg")),
    (nn.modules.pooling._AdaptiveAvgPoolNd, _pool_module("avg")),
    (nn.modules.pooling._AdaptiveMaxPoolNd, _pool_module("max")),
    (nn.Softmax, _softmax_module(None)),
    (nn.LogSoftmax, _softmax_module("log_softmax")),
    (nn.Flatten, _fixed("reshape")),
    (nn.Identity, _fixed("identity")),
    (nn.RNNBase, _recurrent_module),
    (nn.MultiheadAttention, _attention_module),
]


def module_rule(m: nn.Module) -> Callable[[Any, Call], NodeSpec] | None:
    """The rule of a module kept whole (an fx leaf), or None to trace through it.

    A library subclass that rewrites forward (timm's BatchNormAct2d applies its activation after
    the norm) is traced through: kept whole, the rule would drop what its forward adds."""
    for cls, rule in MODULE_RULES:
        if isinstance(m, cls):
            return rule if type(m).forward.__module__.startswith("torch.") else None
    return None
