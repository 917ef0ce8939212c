"""Rules for the torch functions and tensor methods fx records in traced-through code.

Keyed by name (`F.relu`, `torch.relu` and `x.relu_()` are all "relu"; a trailing in-place "_"
is dropped), so functional and method spellings share one rule. A rule gets a `Call` and returns
a `NodeSpec`, or a list of `Stage`s when one torch call stands for a small chain of vocabulary
ops (scaled_dot_product_attention = matmul -> scale -> softmax -> matmul).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from gradaudit.activations import DECLARED, Activation
from gradaudit.graph import dense_fans
from gradaudit.loaders.onnx_layer_kinds import resampling_pool
from gradaudit.loaders.torch_ops import Call, NodeSpec, adaptive_pool, conv_attrs, per_dim, softmax_axis


@dataclass
class Stage:
    """One op of an expanded call; `inputs` name the call's data operands (int) or earlier stages."""

    suffix: str  # node id suffix; "" for the final stage, which keeps the call's own id
    spec: NodeSpec
    inputs: list[int | str]
    shape: tuple[int, ...] | None = None  # output shape of an intermediate stage


FunctionRule = Callable[[Call], "NodeSpec | list[Stage]"]


def constant_rms(value: Any) -> float:
    """RMS of a constant operand (tensor or Python number)."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().double().pow(2).mean().sqrt())
    return abs(float(value))


def constant_mean(value: Any) -> float:
    """Mean of a constant operand: its sign matters where the product is exponentiated
    (Mamba's exp(delta * A) with A < 0)."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().double().mean())
    return float(value)


def _activation(declared: Activation) -> FunctionRule:
    """A declared activation, its parameters read from the call's arguments where it passes them."""

    def rule(call: Call) -> NodeSpec:
        return NodeSpec("activation", declared.name, {key: call.arg(position, keyword, declared.params[key])
                                                      for key, (position, keyword) in declared.call_args.items()})

    return rule


def _clamp(call: Call) -> NodeSpec:
    """clamp/clip with constant bounds: relu when clamped at 0 from below only, else hardtanh."""
    low, high = call.arg(1, "min"), call.arg(2, "max")
    if isinstance(low, torch.Tensor) or isinstance(high, torch.Tensor):
        return NodeSpec("unknown")
    if low == 0 and high is None:
        return NodeSpec("activation", "relu")
    return NodeSpec("activation", "hardtanh", {"min": -math.inf if low is None else float(low),
                                               "max": math.inf if high is None else float(high)})


def _prelu(call: Call) -> NodeSpec:
    stats = call.param(1, "weight", 0)
    return NodeSpec("activation", "prelu", {"slope": float(call.arg(1, "weight").detach().mean())},
                    {"slope": stats} if stats else {})


def _with_params(spec: NodeSpec, **stats: Any) -> NodeSpec:
    spec.params.update({role: s for role, s in stats.items() if s is not None})
    return spec


def _linear(call: Call) -> NodeSpec:
    weight = call.arg(1, "weight")
    if call.is_data[1]:  # a weight computed from the input (hypernetwork): a product of activations
        return NodeSpec("matmul", attrs={"contraction": int(weight.shape[-1])})
    spec = NodeSpec("linear", attrs=dense_fans(weight.shape[-1], weight.shape[0]))
    return _with_params(spec, weight=call.param(1, "weight", 0), bias=call.param(2, "bias", 0))


def _conv(transposed: bool) -> FunctionRule:
    def rule(call: Call) -> NodeSpec:
        weight = call.arg(1, "weight")
        groups = call.arg(6, "groups", 1)
        dilation = call.arg(7 if transposed else 5, "dilation", 1)
        attrs = conv_attrs(tuple(weight.shape), call.arg(3, "stride", 1), groups, dilation, transposed)
        return _with_params(
            NodeSpec("conv", attrs=attrs), weight=call.param(1, "weight", 0), bias=call.param(2, "bias", 0)
        )

    return rule


def _embedding(weight_at: int) -> FunctionRule:
    def rule(call: Call) -> NodeSpec:
        weight = call.arg(weight_at, "weight")
        spec = NodeSpec("embedding", attrs={"num_embeddings": int(weight.shape[0]), "fan_in": 1.0})
        return _with_params(spec, weight=call.param(weight_at, "weight", 0))

    return rule


def _norm(
    kind: str, weight_at: int, bias_at: int | None, eps_at: int, **attr_args: tuple[int, str, Any]
) -> FunctionRule:
    def rule(call: Call) -> NodeSpec:
        attrs = {key: call.arg(*spec) for key, spec in attr_args.items()}
        attrs["eps"] = call.arg(eps_at, "eps", 1e-5)
        if "normalized_shape" in attrs:
            attrs["normalized_shape"] = list(attrs["normalized_shape"])
            attrs["axis"] = list(range(-len(attrs["normalized_shape"]), 0))
        bias = call.param(bias_at, "bias", 0) if bias_at is not None else None
        return _with_params(NodeSpec("norm", kind, attrs), scale=call.param(weight_at, "weight", 0), bias=bias)

    return rule


def _lrn(call: Call) -> NodeSpec:
    return NodeSpec("norm", "lrn", {"size": call.arg(1, "size"), "alpha": call.arg(2, "alpha", 1e-4),
                                    "beta": call.arg(3, "beta", 0.75), "bias": call.arg(4, "k", 1.0)})


def _pool(kind: str) -> FunctionRule:
    def rule(call: Call) -> NodeSpec:
        dims = call.args[0].dim() - 2
        kernel = per_dim(call.arg(1, "kernel_size"), dims)
        stride = call.arg(2, "stride") or kernel
        return NodeSpec("pool", kind, {"kernel": kernel, "stride": per_dim(stride, dims)})

    return rule


def _adaptive(kind: str) -> FunctionRule:
    return lambda call: adaptive_pool(kind, call.args[0], call.arg(1, "output_size"))


# torch's interpolation modes as ONNX Resize-11 attributes (what the exporter writes)
_RESIZE_MODES = {
    "nearest": {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    "nearest-exact": {
        "mode": "nearest",
        "coordinate_transformation_mode": "half_pixel",
        "nearest_mode": "round_prefer_ceil",
    },
    "linear": {"mode": "linear"},
    "bilinear": {"mode": "linear"},
    "trilinear": {"mode": "linear"},
    "bicubic": {"mode": "cubic", "cubic_coeff_a": -0.75},
}


def _interpolate(call: Call) -> NodeSpec:
    """F.interpolate / nn.Upsample: average pooling at a fractional stride, as ONNX Resize is."""
    mode = call.arg(3, "mode", "nearest")
    if mode == "area":
        return adaptive_pool("avg", call.args[0], tuple(call.out.shape[2:]))
    attrs = dict(_RESIZE_MODES.get(mode, {}))
    if attrs.get("mode") in ("linear", "cubic"):
        attrs["coordinate_transformation_mode"] = (
            "align_corners" if call.arg(4, "align_corners", False) else "pytorch_half_pixel"
        )
    pool = resampling_pool(tuple(call.args[0].shape), tuple(call.out.shape), attrs) if attrs else None
    return NodeSpec("pool", "avg", pool) if pool else NodeSpec("unknown")


def _upsample(mode: str) -> FunctionRule:
    """ATen's upsample_<mode> (F.interpolate in a torch.export graph): the same pooling; the
    linear modes take align_corners as their third argument."""

    def rule(call: Call) -> NodeSpec:
        attrs = dict(_RESIZE_MODES[mode])
        if attrs["mode"] in ("linear", "cubic"):
            attrs["coordinate_transformation_mode"] = (
                "align_corners" if call.arg(2, "align_corners", False) else "pytorch_half_pixel"
            )
        pool = resampling_pool(tuple(call.args[0].shape), tuple(call.out.shape), attrs)
        return NodeSpec("pool", "avg", pool) if pool else NodeSpec("unknown")

    return rule


def _softmax(fn: str | None) -> FunctionRule:
    return lambda call: NodeSpec("softmax", fn, {"axis": softmax_axis(call.arg(1, "dim"), call.args[0].dim())})


def _reduce(fn: str) -> FunctionRule:
    def rule(call: Call) -> NodeSpec:
        axis = call.arg(1, "dim")
        return NodeSpec("reduce", fn, {"axis": list(axis) if isinstance(axis, (tuple, list)) else axis})

    return rule


def _concat(call: Call) -> NodeSpec:
    return NodeSpec("concat", attrs={"axis": call.arg(1, "dim", 0)})


def _add(call: Call) -> NodeSpec:
    return NodeSpec("add")


def _product(call: Call) -> NodeSpec:
    """x * y of two activations is a gate (mul); by a constant it is a scale by its RMS."""
    if all(call.is_data[:2]):
        return NodeSpec("mul")
    position = 1 if call.is_data[0] else 0
    operand, scale = call.args[position], call.param(position, ("input", "other")[position], 0)
    # a meta tensor (torch_meta: a model without weights) has no values: its recorded statistics do
    if scale is not None and getattr(operand, "is_meta", False):
        rms, mean = scale.rms, scale.mean
    else:
        rms, mean = constant_rms(operand), constant_mean(operand)
    return _with_params(NodeSpec("scale", attrs={"value": rms, "mean": mean}), scale=scale)


def _divide(call: Call) -> NodeSpec:
    if call.is_data[0] and not call.is_data[1]:
        divisor = call.args[1]
        inverse = 1.0 / divisor.double() if isinstance(divisor, torch.Tensor) else 1.0 / float(divisor)
        return NodeSpec("scale", attrs={"value": constant_rms(inverse), "mean": constant_mean(inverse)})
    if call.is_data[0] and call.is_data[1]:
        return NodeSpec("divide")
    return NodeSpec("unknown")


def _maximum(call: Call) -> NodeSpec:
    """The larger of two tensors, elementwise: of two activations, or of one and a constant (the
    constant becomes an input node, as an add's does: RWKV's running max starts at -1e38)."""
    return NodeSpec("maximum") if any(call.is_data[:2]) else NodeSpec("unknown")


def _square(call: Call) -> list[Stage]:
    """x^2 as the product of x with itself (ONNX's Mul(x, x)): the mul gain reads one producer twice."""
    return [Stage("", NodeSpec("mul"), [0, 0])]


def _where(call: Call) -> NodeSpec:
    """torch.where(condition, a, b): a masked fill when a constant condition picks between one
    activation and constants (ONNX Where reads the same); anything data-dependent is unknown."""
    flags = (list(call.is_data) + [False] * 3)[:3]
    return NodeSpec("identity") if not flags[0] and flags[1] + flags[2] == 1 else NodeSpec("unknown")


def _glu(call: Call) -> list[Stage]:
    """F.glu / nn.GLU: a * sigmoid(b) for the two halves of x along `dim`, as ONNX spells it
    (Split, Sigmoid, Mul)."""
    x, dim = call.args[0], call.arg(1, "dim", -1)
    half = list(x.shape)
    half[dim] //= 2
    return [
        Stage("a", NodeSpec("reshape"), [0], tuple(half)),
        Stage("b", NodeSpec("reshape"), [0], tuple(half)),
        Stage("gate", NodeSpec("activation", "sigmoid"), ["b"], tuple(half)),
        Stage("", NodeSpec("mul"), ["a", "gate"]),
    ]


def _scatter(source_at: int) -> FunctionRule:
    """A functionalised in-place write (`x[i] = y`, `x[mask] = y`): the base tensor with some of
    its elements replaced by the source's. Both kept parts reach the output, as the two parts of
    a concatenation in proportion to their sizes; one data operand passes through."""

    def rule(call: Call) -> NodeSpec | list[Stage]:
        base, source = call.args[0], call.args[source_at]
        kept = base.numel() - source.numel()
        if not (call.is_data[0] and call.is_data[source_at]) or kept <= 0:
            return NodeSpec("identity")
        return [
            Stage("kept", NodeSpec("reshape"), [0], (kept,)),
            Stage("written", NodeSpec("reshape"), [source_at], (source.numel(),)),
            Stage("", NodeSpec("concat", attrs={"axis": 0}), ["kept", "written"]),
        ]

    return rule


def _negate(call: Call) -> NodeSpec:
    return NodeSpec("scale", attrs={"value": 1.0, "mean": -1.0})


def _matmul(call: Call) -> NodeSpec:
    """a @ b: a matmul of two activations, or a linear layer when one side is a weight."""
    a, b = call.args[0], call.args[1]
    if all(call.is_data[:2]):
        return NodeSpec("matmul", attrs={"contraction": int(a.shape[-1])})
    if call.is_data[0]:  # x @ W, W (..., in, out): output units along the last axis
        spec = NodeSpec("linear", attrs=dense_fans(b.shape[-2], b.shape[-1]))
        return _with_params(spec, weight=call.param(1, "other", b.dim() - 1))
    spec = NodeSpec("linear", attrs=dense_fans(a.shape[-1], a.shape[-2]))  # W @ x, W (..., out, in)
    return _with_params(spec, weight=call.param(0, "input", a.dim() - 2))


def _operands_from(call: Call, first: int) -> Call:
    """The same call seen from argument `first` on (addmm's mat1, mat2 after its bias)."""
    return Call(call.name, call.args[first:], call.kwargs, call.is_data[first:], call.out,
                lambda index, key, axis: call.param(index + first, key, axis), call.module_param)


def _add_product(call: Call) -> NodeSpec | list[Stage]:
    """addmm / baddbmm / addbmm: beta * input + alpha * (mat1 @ mat2). transformers' Conv1D
    (GPT-2) is `addmm(bias, x, W)`: a linear layer whose weight W is (in, out), with its bias."""
    product = _matmul(_operands_from(call, 1))
    alpha, beta = call.arg(4, "alpha", 1), call.arg(3, "beta", 1)
    if not call.is_data[0]:
        bias = call.param(0, "input", 0) if product.op == "linear" and beta == 1 else None
        product = _with_params(product, bias=bias)
        if alpha == 1:
            return product
    data = [i for i in (1, 2) if call.is_data[i]]
    shape = tuple(call.out.shape)
    steps = [("product", product, data)]
    if alpha != 1:
        steps.append(("scaled", NodeSpec("scale", attrs={"value": abs(float(alpha))}), ["product"]))
    if call.is_data[0]:
        steps.append(("sum", NodeSpec("add"), [steps[-1][0], 0]))
    last = len(steps) - 1
    return [
        Stage("" if i == last else suffix, spec, inputs, None if i == last else shape)
        for i, (suffix, spec, inputs) in enumerate(steps)
    ]


def _einsum(call: Call) -> NodeSpec:
    """A two-operand einsum: a linear layer when one operand is a weight, else a matmul.

    The contraction is the product of the sizes of the indices summed away (absent from the output).
    """
    equation, operands = call.args[0].replace(" ", "").replace("...", ""), call.args[1:]
    inputs, _, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != 2 or len(operands) != 2 or not output:  # also the rare list-of-operands form
        return NodeSpec("unknown")
    sizes = {letter: int(size) for term, x in zip(terms, operands) for letter, size in zip(term, x.shape[-len(term):])}
    summed = [letter for letter in set(inputs) - set(output) - {","}]
    contraction = math.prod(sizes[letter] for letter in summed)
    data = list(call.is_data[1:3])
    if all(data) or not any(data):
        return NodeSpec("matmul", attrs={"contraction": contraction})
    weight_at = data.index(False)
    term = terms[weight_at]
    kept = [i for i, letter in enumerate(term) if letter in output]
    fan_out = math.prod(operands[weight_at].shape[i] for i in kept)
    spec = NodeSpec("linear", attrs=dense_fans(contraction, fan_out))
    return _with_params(spec, weight=call.param(weight_at + 1, "", kept[0] if kept else 0))


def _sdpa(call: Call) -> NodeSpec | list[Stage]:
    """softmax(q k^T * scale) v as the vocabulary's matmul -> scale -> softmax -> matmul."""
    if len(call.args) < 3:  # query/key/value passed by keyword
        return NodeSpec("unknown")
    q, k = call.args[0], call.args[1]
    scale = call.arg(6, "scale") or 1.0 / math.sqrt(q.shape[-1])
    scores = tuple(q.shape[:-1]) + (int(k.shape[-2]),)
    return [
        Stage("scores", NodeSpec("matmul", attrs={"contraction": int(q.shape[-1])}), [0, 1], scores),
        Stage("scaled", NodeSpec("scale", attrs={"value": float(scale)}), ["scores"], scores),
        Stage("weights", NodeSpec("softmax", attrs={"axis": -1}), ["scaled"], scores),
        Stage("", NodeSpec("matmul", attrs={"contraction": int(k.shape[-2])}), ["weights", 2]),
    ]


def _fixed(op: str) -> FunctionRule:
    return lambda call: NodeSpec(op)


def _dropout(call: Call) -> NodeSpec:
    return NodeSpec("dropout", attrs={"p": float(call.arg(1, "p", 0.5))})


RESHAPES = (
    "view reshape flatten unflatten permute transpose t contiguous squeeze unsqueeze expand expand_as repeat narrow "
    "split split_with_sizes tensor_split chunk unbind getitem flip roll pad movedim moveaxis select index_select "
    "gather view_as reshape_as swapaxes swapdims pixel_shuffle pixel_unshuffle repeat_interleave tile broadcast_to "
    "T mT slice index alias _unsafe_view"
).split()
# Casts and copies keep values; masked_fill sets masked positions to a constant (an attention mask
# before a softmax) and passes the rest through unchanged.
CASTS = "to _to_copy type type_as float double half bfloat16 clone lift_fresh_copy masked_fill".split()

# Tensors shaped like their argument but not computed from its values: constants, not data.
SHAPE_ONLY = frozenset(
    "zeros_like ones_like empty_like full_like new_zeros new_ones new_empty new_full rand_like randn_like".split()
)

FUNCTION_RULES: dict[str, FunctionRule] = {
    **{name: _activation(declared) for declared in DECLARED for name in declared.torch_functions},
    "clamp": _clamp,
    "clamp_min": _clamp,
    "clip": _clamp,
    "prelu": _prelu,
    "linear": _linear,
    **{f"conv{d}d": _conv(False) for d in (1, 2, 3)},
    **{f"conv_transpose{d}d": _conv(True) for d in (1, 2, 3)},
    "embedding": _embedding(1),
    "layer_norm": _norm("layer", 2, 3, 4, normalized_shape=(1, "normalized_shape", ())),
    "batch_norm": _norm("batch", 3, 4, 7, momentum=(6, "momentum", 0.1)),
    "group_norm": _norm("group", 2, 3, 4, num_groups=(1, "num_groups", 1)),
    "instance_norm": _norm("instance", 3, 4, 7),
    "rms_norm": _norm("rms", 2, None, 3, normalized_shape=(1, "normalized_shape", ())),
    "local_response_norm": _lrn,
    "interpolate": _interpolate,
    "upsample": _interpolate,
    **{f"upsample_nearest{d}d": _upsample("nearest") for d in (1, 2, 3)},
    "upsample_linear1d": _upsample("linear"),
    "upsample_bilinear2d": _upsample("bilinear"),
    "upsample_bicubic2d": _upsample("bicubic"),
    "upsample_trilinear3d": _upsample("trilinear"),
    **{f"max_pool{d}d": _pool("max") for d in (1, 2, 3)},
    **{f"avg_pool{d}d": _pool("avg") for d in (1, 2, 3)},
    **{f"adaptive_avg_pool{d}d": _adaptive("avg") for d in (1, 2, 3)},
    **{f"adaptive_max_pool{d}d": _adaptive("max") for d in (1, 2, 3)},
    "softmax": _softmax(None),
    "log_softmax": _softmax("log_softmax"),
    "mean": _reduce("mean"),
    "sum": _reduce("sum"),
    "cat": _concat,
    "concat": _concat,
    "concatenate": _concat,
    "stack": _concat,
    **{name: _add for name in ("add", "sub", "iadd", "isub", "radd", "rsub")},
    **{name: _product for name in ("mul", "imul", "multiply")},
    **{name: _divide for name in ("truediv", "div", "itruediv", "divide")},
    "neg": _negate,
    "maximum": _maximum,
    "square": _square,
    "where": _where,
    **{name: _scatter(1) for name in ("select_scatter", "slice_scatter", "diagonal_scatter")},
    **{name: _scatter(2) for name in ("index_put", "masked_scatter")},
    "glu": _glu,
    **{name: _matmul for name in ("matmul", "mm", "bmm")},
    **{name: _add_product for name in ("addmm", "baddbmm", "addbmm")},
    "einsum": _einsum,
    "scaled_dot_product_attention": _sdpa,
    **{
        name: _dropout
        for name in ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")
    },
    **{name: _fixed("reshape") for name in RESHAPES},
    **{name: _fixed("identity") for name in CASTS},
}

# ATen operators (a torch.export program) whose signature differs from the functional one.
ATEN_RULES: dict[str, FunctionRule] = {
    "batch_norm": _norm("batch", 1, 2, 7, momentum=(6, "momentum", 0.1)),
    "_native_batch_norm_legit_no_training": _norm("batch", 1, 2, 6, momentum=(5, "momentum", 0.1)),
    "_native_batch_norm_legit": _norm("batch", 1, 2, 7, momentum=(6, "momentum", 0.1)),
    "instance_norm": _norm("instance", 1, 2, 7),
    "embedding": _embedding(0),
}


def function_rule(name: str, aten: bool = False) -> FunctionRule | None:
    """The rule for a function or method name; in-place spellings (`relu_`, `add_`) share it."""
    if aten and name in ATEN_RULES:
        return ATEN_RULES[name]
    if name in FUNCTION_RULES:
        return FUNCTION_RULES[name]
    if name.endswith("_") and not name.endswith("__"):
        return FUNCTION_RULES.get(name[:-1])
    return None
