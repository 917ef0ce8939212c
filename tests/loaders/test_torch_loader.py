"""Tests of the PyTorch loader: sources, the LayerGraph it builds, the runner, and its errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gradaudit.errors import InputError
from gradaudit.graph import forward_order, ordered_inputs, weight_layers
from gradaudit.loaders import load
from gradaudit.loaders.torch_loader import from_module, load_torch
from gradaudit.static import estimate
from tests.loaders.fixtures import torch_factories as tf

FIXTURES = Path(tf.__file__).resolve().parent
FACTORY_FILE = FIXTURES / "torch_factories.py"


def matrix_params(module: nn.Module) -> list[str]:
    return [name for name, p in module.named_parameters() if p.dim() >= 2]


def ops(handle) -> list[str]:
    return [handle.graph.nodes[n]["op"] for n in forward_order(handle.graph)]


def node_named(handle, name: str) -> dict:
    return next(d for _, d in handle.graph.nodes(data=True) if d["name"] == name)


# ---- graphs -----------------------------------------------------------------------------------


def test_mlp_graph_vocabulary_weights_and_counts():
    module = tf.build_mlp()
    handle = from_module(module, (torch.randn(4, 12),))
    assert ops(handle) == ["input", "linear", "activation", "linear", "activation", "linear"]
    assert [w.param for w in weight_layers(handle.graph)] == matrix_params(module)
    fc1 = node_named(handle, "fc1")
    assert fc1["attrs"]["fan_in"] == 12 and fc1["attrs"]["fan_out"] == 16
    assert fc1["params"]["weight"].name == "fc1.weight" and fc1["out_shape"] == (4, 16)
    assert node_named(handle, "act")["fn"] == "tanh"
    assert handle.graph.graph["outputs"] == ["head"] and not handle.graph.graph["partial"]
    assert handle.parameters == sum(p.numel() for p in module.parameters())
    assert handle.inputs[0].shape == (4, 12) and handle.inputs[0].dtype == "float32"


def test_cnn_with_batchnorm_residual_and_concat():
    torch.manual_seed(0)
    module = tf.ResidualCNN()
    handle = from_module(module, (torch.randn(4, 3, 8, 8),))
    graph = handle.graph
    assert [w.param for w in weight_layers(graph)] == matrix_params(module)
    add = next(n for n in graph if graph.nodes[n]["op"] == "add")
    assert sorted(graph.nodes[p]["name"] for p in ordered_inputs(graph, add)) == ["bn2", "relu"]
    concat = next(d for _, d in graph.nodes(data=True) if d["op"] == "concat")
    assert concat["attrs"]["axis"] == 1 and concat["out_shape"] == (4, 16, 8, 8)
    down = node_named(handle, "down")
    assert down["attrs"]["stride"] == [2, 2] and down["attrs"]["fan_out"] == pytest.approx(8 / 4)
    bn = node_named(handle, "bn")
    assert bn["fn"] == "batch" and set(bn["params"]) == {"scale", "bias"}
    assert node_named(handle, "pool")["fn"] == "global_avg"
    assert "unknown" not in ops(handle)


def test_loading_leaves_the_user_module_untouched():
    torch.manual_seed(0)
    module = tf.ResidualCNN().eval()
    before = copy.deepcopy(module.state_dict())
    from_module(module, (torch.randn(4, 3, 8, 8),))
    assert not module.training
    assert all(torch.equal(before[k], v)
               for k, v in module.state_dict().items())  # exact: the loader must not write to the module
    assert not any(hasattr(module, name) for name in ("_tensor_constant0",))


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_encoder_traces_with_fx(norm_first):
    torch.manual_seed(0)
    module = tf.Encoder(norm_first)
    handle = from_module(module, (torch.randn(3, 7, 8),))
    graph = handle.graph
    assert not graph.graph["partial"], graph.graph["partial_reason"]
    assert [w.param for w in weight_layers(graph)] == matrix_params(module)
    attention = [d for _, d in graph.nodes(data=True) if d["op"] == "attention"]
    assert len(attention) == 2
    assert attention[0]["attrs"] == {"embed_dim": 32, "num_heads": 4, "scale": pytest.approx(8 ** -0.5)}
    assert attention[0]["params"]["out_proj_weight"].name == "encoder.layers.0.self_attn.out_proj.weight"
    first_add = next(n for n in forward_order(graph) if graph.nodes[n]["op"] == "add")
    first_norm = next(n for n in forward_order(graph) if graph.nodes[n]["op"] == "norm")
    # Pre-LN normalises before attention (the residual bypasses the norm); Post-LN after the add.
    assert graph.nodes[first_norm]["order"] < graph.nodes[first_add]["order"] if norm_first else \
        graph.nodes[first_norm]["order"] > graph.nodes[first_add]["order"]
    assert "unknown" not in ops(handle)


@pytest.mark.parametrize("cell, fn", [(nn.LSTM, "lstm"), (nn.GRU, "gru"), (nn.RNN, "rnn_tanh")])
def test_recurrent_layers(cell, fn):
    torch.manual_seed(0)
    handle = from_module(tf.Recurrent(cell), (torch.randn(4, 9, 6),))
    rnn = node_named(handle, "rnn")
    assert rnn["op"] == "recurrent" and rnn["fn"] == fn
    attrs = dict(rnn["attrs"])
    assert len(attrs.pop("gate_bias_means")) == {"lstm": 4, "gru": 3}.get(fn, 1)  # per-gate bias means
    assert attrs == {"hidden": 10, "seq_len": 9, "time_axis": 1, "num_layers": 1, "bidirectional": False, "fan_in": 6}
    assert rnn["params"]["weight_hh"].name == "rnn.weight_hh_l0"
    assert [w.role for w in weight_layers(handle.graph)][:2] == ["weight_ih", "weight_hh"]


def test_embedding_input_becomes_token_ids():
    handle = load_torch(f"{FACTORY_FILE}:{tf.TokenClassifier.__name__}", [(6, 11)])
    spec = handle.inputs[0]
    assert spec.dtype == "int64" and spec.high == 50 and spec.shape == (6, 11)
    assert handle.example_inputs[0].dtype == torch.int64
    assert node_named(handle, "embed")["op"] == "embedding"
    mean = next(d for _, d in handle.graph.nodes(data=True) if d["op"] == "reduce")
    assert mean["fn"] == "mean" and mean["attrs"]["axis"] == 1


def test_functional_code_maps_onto_the_vocabulary():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(16, 8) * 0.1)
            self.qkv = nn.Linear(8, 24)
            self.gamma = nn.Parameter(torch.full((8,), 0.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            h = F.scaled_dot_product_attention(q, k, v) * self.gamma + 1.0
            h = torch.clamp(h, min=0) / x.size(-1) ** 0.5
            return torch.sigmoid(h) @ self.w.t()

    handle = from_module(Functional(), (torch.randn(2, 5, 8),))
    kinds = {d["source"]: (d["op"], d["fn"]) for _, d in handle.graph.nodes(data=True)}
    assert kinds["clamp"] == ("activation", "relu") and kinds["sigmoid"] == ("activation", "sigmoid")
    scale = next(d for _, d in handle.graph.nodes(data=True) if d["source"] == "truediv")
    assert scale["op"] == "scale" and scale["attrs"]["value"] == pytest.approx(8 ** -0.5)
    constant = next(d for _, d in handle.graph.nodes(data=True) if d["op"] == "constant")
    assert constant["attrs"] == {"value": 1.0, "mean": 1.0, "rms": 1.0}
    assert [d["op"] for _, d in handle.graph.nodes(data=True) if d["source"] == "scaled_dot_product_attention"] == \
        ["matmul", "scale", "softmax", "matmul"]
    head = next(d for _, d in handle.graph.nodes(data=True) if d["source"] == "matmul")
    assert head["op"] == "linear" and head["params"]["weight"].name == "w"
    assert head["attrs"] == {"fan_in": 8.0, "fan_out": 16.0}


def test_untraceable_model_falls_back_to_hooks():
    torch.manual_seed(0)
    handle = from_module(tf.DataDependent(), (torch.randn(3, 4),))
    graph = handle.graph
    assert graph.graph["partial"] and "torch.fx" in graph.graph["partial_reason"]
    in_order = sorted(graph.nodes(data=True), key=lambda x: x[1]["order"])
    assert [d["name"] for _, d in in_order] == ["x", "fc1", "fc2", "fc3"]
    assert ordered_inputs(graph, "fc3") == ["fc1", "fc2"]  # relu and the add are not nodes, lineage is kept
    assert graph.graph["outputs"] == ["fc3"]
    outputs, captured = handle.runner(copy.deepcopy(handle.module), handle.example_inputs, ["fc1", "fc3", "x"])
    assert set(captured) == {"fc1", "fc3", "x"} and captured["fc1"].shape == (3, 8)


def test_trace_that_changes_behaviour_is_retraced_with_torch_export():
    class TypeSwitch(nn.Module):
        """A proxy is not a Tensor: the trace takes the other branch, which computes something else."""

        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) if isinstance(x, torch.Tensor) else self.b(x)

    handle = from_module(TypeSwitch(), (torch.randn(3, 4),))
    assert not handle.graph.graph["partial"]  # export runs the forward on fake tensors: the branch it takes is a's
    assert [w.param for w in weight_layers(handle.graph)] == ["a.weight"]


def test_parametrized_and_einsum_weights_are_named_parameters():
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 4, 3))
            self.mix = nn.Parameter(torch.randn(4, 6))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.einsum("bchw,cd->bdhw", self.conv(x), self.mix)

    handle = from_module(Mixed(), (torch.randn(2, 3, 6, 6),))
    assert [w.param for w in weight_layers(handle.graph)] == ["conv.parametrizations.weight.original1", "mix"]
    einsum = next(d for _, d in handle.graph.nodes(data=True) if d["source"] == "einsum")
    assert einsum["op"] == "linear" and einsum["attrs"] == {"fan_in": 4.0, "fan_out": 6.0}


# ---- runner ------------------------------------------------------------------------------------


def test_runner_captures_live_tensors_of_the_given_module():
    torch.manual_seed(0)
    module = tf.Encoder(norm_first=True)
    handle = from_module(module, (torch.randn(3, 7, 8),))
    probe_copy = copy.deepcopy(module).train()
    for sub in probe_copy.modules():
        if isinstance(sub, nn.Dropout):
            sub.eval()
    wanted = [w.node for w in weight_layers(handle.graph)]
    torch.manual_seed(1)  # attention dropout inside nn.MultiheadAttention stays active in train mode
    outputs, captured = handle.runner(probe_copy, handle.example_inputs, wanted)
    torch.manual_seed(1)
    assert torch.allclose(outputs, probe_copy(*handle.example_inputs), atol=1e-6)
    assert set(captured) == set(wanted)
    grads = torch.autograd.grad(outputs.pow(2).sum(), [captured[n] for n in wanted], retain_graph=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    outputs.sum().backward()
    assert probe_copy.proj.weight.grad is not None and module.proj.weight.grad is None


def test_capture_survives_an_in_place_activation():
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 2))
    handle = from_module(module, (torch.randn(16, 4),))
    linear = next(n for n in handle.graph if handle.graph.nodes[n]["name"] == "0")
    _, captured = handle.runner(module, handle.example_inputs, [linear])
    assert (captured[linear] < 0).any()


# ---- sources -----------------------------------------------------------------------------------


def test_factory_by_module_path(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    handle = load_torch("torch_factories:build_mlp", [(2, 12)])
    assert handle.source == "torch_factories:build_mlp" and handle.format == "torch"
    assert handle.example_inputs[0].shape == (2, 12)


def test_factory_by_file_path_with_its_own_inputs():
    handle = load_torch(f"{FACTORY_FILE}:build_mlp_with_inputs")
    assert handle.example_inputs[0].shape == (5, 12) and handle.inputs[0].shape == (5, 12)


def test_factory_by_dotted_attribute_path(tmp_path):
    """`file.py:Class.method` names a factory inside a class; the CLI's dispatcher and the torch
    loader agree that it is one (they share `is_factory_spec`)."""
    factory = tmp_path / "zoo.py"
    factory.write_text(
        "import torch\n"
        "class Zoo:\n"
        "    @staticmethod\n"
        "    def mlp():\n"
        "        return torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))\n"
    )
    handle = load(f"{factory}:Zoo.mlp", [(2, 6)])
    assert handle.format == "torch" and handle.inputs[0].shape == (2, 6)
    with pytest.raises(InputError, match="has no attribute 'Zoo.missing'"):
        load(f"{factory}:Zoo.missing", [(2, 6)])


def test_batch_placeholder_in_input_shape():
    handle = load_torch(f"{FACTORY_FILE}:build_mlp", [(-1, 12)], batch=3)
    assert handle.inputs[0].shape == (3, 12)


def test_torchscript_file(tmp_path):
    module = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    with pytest.raises(InputError, match="TorchScript.*--trust"):
        load_torch(str(path), [(4, 6)])
    handle = load_torch(str(path), [(4, 6)], trust=True)
    assert handle.graph.graph["partial"]
    assert [w.param for w in weight_layers(handle.graph)] == ["0.weight", "2.weight"]
    outputs, _ = handle.runner(handle.module, handle.example_inputs, [])
    assert outputs.shape == (4, 2)


def test_exported_program_file(tmp_path):
    torch.manual_seed(0)
    module = tf.ResidualCNN()
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(2, 3, 8, 8),)), str(path))
    handle = load_torch(str(path), [(2, 3, 8, 8)])
    assert [w.param for w in weight_layers(handle.graph)] == matrix_params(module)
    assert {"conv", "norm", "add", "concat", "linear"} <= set(ops(handle))


def test_pickled_module_needs_trust(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(tf.build_mlp(), str(path))
    with pytest.raises(InputError, match="trust"):
        load_torch(str(path), [(2, 12)])
    handle = load_torch(str(path), [(2, 12)], trust=True)
    assert len(weight_layers(handle.graph)) == 3


def test_state_dict_is_refused(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(tf.build_mlp().state_dict(), str(path))
    with pytest.raises(InputError, match="state dict.*factory"):
        load_torch(str(path), [(2, 12)])


@pytest.mark.parametrize(
    "source, shapes, words",
    [
        ("no_such_pkg_xyz.models:build", [(2, 3)], "cannot import module 'no_such_pkg_xyz.models'"),
        (f"{FACTORY_FILE}:missing", [(2, 3)], "has no attribute 'missing'"),
        ("/nonexistent/model.py:build", [(2, 3)], "file not found"),
        ("/nonexistent/model.pt", [(2, 3)], "file not found"),
        (f"{FACTORY_FILE}:build_failing", [(2, 3)], "raised ValueError: no weights for this size$"),
        (f"{FACTORY_FILE}:build_not_a_module", [(2, 3)], "returned dict, not a torch.nn.Module"),
        (f"{FACTORY_FILE}:build_mlp", [(2, 7)], r"forward pass on inputs of shape \(2, 7\) raised RuntimeError"),
        (f"{FACTORY_FILE}:build_mlp", None, "--input-shape"),
    ],
)
def test_bad_sources_are_input_errors(source, shapes, words):
    with pytest.raises(InputError, match=words) as raised:
        load_torch(source, shapes)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("form", ["rsqrt", "reciprocal", "divide", "t5_cast", "llama_cast"])
def test_hand_written_rms_norm_is_one_norm_node(form: str):
    """Llama's RMSNorm written as pow/mean/add/rsqrt/mul calls: read call by call the estimate saw
    x * mean(x^2) and a signal collapse; matched (torch_patterns), it is one RMS norm."""
    handle = from_module(tf.rms_norm_stack(form), (torch.randn(4, 6),))
    nodes = [d for _, d in handle.graph.nodes(data=True)]
    assert [d["fn"] for d in nodes if d["op"] == "norm"] == ["rms", "rms"]
    assert not [d for d in nodes if d["op"] in ("unknown", "identity")]  # a dtype cast inside is part of the norm
    assert 0.1 < estimate(handle.graph, handle.inputs).output_rms < 10


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_interpolation_is_the_pooling_the_onnx_resize_maps_to(tmp_path: Path, mode: str):
    """F.interpolate / nn.Upsample had no rule on this route (a pass-through that dropped the
    gradient fan-in of upsampling); it is now the average pooling ONNX Resize maps to."""
    import warnings

    from gradaudit.loaders.onnx_loader import load_onnx

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(scale_factor=2, mode=mode),
                          nn.Conv2d(4, 2, 3)).eval()
    x = torch.randn(2, 3, 8, 8)
    path = tmp_path / f"up_{mode}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17)
    (traced,) = [d for _, d in from_module(model, (x,)).graph.nodes(data=True) if d["op"] == "pool"]
    (exported,) = [d for _, d in load_onnx(str(path), batch=2).graph.nodes(data=True) if d["op"] == "pool"]
    assert traced["fn"] == exported["fn"] == "avg" and traced["attrs"]["stride"] == (0.5, 0.5)
    assert traced["attrs"]["kernel"] == pytest.approx(exported["attrs"]["kernel"])


def test_input_shape_resizes_the_factorys_example_inputs(tmp_path: Path):
    """--input-shape used to be ignored without a word when the factory returned examples."""
    factory = tmp_path / "lm.py"
    factory.write_text(
        "import torch\n\ndef build():\n"
        "    model = torch.nn.Sequential(torch.nn.Embedding(100, 8), torch.nn.Linear(8, 4))\n"
        "    return model, (torch.randint(3, 50, (4, 32)),)\n"
    )
    handle = load_torch(f"{factory}:build", [(2, 80)])
    (ids,) = handle.example_inputs
    assert ids.shape == (2, 80) and ids.dtype == torch.int64 and 3 <= int(ids.min()) and int(ids.max()) < 50
    with pytest.raises(InputError, match="1 example input"):
        load_torch(f"{factory}:build", [(2, 80), (2, 3)])


def test_a_tied_first_or_last_weight_is_named_in_the_notes():
    """An embedding tied to the output head is both the first weight layer and part of the last:
    the ratio then compares a sum of two layers' gradients, which the report must say."""
    from gradaudit.pipeline import AuditOptions, run_audit

    class TiedLM(nn.Module):
        def __init__(self, tied: bool):
            super().__init__()
            self.emb, self.mid, self.head = nn.Embedding(50, 16), nn.Linear(16, 16), nn.Linear(16, 50, bias=False)
            if tied:
                self.head.weight = self.emb.weight

        def forward(self, ids):
            return self.head(torch.tanh(self.mid(self.emb(ids))))

    ids = (torch.randint(0, 50, (4, 7)),)
    tied = run_audit(from_module(TiedLM(True), ids), AuditOptions(static_only=True))
    assert any(note.startswith("emb.weight is used by 2 layers (tied weights)") for note in tied.notes)
    untied = run_audit(from_module(TiedLM(False), ids), AuditOptions(static_only=True))
    assert not any("tied" in note for note in untied.notes)


