"""BatchNorms an exporter folded into the layer before them, found from the file's node metadata
and restored for the audit.

PyTorch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`) optimises an eval-mode graph
with onnxscript, which folds every BatchNorm into the Conv/ConvTranspose/Gemm before it. The
file then describes a deep network without normalisation, which is not the network that trains:
torchvision `mobilenet_v2` audited that way failed the gate although it trains. The fused node
keeps the BatchNorm call's metadata (`pkg.onnxscript.rewriter.rule_name` naming `FuseBatchNormInto*` among its rules,
and `pkg.torch.onnx.class_hierarchy` ending in the aten batch_norm op), so the file itself says a
normalisation was there. The audit restores it as the training-time normalisation (batch
statistics, unit scale, zero shift: BatchNorm's own default init; the folded scale and shift are
not recoverable from the product) and says so in a note.
"""

from __future__ import annotations

import re

import onnx

RULE_TAG = "pkg.onnxscript.rewriter.rule_name"
HIERARCHY_TAG = "pkg.torch.onnx.class_hierarchy"
FOLDING_RULE = re.compile(r"FuseBatchNormInto")
BATCH_NORM_CALL = re.compile(r"aten\.\w*batch_norm")
FOLDED_INTO = ("Conv", "ConvTranspose", "Gemm")
NOTE_NAMES = 3


def restore_folded_batch_norms(model: onnx.ModelProto) -> list[str]:
    """Insert a BatchNormalization after every node whose metadata says a BatchNorm was folded
    into it (in place); the note to report, or nothing when there was none."""
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    nodes, restored = [], []
    for node in model.graph.node:
        nodes.append(node)
        channels = _output_channels(node, initializers) if _records_folded_batch_norm(node) else None
        if channels is not None:
            nodes.append(_batch_norm_after(model.graph, node, channels, initializers[node.input[1]].data_type))
            restored.append(node.name or node.output[0])
    if not restored:
        return []
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    shown = ", ".join(restored[:NOTE_NAMES]) + (
        f" and {len(restored) - NOTE_NAMES} more" if len(restored) > NOTE_NAMES else ""
    )
    return [(f"{len(restored)} BatchNorm(s) were folded by the exporter into the layer before them (node metadata: "
             f"{shown}); audited with each restored as training-time batch normalisation (unit scale, zero shift). "
             "Export with torch.onnx.export(..., dynamo=True, optimize=False) to keep the file's own")]


def _records_folded_batch_norm(node: onnx.NodeProto) -> bool:
    """A weight layer carrying a BatchNorm call's metadata: the exporter fused that call into it."""
    if node.op_type not in FOLDED_INTO or len(node.input) < 2:
        return False
    props = {prop.key: prop.value for prop in node.metadata_props}
    return bool(FOLDING_RULE.search(props.get(RULE_TAG, "")) or BATCH_NORM_CALL.search(props.get(HIERARCHY_TAG, "")))


def _output_channels(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> int | None:
    """The channels the folded BatchNorm normalised, from the stored weight's shape (None: unknown)."""
    weight = initializers.get(node.input[1])
    if weight is None or len(weight.dims) < 2:
        return None
    attrs = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
    if node.op_type == "Conv":
        return weight.dims[0]
    if node.op_type == "ConvTranspose":
        return weight.dims[1] * attrs.get("group", 1)
    return weight.dims[0] if attrs.get("transB", 0) else weight.dims[1]


def _batch_norm_after(graph: onnx.GraphProto, node: onnx.NodeProto, channels: int, data_type: int) -> onnx.NodeProto:
    """A BatchNormalization reading the node's output under a new name and writing the old one,
    so every reader (and a graph output) now reads the normalised tensor."""
    output = node.output[0]
    folded = f"{output}/before_restored_batch_norm"
    node.output[0] = folded
    prefix = f"{node.name or output}/restored_batch_norm"
    stats = []
    for role, value in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0)):
        graph.initializer.append(onnx.helper.make_tensor(f"{prefix}/{role}", data_type, [channels], [value] * channels))
        stats.append(f"{prefix}/{role}")
    return onnx.helper.make_node("BatchNormalization", [folded, *stats], [output], name=prefix)
