"""What the probe captures, decided once from the LayerGraph before any pass runs.

Capturing is cheap (the runner hands back tensors autograd keeps anyway) but statistics are not,
so only the nodes an output field needs are asked for: each weight layer's node, the input of
the activation it feeds, and the input sequence of each recurrent node.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from gradaudit.graph import WeightLayer, flow_ends, outputs_zero_by_design, weight_layers
from gradaudit.probe.through_time import RecurrentSite, find_recurrent
from gradaudit.probe.units import ActivationSite, find_activation


@dataclass(frozen=True)
class CapturePlan:
    """The weight layers to measure and the graph nodes whose outputs the runner must hand back."""

    weights: list[WeightLayer]
    weight_nodes: list[str]  # distinct nodes holding the weights, forward order
    activations: dict[str, ActivationSite]  # weight node -> the activation it feeds
    recurrent: list[RecurrentSite]
    flow_nodes: set[str]  # weight nodes an output depends on (graph.flow_ends): the ratio's candidates
    zero_output: bool = False  # graph.outputs_zero_by_design: the output RMS says nothing of collapse

    @property
    def capture(self) -> set[str]:
        """Node ids the runner must return (model inputs are read from the inputs themselves)."""
        nodes = set(self.weight_nodes) | {site.input_node for site in self.activations.values()}
        nodes |= {site.node for site in self.recurrent}
        nodes |= {site.source for site in self.recurrent if site.input_slot is None}
        return nodes

    @property
    def inputs_need_grad(self) -> bool:
        """Float model inputs must require grad when a recurrent node reads a sequence derived
        from them (say, through a transpose): otherwise that sequence is not in the graph."""
        return bool(self.recurrent)


def plan_capture(graph: nx.DiGraph) -> CapturePlan:
    """The capture plan of a LayerGraph: weight layers, their activations, recurrent nodes."""
    weights = weight_layers(graph)
    nodes = list(dict.fromkeys(layer.node for layer in weights))
    activations = {node: site for node in nodes if (site := find_activation(graph, node)) is not None}
    flowing = {layer.node for layer in flow_ends(graph, weights)}
    return CapturePlan(weights, nodes, activations, find_recurrent(graph), flowing, outputs_zero_by_design(graph))
