"""How ONNX nodes appear in the LayerGraph: one small mapping function per LayerGraph form.

Each op's registration in the executor (gradaudit.onnx_exec.op_registry) names its mapping here
(`layer="gemm"`), or says why it has none; the name is data, so the executor imports nothing from
the loaders. A mapping reads a `NodeView` (the node, its operands resolved to graph producers or
constant values, shapes) and returns a `Kind`: the normalised op, fn, attrs and parameter
statistics the static estimator understands (vocabulary in gradaudit/graph.py). Op types without
a mapping become op "unknown", so the static estimate can say it is partial instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from gradaudit.activations import ONNX_ACTIVATIONS
from gradaudit.errors import failure, strict_static
from gradaudit.graph import NodeSpec, ParamStats, conv_fans, dense_fans
from gradaudit.onnx_exec.op_registry import OPS
from gradaudit.onnx_exec.ops_nn import interpolation_matrix, resize_attrs
from gradaudit.weight_stats import param_stats


@dataclass
class Operand:
    """One input slot of a node: a data-path producer, or a constant with its value."""

    name: str  # ONNX tensor name ('' when the optional input is omitted)
    source: str | None = None  # producing LayerGraph node id when on the data path
    value: torch.Tensor | None = None  # the value of an input-independent operand
    param: str | None = None  # qualified parameter name the value comes from
    shape: tuple[int, ...] | None = None

    def stats(self, out_axis: int = 0) -> ParamStats:
        return param_stats(self.param or self.name, self.value, out_axis)


@dataclass
class NodeView:
    """What a mapping function sees of one ONNX node."""

    op_type: str
    attrs: dict[str, Any]
    operands: list[Operand]
    out_shape: tuple[int, ...] | None
    opset: int

    def operand(self, slot: int) -> Operand:
        return self.operands[slot] if slot < len(self.operands) else Operand("")

    def const(self, slot: int) -> torch.Tensor | None:
        """The constant value at a slot, None when it is data or absent."""
        op = self.operand(slot)
        return op.value if op.source is None else None


@dataclass
class Kind(NodeSpec):
    """A node's place in the vocabulary; `constant_slots` get 'constant' input nodes."""

    constant_slots: tuple[int, ...] = ()


LAYER_MAPPINGS: dict[str, Callable[[NodeView], Kind]] = {}


def mapping(name: str):
    """Register a mapping function under the name op registrations give as `layer`."""

    def wrap(fn: Callable[[NodeView], Kind]) -> Callable[[NodeView], Kind]:
        LAYER_MAPPINGS[name] = fn
        return fn

    return wrap


def node_kind(view: NodeView) -> Kind:
    """The kind the op's registered mapping gives, or op 'unknown' for op types without one.

    A node whose operands a mapping cannot read (a missing shape or value on a model that failed
    to execute, an unusual attribute form) is unknown too, with the error as its `unknown_reason`
    (GA501 shows it): the static estimate then reports itself partial instead of the audit
    failing, except in strict mode (gradaudit.errors.strict_static), where the error is raised.
    """
    spec = OPS.get(view.op_type)
    mapper = LAYER_MAPPINGS.get(spec.layer) if spec is not None and spec.layer else None
    if mapper is None:
        return Kind("unknown")
    try:
        return mapper(view)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as error:
        if strict_static():
            raise
        return Kind("unknown", attrs={"unknown_reason": f"the {view.op_type} mapping failed: {failure(error)}"})


def _rms(t: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean(t.double() ** 2)))


# --- activations ---------------------------------------------------------------------------
@mapping("activation")
def _activation(view: NodeView) -> Kind:
    """A declared activation (gradaudit.activations), every parameter resolved to ONNX's defaults."""
    declared = ONNX_ACTIVATIONS[view.op_type]
    return Kind("activation", declared.name, declared.resolved(view.attrs, onnx=True))


@mapping("prelu")
def _prelu(view: NodeView) -> Kind:
    slope = view.const(1)
    if slope is None:
        return Kind("unknown")
    return Kind("activation", "prelu", {"slope": float(slope.double().mean())})


@mapping("clip")
def _clip(view: NodeView) -> Kind:
    """Clip with constant bounds is hardtanh; with only a zero floor it is a ReLU."""
    lo, hi = view.const(1), view.const(2)
    low = float(lo) if lo is not None else view.attrs.get("min")
    high = float(hi) if hi is not None else view.attrs.get("max")
    if low is not None and high is not None:
        return Kind("activation", "hardtanh", {"min": low, "max": high})
    if low == 0.0:
        return Kind("activation", "relu")
    return Kind("unknown")


