"""Initializers mapped from the file: found where protobuf stores them, equal to what it reads,
private to the process, and left to the protobuf path whenever the scan cannot vouch for them."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradaudit.errors import InputError
from gradaudit.loaders.onnx_loader import load_onnx, read_model
from gradaudit.loaders.onnx_weights import STRIP_BYTES, _length_delimited, strip_raw_data

ROOT = Path(__file__).resolve().parents[2]


def _chain(*weights: TensorProto) -> onnx.ModelProto:
    """x -> MatMul(w0) -> Relu -> MatMul(w1) ...: every weight feeds the data path."""
    nodes, x = [], "x"
    for index, weight in enumerate(weights):
        out = f"h{index}"
        nodes.append(helper.make_node("MatMul", [x, weight.name], [out + "m"], name=f"dense{index}"))
        nodes.append(helper.make_node("Relu", [out + "m"], [out], name=f"relu{index}"))
        x = out
    first = numpy_helper.to_array(weights[0]).shape[0]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", first])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [None, None])], list(weights))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _weights(*shapes: tuple[int, int]) -> list[TensorProto]:
    rng = np.random.default_rng(0)
    return [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), f"w{i}") for i, s in enumerate(shapes)]


def _file_map(path: Path) -> mmap.mmap:
    with open(path, "rb") as file:
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)


def _without_large_raw_data(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for tensor in copy.graph.initializer:
        if len(tensor.raw_data) > STRIP_BYTES:
            tensor.ClearField("raw_data")
    return copy


def test_the_stripped_model_is_the_model_less_its_large_payloads_found_where_protobuf_stores_them(tmp_path: Path):
    from benchmarks.static_scale import gpt

    onnx.save(gpt(2, 64), str(tmp_path / "gpt.onnx"))  # large and small payloads interleaved
    for path in (ROOT / "samples" / "healthy_bn_cnn.onnx", ROOT / "samples" / "healthy_mlp_kaiming.onnx",
                 tmp_path / "gpt.onnx"):
        sample = path.name
        model, mapping = onnx.load(str(path)), _file_map(path)
        data, spans = strip_raw_data(mapping)
        assert onnx.ModelProto.FromString(data) == _without_large_raw_data(model), sample
        large = {t.name: t.raw_data for t in model.graph.initializer if len(t.raw_data) > STRIP_BYTES}
        assert large and set(spans) == set(large), sample
        for name, (offset, length) in spans.items():
            assert mapping[offset : offset + length] == large[name]


def test_mapped_tensors_equal_the_protobuf_values_and_writes_stay_private(tmp_path: Path):
    path = tmp_path / "m.onnx"
    onnx.save(_chain(*_weights((128, 96), (96, 100))), str(path))
    before = path.read_bytes()
    model, tensors = read_model(str(path))
    assert set(tensors) == {"w0", "w1"} and not any(t.raw_data for t in model.graph.initializer)
    for tensor in onnx.load(str(path)).graph.initializer:
        np.testing.assert_array_equal(tensors[tensor.name].numpy(),
                                      numpy_helper.to_array(tensor))  # exact: the same bytes read two ways
    tensors["w0"].mul_(0.0)  # what the sharpness probe and remedy verification do to parameters
    assert path.read_bytes() == before
    assert bool((tensors["w0"] == 0).all())


def test_external_data_is_mapped_and_a_short_file_is_named(tmp_path: Path):
    path = tmp_path / "ext.onnx"
    onnx.save_model(_chain(*_weights((8, 16), (16, 400))), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    model, tensors = read_model(str(path))
    assert set(tensors) == {"w1"}  # w0 is small: read into the protobuf
    reference = onnx.load(str(path))
    stored = numpy_helper.to_array(reference.graph.initializer[1])
    np.testing.assert_array_equal(tensors["w1"].numpy(), stored)  # exact: the same bytes read two ways
    with open(tmp_path / "weights.bin", "r+b") as file:
        file.truncate(8 * 16 * 4 + 10)  # w1 (large, so mapped rather than read) now ends past the file
    with pytest.raises(InputError,
                       match="'w1' at location 'weights.bin': 25600 bytes at offset 512 run past the end of the "
                             "522-byte file"):
        load_onnx(str(path))


def test_an_embedded_payload_that_does_not_fit_its_dims_is_named(tmp_path: Path):
    model = _chain(*_weights((128, 96)))
    model.graph.initializer[0].dims[0] = 129
    path = tmp_path / "short.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InputError, match="'w0' declares shape \\[129, 96\\] but its data \\(49152 bytes"):
        load_onnx(str(path))


def test_payloads_the_scan_cannot_vouch_for_stay_in_the_protobuf(tmp_path: Path):
    typed = helper.make_tensor("w1", TensorProto.FLOAT, [80, 64], np.ones(5120, np.float32).tolist())  # float_data
    path = tmp_path / "typed.onnx"
    onnx.save(_chain(_weights((8, 80))[0], typed), str(path))
    model, tensors = read_model(str(path))
    assert tensors == {} and len(model.graph.initializer[1].float_data) == 5120
    total = float(load_onnx(str(path)).module.w1.detach().sum())
    assert total == 5120.0  # exact: a sum of 5120 ones is exact in float32


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (lengths below 2^14 here)."""
    return _length_delimited(number, payload)


