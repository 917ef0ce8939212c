"""What a loader hands to the analyses: the LayerGraph, a runnable torch module and its inputs.

The probe never touches the user's module directly: it deep-copies `module` and runs it through
`runner`, which can also return the outputs of chosen graph nodes (activations for dead/saturated
unit statistics, recurrent inputs for gradient-through-time). Both loaders provide a runner:
an fx interpreter for traced torch modules, forward hooks for modules that did not trace, the
ONNX executor's own node interpreter for ONNX files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Sequence

import networkx as nx

# runner(module, inputs, capture) -> (outputs, {node_id: tensor}); outputs is a tensor or a tuple
# of tensors; every captured tensor is part of the autograd graph of the outputs.
Runner = Callable[[Any, Sequence[Any], Collection[str]], tuple[Any, dict[str, Any]]]


@dataclass(frozen=True)
class InputSpec:
    """One model input: its shape (batch first), dtype name and, for integer inputs, a range."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"  # a torch dtype name: "float32", "int64", ...
    high: int | None = None  # integer inputs: values drawn from [0, high)

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith(("float", "bfloat"))


@dataclass
class ModelHandle:
    """A loaded model: everything the static and dynamic analyses need, and nothing else."""

    source: str  # what the user passed (path or factory spec)
    format: str  # "onnx" | "torch"
    graph: nx.DiGraph  # the LayerGraph (see gradaudit.graph)
    inputs: list[InputSpec]
    module: Any = None  # a torch.nn.Module, or None when the model cannot be executed
    # gradaudit built the module itself (the ONNX executor: train semantics, no dropout, weights
    # mapped from the file), so the probe runs it as it is instead of deep-copying every weight
    module_is_own: bool = False
    runner: Runner | None = None
    example_inputs: tuple[Any, ...] | None = None  # tensors the user supplied (factory returned them)
    loss_fn: Callable[[Any, Sequence[Any]], Any] | None = None  # the model's own loss, if given
    probe_unavailable: str = ""  # why the model cannot be probed (empty when it can)
    parameters: int = 0  # total number of trainable parameter elements
    warnings: list[str] = field(default_factory=list)  # loader notes shown in the report