# --- dense products --------------------------------------------------------------------------
def _linear(weight: Operand, w: torch.Tensor, out_axis: int, bias: Operand | None) -> Kind:
    fan_in, fan_out = w.shape[1 - out_axis], w.shape[out_axis]
    params = {"weight": param_stats(weight.param or weight.name, w, out_axis)}
    if bias is not None and bias.value is not None and bias.source is None:
        params["bias"] = bias.stats()
    return Kind("linear", attrs=dense_fans(fan_in, fan_out), params=params)


@mapping("gemm")
def _gemm(view: NodeView) -> Kind:
    """transB=1 stores the weight as (out, in): rows are output units (out_axis 0). The stats are
    those of the effective weight alpha * B."""
    a, b = view.operand(0), view.operand(1)
    bias = view.operand(2) if len(view.operands) > 2 else None
    if a.source is not None and b.source is None and b.value is not None and b.value.dim() == 2:
        alpha = view.attrs.get("alpha", 1.0)
        w = b.value if alpha == 1.0 else alpha * b.value
        return _linear(b, w, 0 if view.attrs.get("transB", 0) else 1, bias)
    contraction = a.shape[0 if view.attrs.get("transA", 0) else -1] if a.shape else None
    return Kind("matmul", attrs={"contraction": contraction})


@mapping("matmul")
def _matmul(view: NodeView) -> Kind:
    """x @ W with W (in, out): out_axis 1; W @ x with W (out, in): out_axis 0."""
    a, b = view.operand(0), view.operand(1)
    if a.source is not None and b.source is None and b.value is not None and b.value.dim() == 2:
        return _linear(b, b.value, 1, None)
    if b.source is not None and a.source is None and a.value is not None and a.value.dim() == 2:
        return _linear(a, a.value, 0, None)
    return Kind("matmul", attrs={"contraction": a.shape[-1] if a.shape else None})


@mapping("einsum")
def _einsum(view: NodeView) -> Kind:
    """Contraction = product of the sizes of the letters summed away."""
    lhs, out = view.attrs["equation"].replace(" ", "").split("->")
    terms = lhs.split(",")
    sizes: dict[str, int] = {}
    for term, operand in zip(terms, view.operands):
        for letter, size in zip(term, operand.shape or ()):
            sizes[letter] = size
    summed = {c for term in terms for c in term} - set(out)
    contraction = math.prod(sizes.get(c, 1) for c in summed)
    weights = [(t, o) for t, o in zip(terms, view.operands) if o.source is None and o.value is not None]
    if len(weights) == 1 and len(terms) == 2:
        term, weight = weights[0]
        kept = [i for i, c in enumerate(term) if c not in summed]
        fan_out = math.prod(weight.value.shape[i] for i in kept)
        attrs = dense_fans(contraction, fan_out)
        return Kind("linear", attrs=attrs, params={"weight": weight.stats(kept[0] if kept else 0)})
    return Kind("matmul", attrs={"contraction": contraction})


# --- convolution -----------------------------------------------------------------------------
def _conv(view: NodeView, transposed: bool) -> Kind:
    weight = view.operand(1)
    w = weight.value
    if w is None or weight.source is not None:
        return Kind("unknown")
    dims = w.dim() - 2
    stride = tuple(view.attrs.get("strides", [1] * dims))
    groups = int(view.attrs.get("group", 1))
    attrs = conv_fans(tuple(w.shape), groups, stride, transposed)
    attrs.update(
        stride=stride, groups=groups, kernel=tuple(w.shape[2:]),
        dilation=tuple(view.attrs.get("dilations", [1] * dims)), transposed=transposed,
    )  # fmt: skip
    params = {"weight": weight.stats(1 if transposed else 0)}
    bias = view.operand(2)
    if bias.value is not None and bias.source is None:
        params["bias"] = bias.stats()
    return Kind("conv", attrs=attrs, params=params)


mapping("conv")(lambda view: _conv(view, False))
mapping("conv_transpose")(lambda view: _conv(view, True))


