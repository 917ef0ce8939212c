"""Written-out normalisations (and SiLU) in a traced torch graph, found by the ONNX loader's matcher.

`x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)`, Llama's RMSNorm as most code writes
it, is five calls without gain rules: passed through one by one, the estimate reads
x * mean(x^2) as the output and sees a signal collapse. gradaudit.loaders.onnx_patterns already
knows such chains; here each fx call is renamed into ONNX's vocabulary (a Step) and matched by
the same code. Every node becomes a Step, so a tensor of the chain read elsewhere still keeps
the chain apart.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx

from gradaudit.loaders.onnx_patterns import FusedLayer, decomposed_layers
from gradaudit.onnx_exec.executor import Step

ONNX_NAMES = {"pow": "Pow", "square": "Pow", "mean": "ReduceMean", "add": "Add", "iadd": "Add", "sub": "Sub",
              "sqrt": "Sqrt", "rsqrt": "Rsqrt", "reciprocal": "Reciprocal", "mul": "Mul", "imul": "Mul",
              "truediv": "Div", "div": "Div", "sigmoid": "Sigmoid", "tanh": "Tanh"}


# Calls that keep a tensor's values (a dtype cast, a copy): T5's RMSNorm squares
# `x.to(torch.float32)`, not x. ONNX's Cast, which the matcher sees through.
VALUE_KEEPING = frozenset({"to", "_to_copy", "type", "type_as", "float", "double", "half", "bfloat16", "contiguous",
                           "clone"})


def _step(node: fx.Node, name_of_call: str, constants: dict[str, torch.Tensor]) -> Step:
    def operand(index: int, value: Any) -> str:
        if isinstance(value, fx.Node):
            return value.name
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            constants[f"{node.name}:{index}"] = torch.tensor(float(value))
            return f"{node.name}:{index}"
        return ""

    op = ONNX_NAMES.get(name_of_call) if node.op in ("call_function", "call_method") else None
    args = list(node.args)
    if (node.op in ("call_function", "call_method") and name_of_call in VALUE_KEEPING and args
            and isinstance(args[0], fx.Node)):
        return Step(node.name, "Cast", (args[0].name,), (node.name,), {})
    if op == "ReduceMean":
        dim = node.kwargs.get("dim", args[1] if len(args) > 1 else None)
        axes = tuple(dim) if isinstance(dim, (list, tuple)) else (dim,)
        if dim is None or not all(isinstance(a, int) for a in axes):
            return Step(node.name, "torch:mean", tuple(n.name for n in node.all_input_nodes), (node.name,), {})
        return Step(node.name, op, (operand(0, args[0]),), (node.name,), {"axes": axes})
    if op is not None and name_of_call == "square":
        return Step(node.name, op, (operand(0, args[0]), operand(1, 2)), (node.name,), {})
    if op is not None:
        return Step(node.name, op, tuple(operand(i, a) for i, a in enumerate(args[:2])), (node.name,), {})
    return Step(node.name, f"torch:{name_of_call}", tuple(n.name for n in node.all_input_nodes), (node.name,), {})


def fused_layers(graph: fx.Graph, values: dict[fx.Node, Any], data: set[fx.Node], call_name) -> dict[str, FusedLayer]:
    """fx node name of a written-out norm's or activation's last call -> it (`data`: the data-path nodes,
    whose values are not constants; `call_name` names a call as the torch vocabulary does)."""
    constants: dict[str, torch.Tensor] = {}
    steps = [_step(node, call_name(node) if node.op.startswith("call") else node.op, constants) for node in graph.nodes]
    by_name = {node.name: node for node in graph.nodes}

    def constant(name: str) -> torch.Tensor | None:
        if name in constants:
            return constants[name]
        node = by_name.get(name)
        value = values.get(node) if node is not None and node not in data else None
        return value if isinstance(value, torch.Tensor) else None

    return decomposed_layers(steps, constant)
