"""One test per gain rule, on hand-built contexts with known answers."""

import math

import pytest
import torch

from gradaudit.graph import conv_fans
from gradaudit.model import InputSpec
from gradaudit.static.gain_registry import GAINS, GainContext
from gradaudit.static.gains_norm import finite_set_correction
from gradaudit.static.moments import Grad, Moments
from gradaudit.weight_stats import param_stats

UNIT = Moments(0.0, 1.0, 0.0)
UNIT_GRAD = Grad(1.0, 0.0)


def make_ctx(
    op,
    *,
    fn=None,
    attrs=None,
    params=None,
    inputs=(UNIT,),
    in_shapes=None,
    out_shape=(8, 16),
    producers=None,
    batch=8,
    spec=None,
):
    inputs = list(inputs)
    return GainContext(
        "n",
        op,
        fn,
        dict(attrs or {}),
        dict(params or {}),
        out_shape,
        inputs,
        list(in_shapes or [out_shape] * len(inputs)),
        list(producers or [f"p{i}" for i in range(len(inputs))]),
        batch,
        spec,
    )


def run(ctx, grad=UNIT_GRAD):
    transfer = GAINS[ctx.op](ctx)
    return transfer, transfer.backward(grad)


def weight(shape, value=None, std=1.0, seed=0):
    torch.manual_seed(seed)
    tensor = torch.full(shape, value) if value is not None else torch.randn(shape) * std
    return param_stats("w", tensor)


def test_linear_random_weights():
    w = weight((512, 256), std=0.1)
    transfer, (back,) = run(make_ctx("linear", attrs={"fan_in": 256, "fan_out": 512}, params={"weight": w}))
    assert transfer.out.q == pytest.approx(256 * w.rms**2, rel=1e-9)
    assert back.sq == pytest.approx(512 * w.rms**2, rel=1e-9)


def test_linear_input_mean_becomes_per_unit_offset_and_bias_adds():
    w = weight((256, 256), std=1 / 16)
    b = param_stats("b", torch.full((256,), 0.5))
    x = Moments(1.0, 1.0, 0.0)
    out = GAINS["linear"](
        make_ctx("linear", attrs={"fan_in": 256, "fan_out": 256}, params={"weight": w, "bias": b}, inputs=[x])
    ).out
    assert out.v == pytest.approx(256 * w.rms**2)  # within-unit: only the input's fluctuation
    assert out.q == pytest.approx(256 * w.rms**2 * x.q + 0.25, rel=0.05)  # THEORY: fan_in E[w^2] E[x^2] + E[b^2]
    assert out.s > 0.5 * out.v  # the mean's fixed offsets, which BatchNorm would remove


def test_linear_constant_weights_grow_coherently():
    w = weight((64, 64), value=0.02)
    ctx = make_ctx("linear", attrs={"fan_in": 64, "fan_out": 64}, params={"weight": w}, inputs=[Moments(1.0, 0.0, 0.0)])
    transfer, (back,) = run(ctx, Grad(1.0, 1.0))
    assert transfer.out.mu == pytest.approx(64 * 0.02)
    assert back.mean == pytest.approx(64 * 0.02) and back.sq == pytest.approx((64 * 0.02) ** 2)


def test_conv_weight_gradient_sums_over_positions():
    w = weight((16, 8, 3, 3), std=0.1)
    attrs = conv_fans((16, 8, 3, 3), 1, (2, 2))
    transfer, (back,) = run(
        make_ctx(
            "conv", attrs=attrs, params={"weight": w}, out_shape=(4, 16, 5, 5), in_shapes=[(4, 8, 10, 10)], batch=4
        )
    )
    assert back.sq == pytest.approx(16 * 9 / 4 * w.rms**2)
    assert transfer.weight_grads(Grad(2.0, 0.0))["weight"] == pytest.approx(4 * 25 * 2.0 * 1.0)


def test_embedding_takes_table_moments_and_passes_no_gradient():
    table = weight((100, 32), std=0.5)
    ctx = make_ctx(
        "embedding", attrs={"num_embeddings": 100}, params={"weight": table}, out_shape=(8, 10, 32), inputs=[Moments()]
    )
    transfer, (back,) = run(ctx)
    assert transfer.out.q == pytest.approx(table.rms**2, rel=1e-6)
    assert back.sq == 0.0  # exact: no gradient flows into an index
    assert transfer.weight_grads(Grad(1.0, 0.0))["weight"] == pytest.approx(80 / 100)


