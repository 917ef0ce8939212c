"""load_onnx: input errors, input specs, and the LayerGraph vocabulary of exported models."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from gradaudit.errors import InputError
from gradaudit.graph import weight_layers
from gradaudit.loaders.onnx_loader import load_onnx
from tests.loaders.fixtures import torch_factories as tf


def _export(model: nn.Module, example: tuple, path, dynamic: dict | None = None, names: list[str] | None = None) -> str:
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(path), dynamo=False, input_names=names or ["x"], dynamic_axes=dynamic)
    return str(path)


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 2))
    return _export(model, (torch.randn(2, 6),), tmp_path_factory.mktemp("m") / "mlp.onnx", {"x": {0: "batch"}})


# --- unusable files -------------------------------------------------------------------------
def _bad_files(tmp_path, mlp_file: str) -> dict[str, str]:
    data = open(mlp_file, "rb").read()
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "folder.onnx").mkdir()
    return {
        "missing": str(tmp_path / "nope.onnx"),
        "directory": str(tmp_path / "folder.onnx"),
        "empty": str(tmp_path / "empty.onnx"),
        "random bytes": str(tmp_path / "random.onnx"),
        "truncated": str(tmp_path / "truncated.onnx"),
    }


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "random bytes", "truncated"])
def test_unusable_file_raises_input_error(kind: str, tmp_path, mlp_file: str) -> None:
    path = _bad_files(tmp_path, mlp_file)[kind]
    with pytest.raises(InputError) as info:
        load_onnx(path)
    message = str(info.value)
    assert path in message and "\n" not in message


def _single_node_model(op_type: str, opset: int, out_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node(op_type, ["r"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", out_type, ["n", 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_opset_outside_supported_range(tmp_path) -> None:
    path = tmp_path / "old.onnx"
    onnx.save(_single_node_model("Relu", 6), str(path))
    with pytest.raises(InputError, match="opset 6"):
        load_onnx(str(path))


def test_checker_failure_is_input_error(tmp_path) -> None:
    model = _single_node_model("Relu", 13)
    model.graph.node[1].input[0] = "undefined_tensor"
    path = tmp_path / "broken.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InputError, match="checker"):
        load_onnx(str(path))


def test_unsupported_operator_keeps_static_graph(tmp_path) -> None:
    path = tmp_path / "unsupported.onnx"
    model = _single_node_model("Inverse", 15)  # an onnxruntime contrib op the executor lacks
    model.graph.node[1].domain = "com.microsoft"
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(path))
    handle = load_onnx(str(path), batch=3)
    assert handle.probe_unavailable == "unsupported ONNX operator(s): com.microsoft:Inverse"
    assert handle.module is None and handle.runner is None
    ops = {data["op"]: data for _, data in handle.graph.nodes(data=True)}
    assert ops["unknown"]["source"] == "com.microsoft:Inverse" and ops["activation"]["out_shape"] == (3, 4)
    assert handle.graph.graph["outputs"] == ["y"]


# --- input specs ----------------------------------------------------------------------------
def test_symbolic_batch_gets_batch(mlp_file: str) -> None:
    handle = load_onnx(mlp_file, batch=5)
    assert [(s.name, s.shape, s.dtype) for s in handle.inputs] == [("x", (5, 6), "float32")]
    assert handle.parameters == 6 * 10 + 10 + 10 * 2 + 2


def test_input_shapes_are_checked(mlp_file: str) -> None:
    assert load_onnx(mlp_file, input_shapes=[(3, 6)]).inputs[0].shape == (3, 6)
    with pytest.raises(InputError, match="1 input"):
        load_onnx(mlp_file, input_shapes=[(3, 6), (3, 6)])
    with pytest.raises(InputError, match="dim 1"):
        load_onnx(mlp_file, input_shapes=[(3, 7)])


def test_symbolic_inner_dim_needs_a_shape(tmp_path) -> None:
    model = _single_node_model("Relu", 13)
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "features"
    path = tmp_path / "sym.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InputError, match="'x'.*dim 1"):
        load_onnx(str(path))
    assert load_onnx(str(path), input_shapes=[(2, 9)]).graph.nodes["y"]["out_shape"] == (2, 9)


def test_initializer_inputs_are_not_model_inputs(tmp_path) -> None:
    """Old IR lists initializers among graph inputs; they are weights, not inputs."""
    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [weight],
    )  # fmt: skip
    path = tmp_path / "old_ir.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3), str(path))
    handle = load_onnx(str(path))
    assert [s.name for s in handle.inputs] == ["x"]
    assert handle.graph.nodes["y"]["params"]["weight"].shape == (4, 3)


def test_integer_input_indexes_embedding(tmp_path) -> None:
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(37, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(tokens))

    path = _export(Tagger(), (torch.randint(0, 37, (2, 5)),), tmp_path / "tagger.onnx", {"x": {0: "batch"}})
    handle = load_onnx(path, batch=4)
    assert handle.inputs[0].dtype == "int64" and handle.inputs[0].high == 37 and handle.inputs[0].shape == (4, 5)
    (embedding,) = [d for _, d in handle.graph.nodes(data=True) if d["op"] == "embedding"]
    assert embedding["attrs"]["num_embeddings"] == 37 and embedding["params"]["weight"].shape == (37, 8)
    assert list(
        handle.graph.predecessors(next(n for n, d in handle.graph.nodes(data=True) if d["op"] == "embedding"))
    ) == ["x"]


# --- LayerGraph vocabulary ------------------------------------------------------------------
def test_mlp_graph(mlp_file: str) -> None:
    graph = load_onnx(mlp_file, batch=4).graph
    order = sorted(graph.nodes, key=lambda n: graph.nodes[n]["order"])
    assert [graph.nodes[n]["op"] for n in order] == ["input", "linear", "activation", "linear"]
    first = graph.nodes[order[1]]
    assert first["attrs"] == {"fan_in": 6.0, "fan_out": 10.0} and first["out_shape"] == (4, 10)
    assert first["params"]["weight"].shape == (10, 6) and set(first["params"]) == {"weight", "bias"}
    assert graph.nodes[order[2]]["fn"] == "tanh"
    assert graph.graph["inputs"] == ["x"] and graph.graph["outputs"] == [order[3]]
    assert [w.param for w in weight_layers(graph)] == ["0_weight", "2_weight"]


def test_transformer_graph_holds_the_data_path(tmp_path) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=True)
    path = _export(
        nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
        (torch.randn(2, 5, 16),),
        tmp_path / "t.onnx",
        {"x": {0: "batch"}},
    )
    handle = load_onnx(path, batch=3)
    graph = handle.graph
    ops = Counter(d["op"] for _, d in graph.nodes(data=True))
    assert (
        ops["linear"] == 8 and ops["matmul"] == 4 and ops["softmax"] == 2 and ops["norm"] == 4 and ops["unknown"] == 0
    )
    assert all(d["out_shape"] is not None for _, d in graph.nodes(data=True))
    sources = {d["source"] for _, d in graph.nodes(data=True)}
    assert not sources & {"Shape", "Range", "Equal", "ConstantOfShape"}  # shape arithmetic is not a node
    assert {d["op"] for _, d in graph.nodes(data=True) if d["source"] in ("Gather", "Concat", "Slice")} <= {"reshape"}
    in_proj = [d for _, d in graph.nodes(data=True) if d["op"] == "linear" and d["attrs"]["fan_out"] == 48]
    assert len(in_proj) == 2 and in_proj[0]["params"]["weight"].shape == (16, 48)  # MatMul weight (in, out)
    scores = [d for _, d in graph.nodes(data=True) if d["op"] == "matmul"]
    assert sorted(d["attrs"]["contraction"] for d in scores) == [4, 4, 5, 5]
    assert len(weight_layers(graph)) == 8
    params = dict(handle.module.named_parameters())
    assert all(w.param in params for w in weight_layers(graph))


@pytest.mark.parametrize("kind, fn, gates", [("RNN", "rnn_tanh", 1), ("LSTM", "lstm", 4), ("GRU", "gru", 3)])
def test_recurrent_node(kind: str, fn: str, gates: int, tmp_path) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = getattr(nn, kind)(5, 7)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0]

    net = Net()
    handle = load_onnx(_export(net, (torch.randn(9, 2, 5),), tmp_path / "r.onnx"))
    (node,) = [d for _, d in handle.graph.nodes(data=True) if d["op"] == "recurrent"]
    assert node["fn"] == fn
    attrs = dict(node["attrs"])
    gate_means = attrs.pop("gate_bias_means")  # per gate, back in torch's gate order
    assert attrs == {"hidden": 7, "seq_len": 9, "time_axis": 0, "num_layers": 1, "bidirectional": False, "fan_in": 5}
    expected = (net.rnn.bias_ih_l0 + net.rnn.bias_hh_l0).detach().reshape(gates, 7).mean(dim=1).tolist()
    assert gate_means == pytest.approx(expected, abs=1e-6)
    assert node["params"]["weight_ih"].shape == (1, gates * 7, 5) and node["params"]["weight_hh"].shape == (
        1,
        gates * 7,
        7,
    )
    assert node["params"]["bias_ih"].shape == (1, gates * 7)


def test_cnn_graph_vocabulary(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.BatchNorm2d(8), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4), nn.Softmax(-1),
    )  # fmt: skip
    handle = load_onnx(_export(model, (torch.randn(2, 3, 16, 16),), tmp_path / "c.onnx", {"x": {0: "batch"}}), batch=2)
    nodes = [handle.graph.nodes[n] for n in sorted(handle.graph.nodes, key=lambda n: handle.graph.nodes[n]["order"])]
    convs = [d for d in nodes if d["op"] == "conv"]
    assert (
        convs[0]["attrs"]["stride"] == (2, 2)
        and convs[0]["attrs"]["fan_in"] == 27.0
        and convs[0]["attrs"]["fan_out"] == 8 * 9 / 4
    )  # exact: fan-in/out are shape arithmetic
    assert convs[1]["attrs"]["groups"] == 8 and convs[1]["attrs"]["fan_in"] == 9.0  # exact: shape arithmetic
    (norm,) = [d for d in nodes if d["op"] == "norm"]  # the BN after a conv is folded into it by the exporter
    assert norm["fn"] == "batch" and set(norm["params"]) == {"scale", "bias"}
    assert [d["fn"] for d in nodes if d["op"] == "pool"] == ["max", "global_avg"]
    assert nodes[-1]["op"] == "softmax" and nodes[-1]["attrs"]["axis"] == -1 and nodes[-1]["out_shape"] == (2, 4)


def test_decomposed_layer_norm_is_one_norm_node(tmp_path) -> None:
    """Before opset 17 the exporter writes LayerNorm as ReduceMean/Sub/Pow/Sqrt/Div."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.LayerNorm(10), nn.Linear(10, 2))
    path = tmp_path / "ln13.onnx"
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 6),), str(path), dynamo=False, opset_version=13, input_names=["x"])
    assert "LayerNormalization" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    handle = load_onnx(str(path))
    graph = handle.graph
    ops = [graph.nodes[n] for n in sorted(graph.nodes, key=lambda n: graph.nodes[n]["order"])]
    (norm,) = [d for d in ops if d["op"] == "norm"]
    assert (
        norm["fn"] == "layer"
        and norm["attrs"]["normalized_shape"] == (10,)
        and norm["attrs"]["eps"] == pytest.approx(1e-5)
    )
    assert not [d for d in ops if d["op"] == "unknown"]
    assert [d["op"] for d in ops][:3] == ["input", "linear", "norm"]
    x = torch.randn(2, 6)
    torch.testing.assert_close(handle.module(x), model(x))


