"""float64 gradcheck of the op families the wide-coverage work touched: activations built from
Where/Pow/Sqrt, MobileNet's hard activations and Clip, Einsum, Trilu masks, resampling, legacy
PRelu, Shrink and the sequence ops."""

from __future__ import annotations

import pytest
import torch

from gradaudit.onnx_exec.op_registry import OPS, OpContext


def _op(op_type: str, attrs: dict, opset: int = 17):
    ctx = OpContext(opset=opset, train_mode=True)

    def run(*inputs):
        result = OPS[op_type].fn(list(inputs), attrs, ctx)
        return result[0] if isinstance(result, tuple) else result

    return run


def _rand(*shape: int, kinks: tuple[float, ...] = (), scale: float = 1.0) -> torch.Tensor:
    """Gaussian values kept 0.05 away from each kink (finite differences must not cross one)."""
    x = scale * torch.randn(*shape, dtype=torch.float64)
    for kink in kinks:
        x = torch.where((x - kink).abs() < 0.05, kink + 0.1 * torch.sign(x - kink + 1e-9), x)
    return x.requires_grad_()


def _check(fn, *args) -> None:
    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("op_type, attrs, kinks", [
    ("HardSwish", {}, (-3.0, 3.0)), ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, (-3.0, 3.0)),
    ("Gelu", {}, ()), ("Erf", {}, ()), ("Shrink", {"lambd": 0.5, "bias": 0.5}, (-0.5, 0.5)), ("Selu", {}, (0.0,)),
])  # fmt: skip
def test_unary_activations(op_type: str, attrs: dict, kinks: tuple[float, ...]) -> None:
    torch.manual_seed(0)
    _check(_op(op_type, attrs), _rand(4, 5, kinks=kinks, scale=3.0))


def test_clip_bounds_as_inputs() -> None:
    torch.manual_seed(0)
    lo, hi = torch.tensor(0.0, dtype=torch.float64), torch.tensor(6.0, dtype=torch.float64)
    fn = _op("Clip", {})
    _check(lambda t: fn(t, lo, hi), _rand(3, 4, kinks=(0.0, 6.0), scale=4.0))


def test_where_pow_sqrt_composite_activation() -> None:
    """x ** 1.5 on the positive side, a masked zero elsewhere: how exporters write custom activations."""
    torch.manual_seed(0)
    where, power, sqrt = _op("Where", {}), _op("Pow", {}), _op("Sqrt", {})
    exponent = torch.tensor(1.5, dtype=torch.float64)

    def composite(x: torch.Tensor) -> torch.Tensor:
        positive = x > 0
        safe = where(positive, x, torch.ones_like(x))
        return where(positive, power(safe, exponent) + sqrt(safe), torch.zeros_like(x))

    _check(composite, _rand(4, 4, kinks=(0.0,)))


def test_einsum_attention_scores() -> None:
    torch.manual_seed(0)
    _check(_op("Einsum", {"equation": "bhqd,bhkd->bhqk"}), _rand(1, 2, 3, 4), _rand(1, 2, 5, 4))


def test_trilu_causal_mask_then_softmax() -> None:
    torch.manual_seed(0)
    trilu, softmax = _op("Trilu", {"upper": 0}), _op("Softmax", {"axis": -1})
    k = torch.tensor(0)
    _check(lambda s: softmax(trilu(s, k) - 1e4 * (1 - trilu(torch.ones_like(s), k))), _rand(2, 4, 4))


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("coordinate", ["half_pixel", "asymmetric"])  # torch's kernels / weight matrices
def test_resize_modes(mode: str, coordinate: str) -> None:
    torch.manual_seed(0)
    fn = _op("Resize", {"mode": mode, "coordinate_transformation_mode": coordinate})
    scales = torch.tensor([1.0, 1.0, 2.0, 1.5], dtype=torch.float32)
    _check(lambda x: fn(x, None, scales), _rand(1, 2, 3, 4))


def test_upsample_legacy() -> None:
    torch.manual_seed(0)
    fn = _op("Upsample", {"mode": "linear"}, opset=9)
    scales = torch.tensor([1.0, 1.0, 2.0, 2.0], dtype=torch.float32)
    _check(lambda x: fn(x, scales), _rand(1, 2, 3, 3))


def test_prelu_per_channel_before_opset_7() -> None:
    torch.manual_seed(0)
    _check(_op("PRelu", {}, opset=6), _rand(2, 3, 4, kinks=(0.0,)), _rand(3))


def test_sequence_split_and_concat() -> None:
    torch.manual_seed(0)
    split, concat = _op("SplitToSequence", {"axis": 1}), _op("ConcatFromSequence", {"axis": 0, "new_axis": 1})
    insert, at = _op("SequenceInsert", {}), _op("SequenceAt", {})

    def chain(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seq = insert(split(x), y, torch.tensor(0))
        return concat(seq) * at(seq, torch.tensor(-1))

    _check(chain, _rand(3, 4), _rand(3, 1))


@pytest.mark.parametrize("op_type, attrs, shape", [
    ("DepthToSpace", {"blocksize": 2}, (1, 8, 2, 3)), ("SpaceToDepth", {"blocksize": 2}, (1, 2, 4, 4)),
    ("ReduceLogSumExp", {"axes": [1]}, (2, 3, 4)), ("MeanVarianceNormalization", {}, (2, 3, 2, 2)),
    ("LpNormalization", {"axis": -1}, (3, 4)), ("LpPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, (1, 2, 4, 4)),
    ("GlobalLpPool", {"p": 3}, (1, 2, 3, 3)), ("Atan", {}, (3, 4)),
])  # fmt: skip
def test_shape_and_normalising_ops(op_type: str, attrs: dict, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    _check(_op(op_type, attrs), _rand(*shape))


def test_scatter_and_gather_families() -> None:
    torch.manual_seed(0)
    rows, cols = torch.tensor([[1], [3]]), torch.tensor([[0, 2, 3], [1, 3, 0]])
    _check(lambda x, u: _op("ScatterND", {"reduction": "add"})(x, rows, u), _rand(4, 3), _rand(2, 3))
    _check(lambda x, u: _op("ScatterElements", {"axis": 1})(x, cols, u), _rand(2, 4), _rand(2, 3))
    _check(lambda x: _op("GatherND", {"batch_dims": 1})(x, torch.tensor([[[0], [2]], [[1], [1]]])), _rand(2, 3, 4))
    _check(lambda x: _op("TopK", {"axis": 1})(x, torch.tensor([2])), _rand(3, 6))