def test_matmul_contraction():
    a, b = Moments(0.0, 2.0, 0.0), Moments(0.0, 3.0, 0.0)
    ctx = make_ctx("matmul", attrs={"contraction": 16}, inputs=[a, b], out_shape=(8, 4, 5))
    transfer, (ga, gb) = run(ctx)
    assert transfer.out.q == pytest.approx(16 * 6)
    assert ga.sq == pytest.approx(5 * 3) and gb.sq == pytest.approx(4 * 2)


def test_activation_and_unknown_function():
    transfer, (back,) = run(make_ctx("activation", fn="relu"))
    assert transfer.out.q == pytest.approx(0.5) and back.sq == pytest.approx(0.5)
    assert not GAINS["activation"](make_ctx("activation", fn="no_such_fn")).known


def test_scale():
    transfer, (back,) = run(make_ctx("scale", attrs={"value": 0.5}))
    assert transfer.out.q == pytest.approx(0.25) and back.sq == pytest.approx(0.25)


def test_add_distinct_and_repeated_producers():
    two = GAINS["add"](make_ctx("add", inputs=[UNIT, UNIT], producers=["a", "b"])).out
    same = GAINS["add"](make_ctx("add", inputs=[UNIT, UNIT], producers=["a", "a"])).out
    assert two.q == pytest.approx(2.0) and same.q == pytest.approx(4.0)


def test_mul_gates_and_square():
    a, b = Moments(0.5, 0.25, 0.0), Moments(0.0, 4.0, 0.0)
    transfer, (ga, gb) = run(make_ctx("mul", inputs=[a, b]))
    assert transfer.out.q == pytest.approx(a.q * b.q)
    assert ga.sq == pytest.approx(b.q) and gb.sq == pytest.approx(a.q)
    square = GAINS["mul"](make_ctx("mul", inputs=[UNIT, UNIT], producers=["a", "a"])).out
    assert square.q == pytest.approx(3.0) and square.mu == pytest.approx(1.0)


def test_concat_weights_by_size():
    ctx = make_ctx(
        "concat", attrs={"axis": 1}, inputs=[Moments(0.0, 1.0, 0.0), Moments(0.0, 4.0, 0.0)], in_shapes=[(8, 3), (8, 1)]
    )
    assert GAINS["concat"](ctx).out.q == pytest.approx(0.75 * 1 + 0.25 * 4)


def test_pools():
    shape = [(8, 4, 8, 8)]
    avg, (g_avg,) = run(make_ctx("pool", fn="avg", attrs={"kernel": (2, 2), "stride": (2, 2)}, in_shapes=shape))
    assert avg.out.q == pytest.approx(0.25) and g_avg.sq == pytest.approx(1 / 16)
    glob, (g_glob,) = run(make_ctx("pool", fn="global_avg", in_shapes=shape))
    assert glob.out.q == pytest.approx(1 / 64) and g_glob.sq == pytest.approx(1 / 64**2)
    mx, (g_max,) = run(make_ctx("pool", fn="max", attrs={"kernel": 2, "stride": 2}, in_shapes=[(8, 4, 16)]))
    assert mx.out.mu == pytest.approx(1 / math.sqrt(math.pi), abs=1e-3) and g_max.sq == pytest.approx(0.5)


def test_reduce_mean_and_sum():
    mean, (g_mean,) = run(make_ctx("reduce", fn="mean", in_shapes=[(8, 10)], out_shape=(8, 1)))
    assert mean.out.q == pytest.approx(0.1) and g_mean.sq == pytest.approx(0.01)
    total = GAINS["reduce"](make_ctx("reduce", fn="sum", in_shapes=[(8, 10)], out_shape=(8, 1))).out
    assert total.q == pytest.approx(10.0)


