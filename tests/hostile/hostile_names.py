"""A real ONNX model whose every free-text field carries markup, script and terminal escapes.

Node names, tensor names, doc strings, metadata and a custom op type are all model-supplied and
all reach the reports; the HTML and terminal tests feed this model to the real CLI.
"""

from __future__ import annotations

import onnx
from onnx import helper

from tests.hostile import models
from tests.report.fixtures import HOSTILE_NAMES

# <script>, "><img onerror>, javascript: and </script>: the renderer tests' own hostile names
MARKUP = HOSTILE_NAMES[:4]
TERMINAL = ("\x1b[31mred\x1b[0m", "carriage\rreturn", "bell\x07", "\x1b]0;title\x07osc")


def _decorate(model: onnx.ModelProto, names: tuple[str, ...]) -> onnx.ModelProto:
    for node, name in zip(model.graph.node, names):
        node.name = name
        node.doc_string = name
    model.doc_string = model.graph.doc_string = names[0]
    helper.set_model_props(model, {name: name for name in names})
    model.producer_name = names[-1]
    return model


def probed_model(names: tuple[str, ...]) -> onnx.ModelProto:
    """The two-layer MLP, valid and executable, with `names` on its nodes and metadata."""
    return _decorate(models.mlp(names=names[:3]), names)


def unsupported_op_model(op_type: str) -> onnx.ModelProto:
    """A model with a custom-domain op whose type is `op_type`: it shows in the report's notes."""
    model = models.mlp()
    model.graph.node[1].op_type = op_type
    model.graph.node[1].domain = "evil.domain"
    model.opset_import.append(helper.make_opsetid("evil.domain", 1))
    return model
