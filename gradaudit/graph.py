"""The LayerGraph: the one intermediate both loaders produce and every analysis reads.

A LayerGraph is a plain `networkx.DiGraph`. Each node is one operation; its attributes follow the
schema below so the static estimator, the probe, the rules and the reports never need to know
whether the model came from ONNX or PyTorch.

Node attributes (all present on every node):
    name      str     the name a user recognises (ONNX node name, torch module path / fx name)
    op        str     one of OP_KINDS
    fn        str|None  sub-kind: activation function for op="activation" (a name known to
                      gradaudit.activations), norm kind for op="norm" ("batch", "layer",
                      "group", "instance", "rms"), pool kind for op="pool" ("max", "avg",
                      "global_avg", "global_max"), cell for op="recurrent" ("rnn_tanh",
                      "rnn_relu", "lstm", "gru"), reduce kind for op="reduce" ("mean", "sum")
    attrs     dict    op-specific numbers: see ATTRS below
    params    dict[str, ParamStats]  role -> statistics of a parameter tensor of this node
    out_shape tuple[int, ...] | None   shape of the (first) output, batch included
    source    str     original op type (ONNX op_type, torch module class or function name)
    order     int     position in forward (topological) execution order, from 0

ATTRS by op (keys the loaders set when they apply):
    linear     fan_in, fan_out (per-element forward / backward fans, from `dense_fans`)
    conv       fan_in, fan_out (from `conv_fans`), stride, groups, kernel, dilation, transposed
    embedding  num_embeddings, fan_in=1, fan_out (≈ batch tokens per row; may be omitted)
    activation alpha / beta / min / max / approximate ... (function parameters)
    norm       axis / num_groups / eps; affine params under params "scale" / "bias"
    recurrent  hidden, seq_len, time_axis, num_layers, bidirectional, fan_in (input size)
    attention  embed_dim, num_heads, scale (the logit scale, default 1/sqrt(head_dim))
    pool       kernel, stride
    softmax    axis
    concat     axis
    scale      value, mean (RMS and mean of a constant multiplier: Mul/Div by a constant, Neg)

Param roles: "weight" (ndim >= 2 for linear/conv/embedding), "bias", "scale" (norm gamma),
"weight_ih", "weight_hh", "bias_ih", "bias_hh" (recurrent; stacked over gates as in torch),
"in_proj_weight", "out_proj_weight" (attention). `ParamStats.name` is the key under which the
tensor is found in the ModelHandle's torch module (`named_parameters()` qualified name).

Edges u -> v carry `slots`: the list of input positions of v fed by u (x + x gives [0, 1]).

Graph attributes: inputs (list of input node ids, in order), outputs (list of node ids whose
results are the model outputs, in order), partial (bool: parts of the model are not represented),
partial_reason (str), format ("onnx" | "torch"). Optional: output_slots (for each of `outputs`,
its position among the tensors the runner returns, where some are off the data path) and
gradient_cut ({"used": names the loss reads, "cut": outputs that carry no gradient: indices,
counts, masks}).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence, TypeVar

import networkx as nx


class _OnNode(Protocol):
    """Anything that names its LayerGraph node (a weight estimate, a probed layer)."""

    node: str


T = TypeVar("T", bound=_OnNode)

OP_KINDS = frozenset(
    {
        "input",  # a model input
        "constant",  # a non-trainable constant tensor feeding the graph
        "linear",  # Gemm / MatMul with a weight / nn.Linear
        "conv",  # Conv / ConvTranspose / nn.ConvNd
        "embedding",  # Gather from a weight table / nn.Embedding
        "matmul",  # product of two activations (attention scores, ...)
        "activation",  # elementwise nonlinearity, fn names it
        "norm",  # batch/layer/group/instance/rms normalisation, fn names it
        "add",  # elementwise sum of activations (residuals)
        "mul",  # elementwise product of activations (gating)
        "divide",  # elementwise quotient of activations (a normaliser computed in the graph)
        "maximum",  # elementwise larger of two activations
        "exp_gap",  # exp(x - max(x, y)) = exp(min(x - y, 0)): a stabilised log-sum-exp's weight
        "scale",  # multiplication by a constant
        "concat",
        "pool",
        "softmax",
        "attention",  # a fused attention block (nn.MultiheadAttention)
        "recurrent",  # RNN / LSTM / GRU
        "reshape",  # reshape-like: Reshape, Flatten, Transpose, Squeeze, Slice, Split, ...
        "dropout",
        "identity",
        "reduce",  # mean / sum over axes
        "output",
        "unknown",  # an op no gain rule covers; the static estimate becomes partial
    }
)

WEIGHT_ROLES = ("weight", "weight_ih", "weight_hh", "in_proj_weight", "out_proj_weight")


def is_weight_role(role: str) -> bool:
    """A weight-matrix role: the WEIGHT_ROLES, plus per-layer/direction recurrent ones
    (`weight_ih_l1`, `weight_hh_l0_reverse`) of stacked or bidirectional RNNs."""
    return role in WEIGHT_ROLES or role.startswith(("weight_ih_", "weight_hh_"))


@dataclass(frozen=True)
class ParamStats:
    """Statistics of one parameter tensor, taken once by the loader from the real weights.

    `row_sum_sq` is the mean over output units of (sum of that unit's incoming weights)^2: with a
    non-centred input of mean mu, a linear layer's output second moment gains row_sum_sq * mu^2,
    which is how constant or biased weights make a signal grow coherently.
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    mean: float
    std: float
    rms: float
    absmax: float
    nonfinite: int
    row_sum_sq: float
    rows_identical: bool

    @property
    def ndim(self) -> int:
        return len(self.shape)


def dense_fans(in_features: int, out_features: int) -> dict[str, float]:
    """Fans of a dense layer: each output sums `in_features` inputs and vice versa."""
    return {"fan_in": float(in_features), "fan_out": float(out_features)}


def conv_fans(
    weight_shape: tuple[int, ...], groups: int = 1, stride: Iterable[int] = (), transposed: bool = False
) -> dict[str, float]:
    """Per-element fans of a convolution (THEORY.md: stride s divides the backward fan by ~s^d).

    Torch/ONNX Conv weight: (C_out, C_in/groups, *k). ConvTranspose weight: (C_in, C_out/groups, *k).
    For a transposed conv the roles swap: the forward pass scatters, so the stride divides the
    forward fan instead of the backward one.
    """
    kernel = math.prod(weight_shape[2:]) if len(weight_shape) > 2 else 1
    strides = math.prod(stride) if stride else 1
    fan_in: float
    fan_out: float
    if transposed:
        c_in, c_out_g = weight_shape[0], weight_shape[1]
        fan_in = (c_in / groups) * kernel / strides
        fan_out = c_out_g * kernel
    else:
        c_out, c_in_g = weight_shape[0], weight_shape[1]
        fan_in = c_in_g * kernel
        fan_out = (c_out / groups) * kernel / strides
    return {"fan_in": float(fan_in), "fan_out": float(fan_out)}


@dataclass
class NodeSpec:
    """What one source operation becomes in the LayerGraph, before it is added as a node; both
    loaders' vocabulary mappings (torch calls, ONNX nodes) return one."""

    op: str
    fn: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, ParamStats] = field(default_factory=dict)