def test_softmax_uniform_and_log_softmax():
    transfer, (back,) = run(make_ctx("softmax", inputs=[Moments()], out_shape=(8, 10)))
    assert transfer.out.mu == pytest.approx(0.1) and back.sq == pytest.approx(0.009)
    _, (log_back,) = run(make_ctx("softmax", fn="log_softmax", inputs=[Moments()], out_shape=(8, 10)))
    assert log_back.sq == pytest.approx(0.9)


def test_batch_norm_divides_by_within_unit_variance_only():
    x = Moments(3.0, 4.0, 5.0)
    transfer, (back,) = run(make_ctx("norm", fn="batch", inputs=[x], out_shape=(1_000_000, 16), batch=1_000_000))
    assert (
        transfer.out.q == pytest.approx(1.0) and back.sq == pytest.approx(1 / 4, rel=1e-4) and back.mean == 0.0
    )  # exact: a zero-mean rule


def test_finite_batch_correction():
    assert finite_set_correction(16, True) == pytest.approx(14 / 13)
    assert finite_set_correction(16, False) == pytest.approx(15 / 14)


def test_layer_and_rms_norm_divisors():
    x = Moments(1.0, 2.0, 2.0)
    _, (layer,) = run(make_ctx("norm", fn="layer", inputs=[x], attrs={"normalized_shape": [10_000]}))
    _, (rms,) = run(make_ctx("norm", fn="rms", inputs=[x], attrs={"normalized_shape": [10_000]}))
    assert layer.sq == pytest.approx(1 / 4, rel=1e-3) and rms.sq == pytest.approx(1 / 5, rel=1e-3)
    gamma = param_stats("g", torch.full((16,), 2.0))
    out = GAINS["norm"](make_ctx("norm", fn="layer", inputs=[x], params={"scale": gamma})).out
    assert out.q == pytest.approx(4.0)


@pytest.mark.parametrize("fn", ["layer", "rms"])
def test_skip_norm_normalises_the_sum_and_hands_both_inputs_its_gradient(fn):
    """onnxruntime's Skip(Simplified)LayerNormalization: norm(input + skip) is the add rule, then
    the norm's: the same output as a norm of the summed moments, the residual gradient to both."""
    branch, skip = Moments(0.5, 2.0, 0.0), Moments(0.0, 3.0, 0.0)
    attrs = {"normalized_shape": [10_000]}
    fused, (g_branch, g_skip) = run(make_ctx("norm", fn=fn, inputs=[branch, skip], attrs={**attrs, "summed_inputs": 2}))
    plain, (g_sum,) = run(make_ctx("norm", fn=fn, inputs=[Moments(0.5, 5.0, 0.0)], attrs=attrs))
    assert fused.out.q == pytest.approx(plain.out.q, rel=1e-9)
    assert g_branch.sq == pytest.approx(g_sum.sq, rel=1e-9) and g_skip.sq == pytest.approx(g_sum.sq, rel=1e-9)


def test_group_and_instance_norm():
    x = Moments(0.0, 2.0, 2.0)
    shape = (8, 16, 32, 32)
    _, (inst,) = run(make_ctx("norm", fn="instance", inputs=[x], out_shape=shape))
    _, (group,) = run(make_ctx("norm", fn="group", attrs={"num_groups": 4}, inputs=[x], out_shape=shape))
    assert inst.sq == pytest.approx(1 / 2, rel=1e-2) and group.sq == pytest.approx(1 / 4, rel=1e-2)


def test_lrn_near_identity_for_tiny_alpha():
    transfer, (back,) = run(make_ctx("norm", fn="lrn", attrs={"size": 5, "alpha": 1e-8, "beta": 0.75, "bias": 1.0}))
    assert transfer.out.q == pytest.approx(1.0, rel=1e-6) and back.sq == pytest.approx(1.0, rel=1e-6)
    strong = GAINS["norm"](make_ctx("norm", fn="lrn", attrs={"size": 5, "alpha": 1.0, "beta": 0.75, "bias": 1.0}))
    assert strong.out.q == pytest.approx(2.0**-1.5, rel=1e-6)