@pytest.mark.parametrize("form", ["rsqrt", "reciprocal", "divide"])
def test_hand_written_rms_norm_is_one_norm_node(tmp_path, form: str) -> None:
    """Without a norm node the chain Pow/ReduceMean/Sqrt/Div passed its input through, and the
    estimate read x * mean(x^2) as the output: signal collapse on a healthy Llama."""
    model = tf.rms_norm_stack(form).eval()
    path = tmp_path / f"rms_{form}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 6),), str(path), dynamo=False, opset_version=17, input_names=["x"])
    handle = load_onnx(str(path))
    ops = [handle.graph.nodes[n] for n in sorted(handle.graph.nodes, key=lambda n: handle.graph.nodes[n]["order"])]
    norms = [d for d in ops if d["op"] == "norm"]
    assert [d["fn"] for d in norms] == ["rms", "rms"] and norms[0]["attrs"]["normalized_shape"] == (32,)
    assert not [d for d in ops if d["op"] == "unknown"]
    x = torch.randn(2, 6)
    torch.testing.assert_close(handle.module(x), model(x))


def test_weightless_copy_keeps_shapes_and_drops_only_large_weights():
    """The checker and shape inference see weights as typed inputs, not their bytes."""
    import numpy as np
    from onnx import helper, numpy_helper

    from gradaudit.loaders.onnx_loader import weightless
    from gradaudit.loaders.onnx_weights import LARGE_ELEMENTS

    big = numpy_helper.from_array(np.ones((LARGE_ELEMENTS + 1, 2), np.float32), "big")
    small = numpy_helper.from_array(np.ones((2,), np.float32), "small")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "big"], ["y"]), helper.make_node("Add", ["y", "small"], ["z"])],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3, LARGE_ELEMENTS + 1])],
        [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [3, 2])], [big, small],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    light = weightless(model)
    assert [t.name for t in light.graph.initializer] == ["small"]
    assert [i.name for i in light.graph.input] == ["x", "big"]
    onnx.checker.check_model(light)
    inferred = onnx.shape_inference.infer_shapes(light)
    (y,) = [v for v in inferred.graph.value_info if v.name == "y"]  # inferred through the weight
    assert [d.dim_value for d in y.type.tensor_type.shape.dim] == [3, 2]
    assert len(model.graph.initializer) == 2  # the original is untouched