def new_graph(fmt: str) -> nx.DiGraph:
    """An empty LayerGraph with its graph-level attributes set."""
    return nx.DiGraph(inputs=[], outputs=[], partial=False, partial_reason="", format=fmt)


def add_node(
    graph: nx.DiGraph,
    node_id: str,
    *,
    name: str,
    op: str,
    source: str,
    fn: str | None = None,
    attrs: dict[str, Any] | None = None,
    params: dict[str, ParamStats] | None = None,
    out_shape: tuple[int, ...] | None = None,
    inputs: Iterable[str] = (),
) -> None:
    """Add one node following the schema, with edges from its input nodes in slot order."""
    if op not in OP_KINDS:
        raise ValueError(f"unknown op kind {op!r} for node {name!r}")
    graph.add_node(
        node_id,
        name=name,
        op=op,
        fn=fn,
        attrs=dict(attrs or {}),
        params=dict(params or {}),
        out_shape=tuple(out_shape) if out_shape is not None else None,
        source=source,
        order=graph.number_of_nodes(),
    )
    for slot, src in enumerate(inputs):
        if graph.has_edge(src, node_id):
            graph.pred[node_id][src]["slots"].append(slot)
        else:
            graph.add_edge(src, node_id, slots=[slot])


def ordered_inputs(graph: nx.DiGraph, node_id: str) -> list[str]:
    """The producers of a node's inputs in slot order (a producer used twice appears twice)."""
    pairs = [(slot, src) for src, edge in graph.pred[node_id].items() for slot in edge["slots"]]
    return [src for _, src in sorted(pairs)]