def test_attention_without_projections_is_unknown_and_with_them_scales():
    assert not GAINS["attention"](make_ctx("attention", inputs=[UNIT] * 3)).known
    w_in, w_out = weight((96, 32), std=32**-0.5), weight((32, 32), std=32**-0.5, seed=1)
    ctx = make_ctx(
        "attention",
        attrs={"embed_dim": 32, "num_heads": 4},
        params={"in_proj_weight": w_in, "out_proj_weight": w_out},
        inputs=[Moments(0.0, 0.01, 0.0)] * 3,
        producers=["x"] * 3,
        out_shape=(8, 20, 32),
        in_shapes=[(8, 20, 32)] * 3,
    )
    transfer, backs = run(ctx)
    # small logits: a near-uniform average of 20 values divides their variance by 20
    assert transfer.out.q == pytest.approx(0.01 * w_in.rms**2 * 32 * w_out.rms**2 * 32 / 20, rel=0.02)
    assert set(transfer.weight_grads(Grad(1.0, 0.0))) == {"in_proj_weight", "out_proj_weight"}
    assert len(backs) == 3 and all(g.sq > 0 for g in backs)


def test_recurrent_rnn_gain_per_step():
    hidden, steps = 64, 20
    w_ih, w_hh = weight((hidden, hidden), std=0.01), weight((hidden, hidden), std=0.5 / math.sqrt(hidden), seed=1)
    ctx = make_ctx("recurrent", fn="rnn_tanh", attrs={"hidden": hidden, "seq_len": steps, "fan_in": hidden},
                   params={"weight_ih": w_ih, "weight_hh": w_hh}, out_shape=(8, steps, hidden))
    transfer = GAINS["recurrent"](ctx)
    per_step = hidden * w_hh.rms**2  # small signal: tanh' ~ 1 (E[tanh'^2] ~ 1 - 2q costs < 0.1 decade)
    assert transfer.time_ratio == pytest.approx(0.5 * (steps - 1) * math.log10(per_step), abs=0.1)


def test_lstm_forget_bias_slows_decay():
    hidden, steps = 32, 30
    params = {
        "weight_ih": weight((4 * hidden, hidden), std=0.1),
        "weight_hh": weight((4 * hidden, hidden), std=0.1, seed=1),
    }
    attrs = {"hidden": hidden, "seq_len": steps, "fan_in": hidden}
    zero = GAINS["recurrent"](make_ctx("recurrent", fn="lstm", attrs=attrs, params=params)).time_ratio
    biased = GAINS["recurrent"](
        make_ctx("recurrent", fn="lstm", attrs=attrs | {"gate_bias_means": [0, 3, 0, 0]}, params=params)
    ).time_ratio
    # an autograd pass through this LSTM measures 10^-6.6 and 10^-0.17 (the biased cell's
    # asymptotic rate is slightly above 1 per step, its first steps lose while c builds up)
    assert zero == pytest.approx(-6.6, abs=0.5)
    assert biased == pytest.approx(-0.17, abs=0.5)


def test_gru_runs():
    hidden = 16
    params = {"weight_ih": weight((3 * hidden, 8), std=0.2), "weight_hh": weight((3 * hidden, hidden), std=0.2, seed=1)}
    transfer, (back,) = run(
        make_ctx("recurrent", fn="gru", attrs={"hidden": hidden, "seq_len": 5, "fan_in": 8}, params=params)
    )
    assert 0 < transfer.out.q < 1 and back.sq > 0


def test_sources_and_constants():
    assert (
        GAINS["input"](make_ctx("input", inputs=[], spec=InputSpec("x", (8, 4)))).out.q == 1.0
    )  # exact: unit input by definition
    ids = GAINS["input"](make_ctx("input", inputs=[], spec=InputSpec("ids", (8, 4), "int64", 10))).out
    assert ids.mu == pytest.approx(4.5) and ids.v == pytest.approx(8.25)  # uniform on 0..9, as the probe draws them
    const = GAINS["constant"](
        make_ctx("constant", inputs=[], params={"value": param_stats("c", torch.tensor([1.0, 3.0]))})
    ).out
    assert const.mu == 2.0 and const.s == pytest.approx(1.0) and const.v == 0.0  # exact: a constant's stated value
    from_attrs = GAINS["constant"](make_ctx("constant", inputs=[], attrs={"mean": 1.0, "rms": 2.0})).out
    assert from_attrs.q == pytest.approx(4.0) and from_attrs.v == 0.0  # exact: a constant has no fluctuation
    assert not GAINS["constant"](make_ctx("constant", inputs=[])).known