def test_exported_group_norm_and_silu_are_one_node_each(tmp_path) -> None:
    """PyTorch exports GroupNorm as Reshape -> InstanceNormalization -> Reshape, then Mul/Add,
    and SiLU as Mul(x, Sigmoid(x)). Read op by op, a pooled head's input was predicted 0.7
    decades low; matched, the exported model's estimate is the traced module's."""
    from gradaudit.loaders.torch_loader import from_module
    from gradaudit.static import estimate

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.GroupNorm(4, 16),
        nn.SiLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.GroupNorm(4, 16),
        nn.SiLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()
    x = torch.randn(4, 3, 8, 8)
    path = tmp_path / "gn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17)
    exported = load_onnx(str(path), batch=4)
    norms = [d for _, d in exported.graph.nodes(data=True) if d["op"] == "norm"]
    assert [(d["fn"], d["attrs"]["num_groups"]) for d in norms] == [("group", 4), ("group", 4)]
    # SiLU exports as Mul(x, Sigmoid(x)), whose mean is not the product of the factors' means
    assert [d["fn"] for _, d in exported.graph.nodes(data=True) if d["op"] == "activation"] == ["silu", "silu"]
    traced = from_module(model, (x,))
    ratios = [estimate(h.graph, h.inputs).log10_ratio_first_last for h in (exported, traced)]
    assert ratios[0] == pytest.approx(ratios[1], abs=0.1)


