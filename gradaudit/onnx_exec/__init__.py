"""ONNX -> torch executor: run ONNX graphs with torch ops so gradients are real autograd ones.

`SUPPORTED_OPS` is derived from the op registry, so the table of supported operators never
drifts from what the executor can run.
"""

from gradaudit.onnx_exec import (  # noqa: F401  (register ops)
    ops_attention,
    ops_contrib,
    ops_control,
    ops_elementwise,
    ops_loss,
    ops_misc,
    ops_nn,
    ops_quant,
    ops_recurrent,
    ops_sequence,
    ops_shape,
    ops_signal,
    ops_state,
    ops_vision,
)
from gradaudit.onnx_exec.executor import OnnxExecutionError, OnnxModule, Step, onnx_to_torch, opset_of, run_onnx
from gradaudit.onnx_exec.op_registry import OPS

SUPPORTED_OPS: frozenset[str] = frozenset(OPS)

__all__ = ["OnnxExecutionError", "OnnxModule", "SUPPORTED_OPS", "Step", "onnx_to_torch", "opset_of", "run_onnx"]