@pytest.mark.parametrize("op", ["reshape", "dropout", "identity", "output"])
def test_pass_through(op):
    transfer, (back,) = run(make_ctx(op, inputs=[Moments(1.0, 2.0, 3.0)]), Grad(2.0, 1.0, 1.5))
    assert transfer.out == Moments(1.0, 2.0, 3.0) and back == Grad(2.0, 1.0, 1.5)


def test_stacked_bidirectional_recurrent_predicts_every_weight_role():
    hidden = 16
    params = {
        "weight_ih": weight((4 * hidden, 8), std=0.2),
        "weight_hh": weight((4 * hidden, hidden), std=0.2, seed=1),
        "weight_ih_l1": weight((4 * hidden, 2 * hidden), std=0.2, seed=2),
        "weight_hh_l1": weight((4 * hidden, hidden), std=0.2, seed=3),
    }
    attrs = {"hidden": hidden, "seq_len": 6, "fan_in": 8, "num_layers": 2, "bidirectional": True}
    transfer = GAINS["recurrent"](make_ctx("recurrent", fn="lstm", attrs=attrs, params=params))
    grads = transfer.weight_grads(Grad(1.0))
    expected = {
        "weight_ih",
        "weight_hh",
        "weight_ih_l0_reverse",
        "weight_hh_l0_reverse",
        "weight_ih_l1",
        "weight_hh_l1",
        "weight_ih_l1_reverse",
        "weight_hh_l1_reverse",
    }
    assert set(grads) == expected and all(v > 0 for v in grads.values())


@pytest.mark.parametrize("n_in, n_out", [(64, 256), (256, 64), (128, 128)])
def test_linear_own_output_gradient_grows_by_marchenko_pastur(n_in, n_out):
    """A gradient equal to the output y = W x comes back as W^T W x, whose mean square exceeds the
    independent estimate by 1 + n_out/n_in (Wishart); measured with torch on iid weights."""
    torch.manual_seed(0)
    w = torch.randn(n_out, n_in) / math.sqrt(n_in)
    x = torch.randn(512, n_in)
    y = x @ w.T
    measured = (y @ w).pow(2).mean().item()
    ctx = make_ctx(
        "linear",
        attrs={"fan_in": n_in, "fan_out": n_out},
        params={"weight": param_stats("w", w)},
        out_shape=(512, n_out),
        batch=512,
    )
    q_y = y.pow(2).mean().item()
    _, (grad,) = run(ctx, Grad(q_y, 0.0, aligned=q_y))
    assert grad.sq == pytest.approx(measured, rel=0.05)
    independent = GAINS["linear"](ctx).backward(Grad(q_y, 0.0))[0].sq
    assert grad.sq / independent == pytest.approx(1 + n_out / n_in, rel=0.05)


def test_a_broadcast_operand_gets_the_sum_of_its_copies_gradients():
    """A per-channel embedding added to every pixel (a diffusion UNet's timestep) gets the sum of
    the pixels' gradients: 64 uncorrelated copies, 64x the mean square, not 1x."""
    ctx = make_ctx("add", inputs=[Moments(0.0, 1.0, 0.0), Moments(0.0, 1.0, 0.0)], producers=["x", "t"],
                   in_shapes=[(4, 8, 8, 8), (4, 8, 1, 1)], out_shape=(4, 8, 8, 8))
    _, (skip, broadcast) = run(ctx, Grad(1.0, 0.0, 0.0))
    assert skip.sq == pytest.approx(1.0)
    assert broadcast.sq == pytest.approx(64.0)
    gated = make_ctx("mul", inputs=[Moments(0.0, 2.0, 0.0), Moments(0.0, 1.0, 0.0)], producers=["x", "gate"],
                     in_shapes=[(4, 8, 8, 8), (4, 8, 1, 1)], out_shape=(4, 8, 8, 8))
    _, (_, gate) = run(gated, Grad(1.0, 0.0, 0.0))
    assert gate.sq == pytest.approx(64.0 * 2.0)
