"""Carry out weight edits and structural rewrites on a copy of an ONNX model.

`edited_onnx` writes the executor's edited parameters back into the initializers; `rewritten`
then edits the graph: new nodes go right after the node producing the tensor they read, so the
node list stays topologically sorted, and every consumer of a rewired tensor (graph outputs
included) reads the new one. New initializers are identity-initialised (norm scale 1, shift 0,
running mean 0 and variance 1); initializers no node reads any more are dropped. The result must
pass `onnx.checker`. `restructured_onnx_handle` loads such a copy for re-analysis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from typing import Iterator

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from gradaudit.errors import GradauditError
from gradaudit.model import ModelHandle
from gradaudit.remedies.edits import Edit, apply_edits
from gradaudit.remedies.structure import Rewrite

ONNX_ACTIVATIONS = {"relu": "Relu"}
NORM_EPS = 1e-5


def edited_onnx(
    source: str, handle: ModelHandle, edits: tuple[Edit, ...], seed: int
) -> tuple[onnx.ModelProto, list[str]]:
    """The ONNX model with the edited executor parameters written into its initializers; its
    external data is read as the loader reads it, from inside the model's folder only."""
    from gradaudit.onnx_exec.external_data import load_confined

    model = load_confined(source)
    module = apply_edits(handle.module, edits, seed)
    onnx_name = {attr: name for name, attr in handle.module.param_names.items()}
    params = dict(module.named_parameters())
    initializers = {t.name: t for t in model.graph.initializer}
    skipped = []
    for param in dict.fromkeys(e.param for e in edits):
        name = onnx_name.get(param)
        if name not in initializers:
            skipped.append(f"{param}: not an ONNX initializer (computed or shared), left unchanged")
            continue
        old = initializers[name]
        value = params[param].detach().cpu()
        value = value.float() if value.dtype == torch.bfloat16 else value  # numpy has no bfloat16; exact in float32
        array = value.numpy().astype(
            numpy_helper.to_array(old).dtype
        )  # back to the stored type (ml_dtypes for bf16/float8)
        old.CopyFrom(numpy_helper.from_array(array, name))
    onnx.checker.check_model(model)
    return model, skipped


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    for node in model.graph.node:
        if node.name == name:
            return node
    raise GradauditError(f"no ONNX node named {name!r}")


def _rewire(model: onnx.ModelProto, old: str, new: str, keep: set[str]) -> None:
    """Every reader of tensor `old` except the nodes in `keep` reads `new` instead."""
    for node in model.graph.node:
        if node.name in keep:
            continue
        for slot, tensor in enumerate(node.input):
            if tensor == old:
                node.input[slot] = new
    for output in model.graph.output:
        if output.name == old:
            raise GradauditError(f"{old} is a graph output: a rewrite there would rename the model's output")


def _insert_after(model: onnx.ModelProto, producer: str, nodes: list[onnx.NodeProto]) -> None:
    """Place `nodes` right after the node producing tensor `producer` (at the start for a graph input)."""
    position = next((i + 1 for i, n in enumerate(model.graph.node) if producer in n.output), 0)
    for offset, node in enumerate(nodes):
        model.graph.node.insert(position + offset, node)


def _constant(model: onnx.ModelProto, name: str, values: np.ndarray) -> str:
    model.graph.initializer.append(numpy_helper.from_array(values.astype(np.float32), name))
    return name


def _insert_norm(model: onnx.ModelProto, rewrite: Rewrite) -> None:
    """layer -> norm -> (every former reader). When the layer's output is a graph output, the norm
    takes over its name and the layer writes a new tensor, so the model's outputs keep their names."""
    layer = _node(model, rewrite.node)
    tensor, prefix = layer.output[0], f"{rewrite.node}/gradaudit_norm"
    ones, zeros = np.ones(rewrite.size), np.zeros(rewrite.size)
    is_output = any(output.name == tensor for output in model.graph.output)
    source, result = (f"{prefix}_input", tensor) if is_output else (tensor, f"{prefix}_output")
    if rewrite.to == "batch":
        inputs = [source] + [_constant(model, f"{prefix}_{part}", values) for part, values in
                             (("scale", ones), ("bias", zeros), ("mean", zeros), ("var", ones))]
        node = helper.make_node("BatchNormalization", inputs, [result], name=prefix, epsilon=NORM_EPS)
    else:
        inputs = [source, _constant(model, f"{prefix}_scale", ones), _constant(model, f"{prefix}_bias", zeros)]
        node = helper.make_node("LayerNormalization", inputs, [result], name=prefix, axis=-1, epsilon=NORM_EPS)
    if is_output:
        layer.output[0] = source
    else:
        _rewire(model, tensor, result, keep=set())
    _insert_after(model, source, [node])


def _remove_norm(model: onnx.ModelProto, rewrite: Rewrite) -> None:
    norm = _node(model, rewrite.node)
    _rewire(model, norm.output[0], norm.input[0], keep={norm.name})
    model.graph.node.remove(norm)


def _swap_activation(model: onnx.ModelProto, rewrite: Rewrite) -> None:
    node = _node(model, rewrite.node)
    node.op_type = ONNX_ACTIVATIONS[rewrite.to]
    del node.attribute[:]


def _add_skip(model: onnx.ModelProto, rewrite: Rewrite) -> None:
    """x -> x + scale * run(x): the run reads `start`, the next layer reads `end`."""
    start, end = _node(model, rewrite.node).input[0], _node(model, rewrite.to).input[0]
    prefix = f"{rewrite.node}/gradaudit_skip"
    scale = _constant(model, f"{prefix}_scale", np.array(rewrite.scale))
    scaled = helper.make_node("Mul", [end, scale], [f"{prefix}_branch"], name=f"{prefix}_mul")
    summed = helper.make_node("Add", [start, scaled.output[0]], [f"{prefix}_output"], name=f"{prefix}_add")
    _rewire(model, end, summed.output[0], keep={scaled.name})
    _insert_after(model, end, [scaled, summed])


REWRITES = {"insert_norm": _insert_norm, "remove_norm": _remove_norm, "swap_activation": _swap_activation,
            "add_skip": _add_skip}


def rewritten(model: onnx.ModelProto, rewrites: tuple[Rewrite, ...]) -> onnx.ModelProto:
    """A copy of `model` with the rewrites made, checked by onnx.checker."""
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    for rewrite in rewrites:
        REWRITES[rewrite.how](changed, rewrite)
    read = {tensor for node in changed.graph.node for tensor in node.input}
    kept = [t for t in changed.graph.initializer if t.name in read]
    del changed.graph.initializer[:]
    changed.graph.initializer.extend(kept)
    onnx.checker.check_model(changed)
    return changed


@contextlib.contextmanager
def restructured_onnx_handle(handle: ModelHandle, edits: tuple[Edit, ...], rewrites: tuple[Rewrite, ...],
                             seed: int) -> Iterator[ModelHandle]:
    """The handle of the edited, rewritten copy, loaded from a temporary file that lives as long
    as the handle is in use (the loader may map its weights)."""
    from gradaudit.loaders.onnx_loader import load_onnx

    model, _ = edited_onnx(handle.source, handle, edits, seed)
    with tempfile.TemporaryDirectory(prefix="gradaudit-") as folder:
        path = os.path.join(folder, "restructured.onnx")
        onnx.save(rewritten(model, rewrites), path)
        changed = load_onnx(path, [spec.shape for spec in handle.inputs])
        yield dataclasses.replace(changed, source=handle.source, loss_fn=handle.loss_fn)