def forward_order(graph: nx.DiGraph) -> list[str]:
    """Node ids in forward execution order (the loaders' `order`, a topological order)."""
    return sorted(graph.nodes, key=lambda n: graph.nodes[n]["order"])


@dataclass(frozen=True)
class WeightLayer:
    """One *weight layer* of DESIGN.md: a parameter tensor with ndim >= 2."""

    node: str  # node id in the LayerGraph
    layer: str  # display name of the node
    param: str  # qualified parameter name in the torch module
    role: str
    op: str


def weight_layers(graph: nx.DiGraph) -> list[WeightLayer]:
    """Weight tensors (ndim >= 2) ordered by first use in the forward pass, each listed once."""
    seen: set[str] = set()
    layers: list[WeightLayer] = []
    for node_id in forward_order(graph):
        data = graph.nodes[node_id]
        for role, stats in data["params"].items():
            if not is_weight_role(role) or stats.ndim < 2 or stats.name in seen:
                continue
            seen.add(stats.name)
            layers.append(WeightLayer(node_id, data["name"], stats.name, role, data["op"]))
    return layers


def output_ancestors(graph: nx.DiGraph) -> set[str]:
    """The outputs and every node one of them depends on."""
    outputs = graph.graph.get("outputs", [])
    return set(outputs).union(*(nx.ancestors(graph, output) for output in outputs))


ZERO_BLOCKING_OPS = ("linear", "conv")
COPY_OPS = ("reshape", "identity", "dropout")  # ops that pass a tensor's values on unscaled


def _zero_weight(data: dict[str, Any]) -> bool:
    weight = data["params"].get("weight")
    return weight is not None and weight.numel > 0 and weight.absmax == 0


def _computes_zero(graph: nx.DiGraph, node: str) -> bool:
    """The node's output is exactly zero whatever its input: a zero-weight dense layer without
    a (nonzero) bias, or a reshape, copy or dropout of one (adaLN-Zero's gate)."""
    data = graph.nodes[node]
    while data["op"] in COPY_OPS and graph.in_degree(node) == 1:
        node = next(iter(graph.predecessors(node)))
        data = graph.nodes[node]
    bias = data["params"].get("bias")
    return data["op"] in ZERO_BLOCKING_OPS and _zero_weight(data) and (bias is None or bias.absmax == 0)


def _passes_gradient(graph: nx.DiGraph, producer: str, consumer: str) -> bool:
    """Whether `consumer` hands a nonzero gradient back to `producer` at initialisation: a
    zero-weight layer's input gradient is W^T g = 0, a product's is g times the other factor."""
    data = graph.nodes[consumer]
    if data["op"] in ZERO_BLOCKING_OPS and _zero_weight(data):
        return False
    if data["op"] == "scale" and data["attrs"].get("value") == 0:
        return False
    if data["op"] == "mul":
        return not any(_computes_zero(graph, other) for other in ordered_inputs(graph, consumer) if other != producer)
    return True


def outputs_zero_by_design(graph: nx.DiGraph) -> bool:
    """Every output is a zero-initialised layer's (torchvision ViT's zero head, a zero last layer
    of a policy or a diffusion noise predictor): its RMS is 0 by the init's choice, not a
    collapsed signal, and the first step moves it, since that layer's own gradient x^T g is not
    zero. Whether the signal reaching it collapsed is what its gradient then says."""
    outputs = graph.graph.get("outputs", [])
    return bool(outputs) and all(_computes_zero(graph, output) for output in outputs)