class _GeluNew(nn.Module):
    """GPT-2's tanh-approximated GELU as its code writes it, and a causal mask by torch.where."""

    def forward(self, x):
        gelu = 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
        causal = torch.tril(torch.ones(gelu.shape[-1], gelu.shape[-1], dtype=torch.bool))
        return torch.where(causal, gelu @ gelu.transpose(-1, -2), torch.tensor(-1e4)).softmax(-1)


def test_written_out_gelu_and_a_where_mask_are_known_on_both_routes(tmp_path) -> None:
    """GPT-2 style code left Pow (in the GELU) and Where (the mask) without gain rules: partial."""
    from gradaudit.loaders.torch_loader import from_module

    model = nn.Sequential(nn.Linear(8, 8), _GeluNew()).eval()
    x = torch.randn(2, 8, 8)
    path = tmp_path / "gelu_new.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17)
    for handle in (load_onnx(str(path), batch=2), from_module(model, (x,))):
        nodes = [d for _, d in handle.graph.nodes(data=True)]
        assert not [d for d in nodes if d["op"] == "unknown"], [d["source"] for d in nodes if d["op"] == "unknown"]
        (gelu,) = [d for d in nodes if d["op"] == "activation"]
        assert gelu["fn"] == "gelu" and gelu["attrs"]["approximate"] == "tanh"


class _GeluErf(nn.Module):
    """The exact GELU written out, in the two orders code and exporters use."""

    def __init__(self, half_first: bool) -> None:
        super().__init__()
        self.half_first = half_first

    def forward(self, x):
        one_plus_erf = 1.0 + torch.erf(x / math.sqrt(2.0))
        return x * 0.5 * one_plus_erf if self.half_first else x * one_plus_erf * 0.5


@pytest.mark.parametrize("half_first", [False, True])
def test_a_written_out_erf_gelu_is_one_gelu(tmp_path, half_first) -> None:
    """wav2vec2's legacy export writes GELU as Div, Erf, Add, Mul, Mul: read node by node its
    static ratio was 0.5 decades off the measured one; read as one GELU it matches nn.GELU's."""
    from gradaudit.loaders.torch_loader import from_module
    from gradaudit.static import estimate

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), _GeluErf(half_first), nn.Linear(16, 16), _GeluErf(half_first),
                          nn.Linear(16, 4))
    x = torch.randn(8, 16)
    path = tmp_path / "gelu_erf.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17)
    handle = load_onnx(str(path), batch=8)
    activations = [d for _, d in handle.graph.nodes(data=True) if d["op"] == "activation"]
    assert [d["fn"] for d in activations] == ["gelu", "gelu"]
    reference = nn.Sequential(model[0], nn.GELU(), model[2], nn.GELU(), model[4])
    traced = from_module(reference, (x,))
    ratios = [estimate(h.graph, h.inputs).log10_ratio_first_last for h in (handle, traced)]
    assert ratios[0] == pytest.approx(ratios[1], abs=0.02)


def test_a_batch_norm_folded_by_the_exporter_is_noted(tmp_path) -> None:
    """An eval-mode export folds BatchNorm into the convolution (weights renamed onnx::Conv_*):
    the file describes a network without it, which the report must say; kept, nothing is said."""
    x = torch.randn(2, 3, 8, 8)

    def notes(model: nn.Module, **export_options) -> list[str]:
        path = tmp_path / "m.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, opset_version=17, **export_options)
        return [note for note in load_onnx(str(path), batch=2).warnings if "folds a BatchNorm" in note]

    with_bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    assert len(notes(with_bn)) == 1
    assert not notes(with_bn, do_constant_folding=False)
    assert not notes(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