def test_a_repeated_raw_data_field_is_not_guessed_at():
    """Protobuf keeps the last of two raw_data fields; the scan vouches for neither and strips
    nothing, so protobuf's reading stands."""
    name, data = _field(8, b"w"), _field(9, bytes(STRIP_BYTES + 4))
    once = _field(7, _field(5, name + data))
    stripped, spans = strip_raw_data(once)
    assert (spans == {"w": (once.index(bytes(STRIP_BYTES + 4)), STRIP_BYTES + 4)}
            and stripped == _field(7, _field(5, name)))
    twice = _field(7, _field(5, name + data + data))
    assert strip_raw_data(twice) == (twice, {})


def test_big_endian_hosts_map_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "m.onnx"
    onnx.save(_chain(*_weights((128, 96))), str(path))
    monkeypatch.setattr("gradaudit.loaders.onnx_weights.CAN_MAP", False)
    monkeypatch.setattr("gradaudit.loaders.onnx_loader.CAN_MAP", False)
    model, tensors = read_model(str(path))
    assert tensors == {} and len(model.graph.initializer[0].raw_data) == 128 * 96 * 4


def test_probe_gradients_through_mapped_unaligned_weights_match_copied_ones(tmp_path: Path):
    """raw_data offsets are arbitrary, so mapped tensors are mostly unaligned: the backward pass
    must not care."""
    path = tmp_path / "m.onnx"
    onnx.save(_chain(*_weights((130, 99), (99, 171))), str(path))
    mapped = load_onnx(str(path)).module
    assert any(p.data_ptr() % 4 for p in mapped.parameters())  # the case under test occurs
    copied = load_onnx(str(path)).module
    for p in copied.parameters():
        p.data = p.data.clone()
    x = torch.randn(5, 130)
    for module in (mapped, copied):
        module(x).pow(2).sum().backward()
    # Alignment may change which SIMD path a kernel takes and so the order of its sums: equal up to
    # float32 rounding of a length-171 dot product (171·eps relative to the largest entry).
    for a, b in zip(mapped.parameters(), copied.parameters()):
        bound = 171 * torch.finfo(torch.float32).eps
        torch.testing.assert_close(a.grad, b.grad, rtol=bound, atol=bound * float(b.grad.abs().max()))


@pytest.mark.parametrize("external", [False, True])
def test_a_large_bool_mask_is_read_as_its_bytes_compared_with_zero(tmp_path: Path, external: bool):
    """The dynamo exporter stores attention masks as bool initializers (wav2vec2's [4, 1, 159, 159]):
    mapped like any large weight, they are bools, not a refused payload."""
    mask = np.random.default_rng(0).random((4, 10000)) < 0.5
    graph = helper.make_graph(
        [helper.make_node("Where", ["mask", "x", "zero"], ["y"], name="where")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 10000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 10000])],
        [numpy_helper.from_array(mask, "mask"), numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    path = tmp_path / "mask.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path),
                    save_as_external_data=external, location="mask.bin", size_threshold=0)
    _, tensors = read_model(str(path))
    assert tensors["mask"].dtype == torch.bool
    np.testing.assert_array_equal(tensors["mask"].numpy(), mask)  # exact: the same bytes read two ways
    assert load_onnx(str(path), batch=4).inputs[0].shape == (4, 10000)