def gradient_reaching(graph: nx.DiGraph) -> set[str]:
    """The nodes a gradient reaches at initialisation: those an output depends on through ops
    that pass it back. Behind a zero-initialised layer or gate (Fixup, ReZero, LoRA's B, a zero
    head, adaLN-Zero) it is exactly zero until that layer takes its first step; the zero layer's
    own gradient, sqrt(q_in G_out), is not."""
    outputs = graph.graph.get("outputs", [])
    reached, frontier = set(outputs), list(outputs)
    while frontier:
        node = frontier.pop()
        for producer in graph.predecessors(node):
            if producer not in reached and _passes_gradient(graph, producer, node):
                reached.add(producer)
                frontier.append(producer)
    return reached


def weight_positions(graph: nx.DiGraph, node: str) -> int:
    """How many positions per example a node applies its weight at: a convolution's output pixels,
    a recurrent layer's steps, a linear layer's tokens (the dims between batch and features); 1
    for an embedding (each row is read where its token occurs) and for a plain (batch, features) layer."""
    data = graph.nodes[node]
    shape = data.get("out_shape") or ()
    if data["op"] == "embedding" or len(shape) < 3:
        return 1
    if data["op"] == "recurrent":
        return max(int(data["attrs"].get("seq_len") or 1), 1)
    inner = shape[2:] if data["op"] == "conv" else shape[1:-1]
    return max(math.prod(d for d in inner if isinstance(d, int) and d > 0), 1)


def normalisation_eps(graph: nx.DiGraph, node: str) -> float | None:
    """The eps of the normalisation the node's output goes only into (through reshapes, copies
    and dropout), None when it goes anywhere else: such a node's weight is scale-invariant,
    L(c W) = L(W), so its gradient is proportional to 1/|W| (Arora et al. 2019, "Theoretical
    analysis of auto rate-tuning by batch normalization") while its output's variance is well
    above eps."""
    outputs = graph.graph.get("outputs", [])
    while node not in outputs and graph.out_degree(node) == 1:
        node = next(iter(graph.successors(node)))
        data = graph.nodes[node]
        if data["op"] == "norm" and data["fn"] != "lrn":
            return float(data["attrs"].get("eps") or 0.0)
        if data["op"] not in COPY_OPS:
            return None
    return None


def flow_ends(graph: nx.DiGraph, layers: Sequence[T]) -> list[T]:
    """The weight layers (anything with a `.node`) the first/last gradient ratio compares: those
    a gradient reaches at initialisation (gradient_reaching). A layer whose result nothing
    downstream uses gets no gradient at all, by construction, and one behind a zero-initialised
    layer none until that layer moves; as the first or last layer either made the ratio 150
    decades (a floor of 10^-154)."""
    reaching = gradient_reaching(graph)
    return [layer for layer in layers if layer.node in reaching]


def tied_end_layers(graph: nx.DiGraph) -> dict[str, int]:
    """The first and last weight layers' tensors that several nodes use (an embedding tied to the
    output head), with how many: their gradient is the sum of all uses, which the first/last
    gradient ratio then compares."""
    layers = weight_layers(graph)
    uses: dict[str, int] = {}
    for _, data in graph.nodes(data=True):
        for role, stats in data["params"].items():
            if is_weight_role(role) and stats.ndim >= 2:
                uses[stats.name] = uses.get(stats.name, 0) + 1
    ends = dict.fromkeys(layer.param for layer in (layers[:1] + layers[-1:]))
    return {param: uses[param] for param in ends if uses.get(param, 0) > 1}


def depth(graph: nx.DiGraph) -> int:
    """Longest chain of weight-bearing nodes from an input to an output (the network's depth)."""
    best: dict[str, int] = {}
    for node_id in forward_order(graph):
        here = 1 if any(is_weight_role(r) for r in graph.nodes[node_id]["params"]) else 0
        best[node_id] = here + max((best[p] for p in graph.predecessors(node_id)), default=0)
    return max(best.values(), default=0)