@mapping("causal_conv")
def _causal_conv(view: NodeView) -> Kind:
    """A depthwise conv1d (one group per channel); with its SiLU fused in, no single rule fits."""
    weight = view.const(1)
    if weight is None or view.attrs.get("activation", "none") != "none":
        return Kind("unknown")
    return _conv(NodeView(view.op_type, {"group": weight.shape[0]}, view.operands, view.out_shape, view.opset), False)


# --- normalisation ---------------------------------------------------------------------------
def _affine(view: NodeView) -> dict[str, ParamStats]:
    params = {}
    for slot, role in ((1, "scale"), (2, "bias")):
        operand = view.operand(slot)
        if operand.value is not None and operand.source is None:
            params[role] = operand.stats()
    return params


@mapping("batch_norm")
def _batch_norm(view: NodeView) -> Kind:
    attrs = {"eps": view.attrs.get("epsilon", 1e-5), "momentum": view.attrs.get("momentum", 0.9)}
    return Kind("norm", "batch", attrs, _affine(view))


@mapping("layer_norm")
def _layer_norm(view: NodeView) -> Kind:
    axis = view.attrs.get("axis", -1)
    shape = view.out_shape
    attrs: dict[str, Any] = {"axis": axis, "eps": view.attrs.get("epsilon", 1e-5)}
    if shape:
        attrs["normalized_shape"] = tuple(shape[axis % len(shape) :])
    return Kind("norm", "layer", attrs, _affine(view))


@mapping("rms_norm")
def _rms_norm(view: NodeView) -> Kind:
    """Like LayerNormalization without centring (the `rms` norm of the vocabulary)."""
    return Kind(
        "norm", "rms", {"axis": view.attrs.get("axis", -1), "eps": view.attrs.get("epsilon", 1e-5)}, _affine(view)
    )


@mapping("instance_norm")
def _instance_norm(view: NodeView) -> Kind:
    return Kind("norm", "instance", {"eps": view.attrs.get("epsilon", 1e-5)}, _affine(view))


@mapping("group_norm")
def _group_norm(view: NodeView) -> Kind:
    attrs = {"num_groups": view.attrs["num_groups"], "eps": view.attrs.get("epsilon", 1e-5)}
    return Kind("norm", "group", attrs, _affine(view))


@mapping("lrn")
def _lrn(view: NodeView) -> Kind:
    a = view.attrs
    attrs = {"size": a["size"], "alpha": a.get("alpha", 1e-4), "beta": a.get("beta", 0.75), "bias": a.get("bias", 1.0)}
    return Kind("norm", "lrn", attrs)


# --- pooling and reductions ------------------------------------------------------------------
def _pool(fn: str) -> Callable[[NodeView], Kind]:
    def run(view: NodeView) -> Kind:
        kernel = tuple(view.attrs.get("kernel_shape", ()))
        stride = tuple(view.attrs.get("strides", [1] * len(kernel)))
        return Kind("pool", fn, {"kernel": kernel, "stride": stride} if kernel else {})

    return run


mapping("max_pool")(_pool("max"))
mapping("avg_pool")(_pool("avg"))
mapping("global_avg_pool")(_pool("global_avg"))
mapping("global_max_pool")(_pool("global_max"))



@mapping("resize")
def _resize(view: NodeView) -> Kind:
    """Resampling is average pooling at a fractional stride.

    Along an axis resized n -> m, output i is sum_j W_ij x_j (W: `interpolation_matrix`). For
    uncorrelated inputs the forward second moment scales by F = mean_i sum_j W_ij^2 and the
    gradient reaching an input by (m / n) F. Average pooling with kernel k = 1 / F and stride n / m
    predicts 1 / k forward and 1 / (k stride) backward: the same numbers. Nearest is a copy
    (F = 1): upsampling by s sums s gradients into each input, downsampling drops inputs; linear
    and cubic also average neighbours (F < 1), so they are not reshape-like.
    """
    pool = resampling_pool(view.operand(0).shape, view.out_shape, resize_attrs(view.op_type, view.attrs, view.opset))
    return Kind("pool", "avg", pool) if pool else Kind("unknown")