def test_a_layer_no_output_depends_on_is_left_out_of_the_ratio_and_named():
    """An auxiliary head computed and thrown away gets no gradient at all: as the last weight
    layer it made the predicted ratio 10^+153 (a floor of 10^-154) and failed the gate."""
    from gradaudit.pipeline import AuditOptions, run_audit

    class WithUnusedHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.aux = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)), nn.Linear(10, 4)

        def forward(self, x):
            y = self.body(x)
            self.aux(y)
            return y

    torch.manual_seed(0)
    audit = run_audit(from_module(WithUnusedHead(), (torch.randn(8, 32),)), AuditOptions(passes=1))
    assert abs(audit.static.log10_ratio_first_last) < 1 and abs(audit.probe.log10_ratio_first_last) < 1
    assert audit.verdict == "pass" and any(note.startswith("aux: no output depends on it") for note in audit.notes)


def test_metadata_arithmetic_traces_instead_of_falling_back_to_hooks():
    """GPT-2's code masks with torch.finfo(w.dtype).min and builds masks from sizes; as proxies
    those failed fx, and the model fell back to its leaf modules (two of seventeen layers)."""

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(8, 8)

        def forward(self, x):
            scores = self.proj(x) @ x.transpose(-1, -2)
            n = x.shape[-1 - 1]
            causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
            return torch.where(causal, scores, torch.finfo(scores.dtype).min).softmax(-1) @ x

    handle = from_module(Masked(), (torch.randn(2, 5, 8),))
    assert not any("could not trace" in note for note in handle.warnings), handle.warnings
    assert [d["op"] for _, d in handle.graph.nodes(data=True)
            if d["op"] in ("linear", "softmax", "identity")] == ["linear", "identity", "softmax"]


