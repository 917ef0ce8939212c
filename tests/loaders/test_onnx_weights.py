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
from gradaudit.loaders.onnx_loader import load_onnx
from gradaudit.loaders.onnx_weights import embedded_raw_data, mapped_initializers

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


def test_scan_finds_every_raw_data_payload_where_protobuf_stores_it(tmp_path: Path):
    for sample in ("healthy_bn_cnn.onnx", "healthy_preln_transformer.onnx"):
        model = onnx.load(str(ROOT / "samples" / sample))
        spans = embedded_raw_data(_file_map(ROOT / "samples" / sample))
        raw = [t for t in model.graph.initializer if t.HasField("raw_data")]
        assert raw and set(spans) == {t.name for t in raw}
        mapping = _file_map(ROOT / "samples" / sample)
        for tensor in raw:
            offset, length = spans[tensor.name]
            assert mapping[offset : offset + length] == tensor.raw_data


def test_mapped_tensors_equal_the_protobuf_values_and_writes_stay_private(tmp_path: Path):
    path = tmp_path / "m.onnx"
    onnx.save(_chain(*_weights((8, 16), (16, 4))), str(path))
    before = path.read_bytes()
    model = onnx.load(str(path))
    tensors = mapped_initializers(model, str(path))
    assert set(tensors) == {"w0", "w1"}
    for tensor in model.graph.initializer:
        np.testing.assert_array_equal(tensors[tensor.name].numpy(), numpy_helper.to_array(tensor))
    tensors["w0"].mul_(0.0)  # what the sharpness probe and remedy verification do to parameters
    assert path.read_bytes() == before
    assert bool((tensors["w0"] == 0).all())


def test_external_data_is_mapped_and_a_short_file_is_named(tmp_path: Path):
    path = tmp_path / "ext.onnx"
    onnx.save_model(_chain(*_weights((8, 16), (16, 400))), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)
    tensors = mapped_initializers(model, str(path))
    reference = onnx.load(str(path))
    for tensor in reference.graph.initializer:
        np.testing.assert_array_equal(tensors[tensor.name].numpy(), numpy_helper.to_array(tensor))
    with open(tmp_path / "weights.bin", "r+b") as file:
        file.truncate(8 * 16 * 4 + 10)  # w1 (large, so mapped rather than read) now ends past the file
    with pytest.raises(InputError, match="'w1'.*does not hold"):
        load_onnx(str(path))


def test_tensors_the_scan_cannot_vouch_for_take_the_protobuf_path(tmp_path: Path):
    typed = helper.make_tensor("w1", TensorProto.FLOAT, [16, 4], np.ones(64, np.float32).tolist())  # float_data
    path = tmp_path / "typed.onnx"
    onnx.save(_chain(_weights((8, 16))[0], typed), str(path))
    assert set(mapped_initializers(onnx.load(str(path)), str(path))) == {"w0"}
    handle = load_onnx(str(path))  # the typed tensor still loads, through numpy_helper
    assert float(handle.module.w1.detach().sum()) == 64.0


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (payloads here stay under 128 bytes)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_a_repeated_raw_data_field_is_not_guessed_at():
    """Protobuf keeps the last of two raw_data fields; the scan vouches for neither."""
    name, data = _field(8, b"w"), _field(9, b"\x00\x00\x80\x3f")
    assert embedded_raw_data(_field(7, _field(5, name + data))) == {"w": (9, 4)}  # 2+2 bytes of headers, 3 of name, 2 of raw_data header
    assert embedded_raw_data(_field(7, _field(5, name + data + data))) == {}


def test_big_endian_hosts_map_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "m.onnx"
    onnx.save(_chain(*_weights((8, 16))), str(path))
    monkeypatch.setattr("gradaudit.loaders.onnx_weights.sys.byteorder", "big")
    assert mapped_initializers(onnx.load(str(path)), str(path)) == {}


def test_probe_gradients_through_mapped_unaligned_weights_match_copied_ones(tmp_path: Path):
    """raw_data offsets are arbitrary, so mapped tensors are mostly unaligned: the backward pass
    must not care."""
    path = tmp_path / "m.onnx"
    onnx.save(_chain(*_weights((33, 65), (65, 7))), str(path))
    mapped = load_onnx(str(path)).module
    assert any(p.data_ptr() % 4 for p in mapped.parameters())  # the case under test occurs
    copied = load_onnx(str(path)).module
    for p in copied.parameters():
        p.data = p.data.clone()
    x = torch.randn(5, 33)
    for module in (mapped, copied):
        module(x).pow(2).sum().backward()
    for a, b in zip(mapped.parameters(), copied.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