def resampling_pool(
    x_shape: tuple[int, ...] | None, out_shape: tuple[int, ...] | None, attrs: dict[str, Any]
) -> dict | None:
    """The average pooling (kernel, stride per spatial axis) a resampling of (N, C, *spatial)
    amounts to (`_resize`), for Resize-11 attributes; None when the shapes do not say."""
    if not x_shape or not out_shape or len(x_shape) != len(out_shape) or x_shape[:2] != out_shape[:2]:
        return None
    kernel, stride = [], []
    for n_in, n_out in zip(x_shape[2:], out_shape[2:]):
        weights = interpolation_matrix(n_in, n_out, attrs)
        kernel.append(1.0 / float(weights.pow(2).sum(1).mean()))
        stride.append(n_in / n_out)
    return {"kernel": tuple(kernel), "stride": tuple(stride)}

def _reduce(fn: str) -> Callable[[NodeView], Kind]:
    def run(view: NodeView) -> Kind:
        axes = view.const(1)
        axes_list = [int(a) for a in axes.tolist()] if axes is not None else view.attrs.get("axes")
        return Kind(
            "reduce", fn, {"axes": tuple(axes_list) if axes_list else None, "keepdims": view.attrs.get("keepdims", 1)}
        )

    return run


mapping("reduce_mean")(_reduce("mean"))
mapping("reduce_sum")(_reduce("sum"))


# --- elementwise arithmetic ------------------------------------------------------------------
@mapping("add")
def _add(view: NodeView) -> Kind:
    consts = tuple(i for i, o in enumerate(view.operands) if o.source is None and o.value is not None)
    return Kind("add", constant_slots=consts)


def _scale(value: torch.Tensor, operand: Operand) -> Kind:
    params = {"scale": operand.stats()} if operand.param and value.numel() > 1 else {}
    return Kind("scale", attrs={"value": _rms(value), "mean": float(value.double().mean())}, params=params)


@mapping("mul")
def _mul(view: NodeView) -> Kind:
    data = [o for o in view.operands if o.source is not None]
    consts = [o for o in view.operands if o.source is None and o.value is not None]
    if len(data) == 2:
        return Kind("mul")
    if len(data) == 1 and consts and consts[0].value.is_floating_point():
        return _scale(consts[0].value, consts[0])
    return Kind("unknown")


@mapping("div")
def _div(view: NodeView) -> Kind:
    """x / c scales by 1/c; a quotient of two activations is a divide."""
    divisor = view.const(1)
    if view.operand(0).source is not None and divisor is not None and divisor.is_floating_point():
        return _scale(1.0 / divisor.double(), view.operand(1))
    if view.operand(0).source is not None and view.operand(1).source is not None:
        return Kind("divide")
    return Kind("unknown")


@mapping("max")
def _max(view: NodeView) -> Kind:
    """The larger of two tensors, elementwise: of two activations, or of one and a constant (an
    input node, as an add's: RWKV's running max starts at -1e38)."""
    consts = tuple(i for i, o in enumerate(view.operands) if o.source is None and o.value is not None)
    data = sum(o.source is not None for o in view.operands)
    if len(view.operands) == 2 and (data == 2 or (data == 1 and consts)):
        return Kind("maximum", constant_slots=consts)
    return Kind("unknown")


@mapping("neg")
def _neg(view: NodeView) -> Kind:
    return Kind("scale", attrs={"value": 1.0, "mean": -1.0})


@mapping("concat")
def _concat(view: NodeView) -> Kind:
    return Kind("concat", attrs={"axis": view.attrs.get("axis", 0)})


@mapping("softmax")
def _softmax(view: NodeView) -> Kind:
    """Before opset 13 the default axis is 1 (and the op flattens from there); after, -1."""
    axis = view.attrs.get("axis", -1 if view.opset >= 13 else 1)
    fn = "log_softmax" if view.op_type == "LogSoftmax" else None
    return Kind("softmax", fn, {"axis": axis})


# Moves, copies and selections of elements (a view, a cropped or padded centre, top-k values, a
# cache write; a sequence's pieces taken out, a rotation of feature pairs keeping every moment).
mapping("reshape")(lambda view: Kind("reshape"))
mapping("dropout")(lambda view: Kind("dropout", attrs={"ratio": view.attrs.get("ratio", 0.5)}))
# Values kept (casts), or changed by at most half a quantisation step (a fake-quant step), or
# rotated by position-dependent angles keeping every pair's norm: gain 1 both ways.
mapping("identity")(lambda view: Kind("identity"))