def test_glu_is_split_sigmoid_and_product_as_onnx_spells_it():
    """nn.GLU had no rule on this route (the export decomposes it): a partial estimate."""
    from gradaudit.pipeline import AuditOptions, run_audit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.GLU(), nn.Linear(32, 16), nn.GLU(), nn.Linear(8, 4))
    audit = run_audit(from_module(model, (torch.randn(32, 16),)), AuditOptions(passes=2))
    assert not audit.static.partial
    assert audit.static.log10_ratio_first_last == pytest.approx(audit.probe.log10_ratio_first_last, abs=0.3)


class _BatchNormAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d in miniature: a BatchNorm2d subclass whose forward adds SiLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True, 0.1, self.eps))


def test_a_subclass_that_rewrites_forward_is_traced_through():
    """Kept whole as a BatchNorm, the subclass lost its activation: in timm's efficientnet_b0
    each block read 0.2-0.3 decades off and the whole model 0.57 (1.5 once BatchNorm over few
    values was read right). Traced through, it estimates as BatchNorm2d followed by SiLU does."""
    torch.manual_seed(0)

    convs = [nn.Conv2d(16, 16, 3, padding=1) for _ in range(4)]
    head = nn.Linear(16 * 4 * 4, 4)
    fused = nn.Sequential(*[m for conv in convs for m in (conv, _BatchNormAct(16))], nn.Flatten(), head)
    reference = nn.Sequential(*[m for conv in convs for m in (conv, nn.BatchNorm2d(16), nn.SiLU())], nn.Flatten(), head)
    x = torch.randn(8, 16, 4, 4)
    handles = [from_module(m, (x,)) for m in (fused, reference)]
    activations = [[d["fn"] for _, d in h.graph.nodes(data=True) if d["op"] == "activation"] for h in handles]
    assert activations[0] == activations[1] == ["silu"] * 4
    ratios = [estimate(h.graph, h.inputs).log10_ratio_first_last for h in handles]
    assert ratios[0] == pytest.approx(ratios[1], abs=0.01)
