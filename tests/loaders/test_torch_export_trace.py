"""The torch.export tracer: models torch.fx cannot trace get a full graph, not the hook fallback."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from gradaudit.graph import weight_layers
from gradaudit.loaders.torch_loader import from_module
from gradaudit.static import estimate


class Mix(nn.Module):
    """A parameter-free helper, as transformers' rotary and scan helpers are."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x + 0.5 * x.flip(-1)


MIX = Mix()  # a module-level object, not a submodule: fx refuses it


class Stack(nn.Module):
    def __init__(self, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.head = nn.Linear(width, 3)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + torch.tanh(layer(x))
        return self.head(x)


class HelperModule(Stack):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(MIX(x))


class IsTensorCheck(Stack):
    def forward(self, x, t):  # diffusers' UNet: a proxy is no tensor to torch.is_tensor
        if not torch.is_tensor(t):
            t = torch.tensor([t])
        return self.body(x + t.float()[:, None])


class ItemAssignment(Stack):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # RWKV writes into slices of a state
        y = self.layers[0](x)
        y[:, 0] = x[:, 0] * 2
        return self.body(y)


class MaskAssignment(Stack):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # wav2vec2's masked time steps
        x = x.clone()
        mask = torch.zeros(x.shape[0], dtype=torch.bool)
        mask[0] = True
        x[mask] = 0.0
        return self.body(x)


class VarArgs(Stack):
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.body(inputs[0])


CASES = [(HelperModule, 1), (IsTensorCheck, 2), (ItemAssignment, 1), (MaskAssignment, 1), (VarArgs, 1)]


@pytest.mark.parametrize("model, inputs", CASES, ids=[c[0].__name__ for c in CASES])
def test_untraceable_by_fx_is_traced_by_torch_export(model, inputs):
    torch.manual_seed(0)
    module = model()
    example = (torch.randn(8, 16), torch.arange(8))[:inputs]
    handle = from_module(module, example)
    graph = handle.graph
    assert not graph.graph["partial"], graph.graph.get("partial_reason")
    layers = [w.param for w in weight_layers(graph)]
    assert set(layers) == {n for n, p in module.named_parameters() if p.dim() == 2}
    assert layers[-1] == "head.weight"
    static = estimate(graph, handle.inputs)
    assert not static.partial, static.unknown_ops
    assert abs(static.log10_ratio_first_last) < 1.5  # a tanh residual stack: no 10^-150 floors
    outputs, captured = handle.runner(copy.deepcopy(module), example, [])
    assert torch.allclose(outputs, module(*example), atol=1e-5)


def test_item_assignment_keeps_both_parts_connected():
    handle = from_module(ItemAssignment(), (torch.randn(8, 16),))
    graph = handle.graph
    (merge,) = [n for n, d in graph.nodes(data=True) if d["op"] == "concat"]
    sources = {graph.nodes[p]["op"] for p in graph.predecessors(merge)}
    assert sources == {"reshape"} and graph.in_degree(merge) == 2  # the overwritten base and the written values


class WrittenIntoBuffer(nn.Module):
    """Untraceable by both tracers (a branch on a value), and a layer's result reaches the head
    only by being written into a fresh buffer, which the hook graph's lineage cannot follow."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.head = nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 1e9:
            x = x * 2
        buffer = torch.zeros(x.shape[0], 8)
        buffer[:, :] = self.inner(x)
        return self.head(buffer)


def test_a_layer_the_hook_graph_cannot_connect_is_not_said_to_get_no_gradient():
    from gradaudit.pipeline import run_audit

    torch.manual_seed(0)
    handle = from_module(WrittenIntoBuffer(), (torch.randn(4, 8),))
    assert handle.graph.graph["partial"]
    notes = run_audit(handle).notes
    assert any(note.startswith("inner: the partial graph does not connect it") for note in notes), notes
    assert not any("no gradient reaches" in note for note in notes)


class LayerDrop(Stack):
    """wav2vec2's LayerDrop: in training a layer is skipped on a random draw, a Python branch no
    single trace holds (torch.export refuses it). BatchNorm must still read the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        for layer in self.layers:
            if not (self.training and torch.rand([]) < 0.1):
                x = x + torch.tanh(layer(x))
        return self.head(x)


def test_random_structural_choices_are_traced_without_them():
    torch.manual_seed(0)
    module = LayerDrop()
    example = (torch.randn(8, 16) * 3 + 5,)
    handle = from_module(module, example)
    assert not handle.graph.graph["partial"], handle.graph.graph.get("partial_reason")
    (note,) = handle.warnings
    assert note.startswith("traced without the training forward's random choices") and "torch.export could not" in note
    assert {w.param for w in weight_layers(handle.graph)} == {f"layers.{i}.weight" for i in range(4)} | {"head.weight"}
    reference = copy.deepcopy(module).eval()
    reference.norm.train()  # every layer kept, BatchNorm on the batch's statistics
    outputs, _ = handle.runner(copy.deepcopy(module), example, [])
    assert torch.allclose(outputs, reference(*example), atol=1e-5)
    assert not torch.allclose(outputs, copy.deepcopy(module).eval()(*example), atol=1e-2)  # running stats differ