@mapping("where")
def _where(view: NodeView) -> Kind:
    """A constant condition choosing between an activation and a constant is a masked fill (an
    attention mask before a softmax): the activation passes; anything data-dependent is unknown."""
    condition, *branches = view.operands[:3]
    if condition.source is None and sum(b.source is not None for b in branches) == 1:
        return Kind("identity")
    return Kind("unknown")


@mapping("gather")
def _gather(view: NodeView) -> Kind:
    """A constant table indexed by data is an embedding; indexing an activation is a reshape."""
    table = view.operand(0)
    if (
        table.source is None
        and table.value is not None
        and table.value.dim() >= 2
        and view.operand(1).source is not None
    ):
        return Kind(
            "embedding",
            attrs={"num_embeddings": table.value.shape[0], "fan_in": 1.0},
            params={"weight": table.stats(0)},
        )
    return Kind("reshape")


# --- recurrent -------------------------------------------------------------------------------
_CELLS = {"LSTM": "lstm", "GRU": "gru"}


@mapping("recurrent")
def _recurrent(view: NodeView) -> Kind:
    """W, R are (directions, gates*hidden, in): rows (axis 1) are gate units; B = [Wb, Rb]."""
    w, r, b = view.operand(1), view.operand(2), view.operand(3)
    fn = _CELLS.get(view.op_type)
    if fn is None:
        names = [str(n).lower() for n in view.attrs.get("activations", ["tanh"])]
        fn = "rnn_relu" if names and names[0] == "relu" else "rnn_tanh"
    time_axis = int(view.attrs.get("layout", 0))
    x_shape = view.operand(0).shape or ()
    params = {"weight_ih": w.stats(1), "weight_hh": r.stats(1)} if w.value is not None and r.value is not None else {}
    if b.value is not None and b.source is None:
        half = b.value.shape[-1] // 2
        params["bias_ih"] = param_stats(b.param or b.name, b.value[..., :half])
        params["bias_hh"] = param_stats(b.param or b.name, b.value[..., half:])
    attrs = {
        "hidden": view.attrs.get("hidden_size", r.value.shape[-1] if r.value is not None else None),
        "seq_len": x_shape[time_axis] if x_shape else None,
        "time_axis": time_axis,
        "num_layers": 1,
        "bidirectional": view.attrs.get("direction", "forward") == "bidirectional",
        "fan_in": x_shape[-1] if x_shape else None,
    }
    if "bias_ih" in params and attrs["hidden"]:
        attrs["gate_bias_means"] = _gate_bias_means(view.op_type, b.value, int(attrs["hidden"]))
    return Kind("recurrent", fn, attrs, params)


# ONNX stacks gates as LSTM i, o, f, c and GRU z, r, h; torch (the schema's order) as i, f, g, o
# and r, z, n
_TORCH_GATE_ORDER = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2)}


def _gate_bias_means(op_type: str, bias: torch.Tensor, hidden: int) -> list[float]:
    """Mean of Wb + Rb per gate (first direction), in torch's gate order."""
    half = bias.shape[-1] // 2
    per_gate = (bias[..., :half] + bias[..., half:]).reshape(-1, half)[0].reshape(-1, hidden).float().mean(dim=1)
    order = _TORCH_GATE_ORDER.get(op_type, tuple(range(per_gate.numel())))
    return [float(per_gate[i]) for i in order]


# --- quantised layers ------------------------------------------------------------------------
# Ops whose integer output is the data in quantised form (not an index or a shape): the loader
# keeps them on the data path, so a QDQ or QOperator model stays one connected graph.
QUANTISED_DATA_OPS = frozenset(
    {"QuantizeLinear", "DynamicQuantizeLinear", "QLinearMatMul", "QLinearConv", "MatMulInteger", "ConvInteger"}
)



def _dequantised(view: NodeView, slot: int, scale_slot: int | None, zero_slot: int | None) -> Operand:
    """The weight operand at `slot` as the float tensor it stands for, (w - zero) * scale, with
    a per-output-channel scale or zero point along axis 0 (QLinearConv) or the last axis."""
    weight = view.operand(slot)
    w = weight.value.double()
    axis = 0 if w.dim() > 2 else -1
    for param_slot, apply in ((zero_slot, torch.sub), (scale_slot, torch.mul)):
        value = view.const(param_slot) if param_slot is not None else None
        if value is not None:
            value = value.double()
            shape = (-1,) + (1,) * (w.dim() - 1) if axis == 0 and value.numel() > 1 else (-1,)
            w = apply(w, value.reshape(shape) if value.numel() > 1 else value.reshape(()))
    return Operand(weight.name, value=w.float(), param=weight.param, shape=tuple(w.shape))


