"""Hostile `.pt2` archives and TorchScript files whose payload, if it ever runs, leaves a marker.

Each `.pt2` starts from a real `torch.export.save` of a small model and rewrites one member the way
an attacker would. Every payload names an absolute marker path; a test asserts the marker never
appears without --trust (and, where torch's own loader runs the payload, that it does appear with
--trust, which proves the payload is live).
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import torch

ROOT = "model/"  # the archive folder torch.export.save writes for a file named model.pt2
GRAPH = ROOT + "models/model.json"
WEIGHTS_CONFIG = ROOT + "data/weights/model_weights_config.json"
CONSTANTS_CONFIG = ROOT + "data/constants/model_constants_config.json"
INPUT_SHAPE = "2,4"


class TouchesMarker:
    """Unpickling it calls open(marker, "w"): arbitrary code through the pickle protocol."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.second = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


class WritesThroughFromFile(torch.nn.Module):
    """A scripted forward that maps a file it names, shared, and overwrites its bytes."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        written = torch.from_file(self.target, True, 8, dtype=torch.uint8)
        written.fill_(65)
        return self.fc(x) + written.float().sum() * 0


def exported(path: Path, dynamic_batch: bool = False) -> Path:
    """A genuine torch.export.save file of SmallNet; with `dynamic_batch`, its batch dimension is
    symbolic (the graph then holds sympy expressions)."""
    torch.manual_seed(0)
    shapes = {"x": {0: torch.export.Dim("batch", min=2, max=64)}} if dynamic_batch else None
    torch.export.save(torch.export.export(SmallNet(), (torch.randn(2, 4),), dynamic_shapes=shapes), str(path))
    return path


def scripted_writer(path: Path, target: Path) -> Path:
    torch.jit.save(torch.jit.script(WritesThroughFromFile(str(target))), str(path))
    return path


def rewritten(source: Path, path: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """`source` with its members passed through `change` (a dict name -> bytes, edited in place)."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def pickled(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _edit_json(members: dict[str, bytes], name: str, edit: Callable[[dict], None]) -> None:
    data = json.loads(members[name])
    edit(data)
    members[name] = json.dumps(data).encode()


def _add_node(graph: dict, node: dict) -> None:
    graph["graph_module"]["graph"]["nodes"].insert(0, node)


def hostile_changes(marker: Path) -> dict[str, Callable[[dict[str, bytes]], None]]:
    """name -> a change that plants a payload writing `marker`."""
    touch = f"__import__('pathlib').Path({str(marker)!r}).touch()"

    def sample_inputs(members):
        members[ROOT + "data/sample_inputs/model.pt"] = pickled(TouchesMarker(marker))

    def pickled_weight(members):
        _edit_json(members, WEIGHTS_CONFIG, lambda c: c["config"]["first.bias"].update(use_pickle=True))
        path_name = json.loads(members[WEIGHTS_CONFIG])["config"]["first.bias"]["path_name"]
        members[ROOT + "data/weights/" + path_name] = pickled(TouchesMarker(marker))

    def opaque_constant(members):
        _edit_json(members, CONSTANTS_CONFIG, lambda c: c["config"].update(
            evil={"path_name": "opaque_0", "is_param": False, "use_pickle": True, "tensor_meta": None}))
        members[ROOT + "data/constants/opaque_0"] = pickle.dumps(TouchesMarker(marker))

    def legacy_weights(members):
        members[ROOT + "data/weights/model.pt"] = pickled(TouchesMarker(marker))

    def evaluated_expression(members):
        def edit(graph):
            sizes = graph["graph_module"]["graph"]["tensor_values"]["x"]["sizes"]
            sizes[0] = {"as_expr": {"expr_str": touch, "hint": {"as_int": 2}}}
        _edit_json(members, GRAPH, edit)

    def guards_code(members):
        _edit_json(members, GRAPH, lambda g: g.update(guards_code=[f"{touch} is None"]))

    def os_system_target(members):
        _edit_json(members, GRAPH, lambda g: _add_node(g, {
            "target": "torch.os.system", "inputs": [{"name": "command", "arg": {"as_string": f"touch {marker}"},
                                                      "kind": 1}], "outputs": [], "metadata": {}}))

    def from_file_target(members):
        _edit_json(members, GRAPH, lambda g: _add_node(g, {
            "target": "torch.ops.aten.from_file.default",
            "inputs": [{"name": "filename", "arg": {"as_string": str(marker)}, "kind": 1},
                       {"name": "shared", "arg": {"as_bool": True}, "kind": 1}],
            "outputs": [{"as_tensor": {"name": "mapped"}}], "metadata": {}}))

    def keyword_injection(members):
        _edit_json(members, GRAPH, lambda g: _add_node(g, {
            "target": "torch.ops.higher_order.wrap_with_set_grad_enabled",
            "inputs": [{"name": f"a=1);{touch};(", "arg": {"as_bool": True}, "kind": 2}],
            "outputs": [], "metadata": {}}))

    def quoted_string_input(members):
        _edit_json(members, GRAPH, lambda g: g["graph_module"]["graph"]["inputs"].append(
            {"as_string": f"x' == '' or {touch} or '"}))

    def compiled_library(members):
        members[ROOT + "data/aotinductor/model/model.so"] = b"\x7fELF" + bytes(60)

    def stray_member(members):
        members[ROOT + "data/payload.bin"] = pickled(TouchesMarker(marker))

    return {
        "sample-inputs-pickle": sample_inputs,
        "weight-use-pickle": pickled_weight,
        "opaque-constant-pickle": opaque_constant,
        "legacy-weights-pickle": legacy_weights,
        "sympify-expression": evaluated_expression,
        "guards-code": guards_code,
        "os-system-target": os_system_target,
        "from-file-target": from_file_target,
        "keyword-name-injection": keyword_injection,
        "quoted-string-input": quoted_string_input,
        "aoti-library": compiled_library,
        "stray-member": stray_member,
    }


def with_duplicate_graph(source: Path, path: Path, marker: Path) -> Path:
    """Two members named models/model.json: one harmless, one with guards code. Python's
    zipfile and torch's reader may each pick a different one."""
    with zipfile.ZipFile(source) as archive:
        members = [(name, archive.read(name)) for name in archive.namelist()]
    graph = json.loads(dict(members)[GRAPH])
    graph["guards_code"] = [f"__import__('pathlib').Path({str(marker)!r}).touch() is None"]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
        with warnings.catch_warnings():  # zipfile warns about the duplicate name, which is the point
            warnings.simplefilter("ignore")
            archive.writestr(GRAPH, json.dumps(graph).encode())
    return path