def _quantised_linear(slot: int, scale_slot: int | None, zero_slot: int | None) -> Callable[[NodeView], Kind]:
    def run(view: NodeView) -> Kind:
        weight = _dequantised(view, slot, scale_slot, zero_slot)
        if weight.value.dim() > 2:
            operands = list(view.operands)
            operands[1] = weight
            return _conv(NodeView(view.op_type, view.attrs, operands[:2], view.out_shape, view.opset), False)
        return _linear(weight, weight.value, 1, None)

    return run


mapping("qlinear")(_quantised_linear(3, 4, 5))
mapping("integer_linear")(_quantised_linear(1, None, 3))


# --- com.microsoft ---------------------------------------------------------------------------
@mapping("fused_matmul")
def _fused_matmul(view: NodeView) -> Kind:
    """alpha * x @ op(W): transB stores W as (out, in)."""
    a, b = view.operand(0), view.operand(1)
    if (
        a.source is not None
        and b.source is None
        and b.value is not None
        and b.value.dim() == 2
        and not view.attrs.get("transA", 0)
    ):
        alpha = view.attrs.get("alpha", 1.0)
        return _linear(b, b.value if alpha == 1.0 else alpha * b.value, 0 if view.attrs.get("transB", 0) else 1, None)
    return Kind("matmul", attrs={"contraction": a.shape[0 if view.attrs.get("transA", 0) else -1] if a.shape else None})


mapping("gelu_erf")(lambda view: Kind("activation", "gelu", {"approximate": "none"}))
mapping("gelu_tanh")(lambda view: Kind("activation", "gelu", {"approximate": "tanh"}))


def _contrib_norm(fn: str, summed: int, scale_slot: int, bias_slot: int | None) -> Callable[[NodeView], Kind]:
    """onnxruntime's fused norms: over the last axis, after adding `summed` inputs (input + skip)."""

    def run(view: NodeView) -> Kind:
        params = {}
        for slot, role in ((scale_slot, "scale"), (bias_slot, "bias")):
            operand = view.operand(slot) if slot is not None else Operand("")
            if operand.value is not None and operand.source is None:
                params[role] = operand.stats()
        attrs: dict[str, Any] = {
            "axis": view.attrs.get("axis", -1),
            "eps": view.attrs.get("epsilon", 1e-5),
            "summed_inputs": summed,
        }
        if view.out_shape:
            attrs["normalized_shape"] = tuple(view.out_shape[attrs["axis"] % len(view.out_shape) :])
        return Kind("norm", fn, attrs, params)

    return run


mapping("skip_layer_norm")(_contrib_norm("layer", 2, 2, 3))
mapping("simplified_layer_norm")(_contrib_norm("rms", 1, 1, None))
mapping("skip_simplified_layer_norm")(_contrib_norm("rms", 2, 2, None))


# --- vision, signal, misc ---------------------------------------------------------------------
@mapping("resampling")
def _resampling(view: NodeView) -> Kind:
    """Bilinear sampling of (N, C, H, W) at a new grid of points: the resize rule's average
    pooling for that size change (RoiAlign: the whole image to one ROI's bins, its samples
    averaged, a first-order estimate for ROIs of image scale)."""
    x_shape, out_shape = view.operand(0).shape, view.out_shape
    if x_shape and out_shape and view.op_type == "RoiAlign":
        out_shape = tuple(x_shape[:2]) + tuple(out_shape[2:])
    mode = "nearest" if view.attrs.get("mode") == "nearest" else "linear"
    pool = resampling_pool(x_shape, out_shape, {"mode": mode, "coordinate_transformation_mode": "align_corners"})
    return Kind("pool", "avg", pool) if pool else Kind("unknown")


@mapping("quick_gelu")
def _quick_gelu(view: NodeView) -> Kind:
    """x * sigmoid(alpha x): SiLU at alpha 1, GELU's sigmoid approximation at the default 1.702."""
    alpha = view.attrs.get("alpha", 1.702)
    if alpha == 1.0:
        return Kind("activation", "silu")
    return Kind("activation", "gelu", {"approximate": "none"}) if abs(alpha - 1.702) < 1e-3 else Kind("unknown")
