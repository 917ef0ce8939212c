"""Gradient through time of a recurrent layer, measured on the probe's own forward graph.

The weight-gradient ratio of a whole network hides what happens along the time axis: an RNN can
look healthy layer to layer while the gradient from its last output never reaches the first step.
We differentiate (last output step . a fixed random projection) with respect to the layer's input
sequence and compare the gradient's norm at the first and the last time step. That isolates the
path through time (Pascanu et al. 2013) and is the quantity the static estimator predicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import torch

from gradaudit.graph import ordered_inputs


@dataclass(frozen=True)
class RecurrentSite:
    """A recurrent node and where its input sequence comes from."""

    node: str
    name: str  # display name
    source: str  # producer node of the input sequence
    input_slot: int | None  # index among the model inputs when the producer is a model input
    time_axis: int
    hidden: int | None
    bidirectional: bool


def find_recurrent(graph: nx.DiGraph) -> list[RecurrentSite]:
    """Every recurrent node whose input sequence is produced by a node of the graph."""
    inputs = list(graph.graph.get("inputs", []))
    sites = []
    for node_id, data in graph.nodes(data=True):
        producers = ordered_inputs(graph, node_id)
        if data["op"] != "recurrent" or not producers:
            continue
        source = producers[0]
        attrs = data["attrs"]
        hidden = attrs.get("hidden")
        sites.append(
            RecurrentSite(
                node=node_id,
                name=data["name"],
                source=source,
                input_slot=inputs.index(source) if source in inputs else None,
                time_axis=int(attrs.get("time_axis", 0)),
                hidden=int(hidden) if hidden is not None else None,
                bidirectional=bool(attrs.get("bidirectional", False)),
            )
        )
    return sorted(sites, key=lambda s: graph.nodes[s.node]["order"])


def _last_step(site: RecurrentSite, y: torch.Tensor) -> torch.Tensor:
    """Output at the last time step; for a bidirectional layer only the forward direction, whose
    last step has seen the whole sequence (torch stacks [forward, backward] on the last axis)."""
    last = y.select(site.time_axis, y.shape[site.time_axis] - 1)
    if site.bidirectional and site.hidden and last.shape[-1] == 2 * site.hidden:
        last = last[..., : site.hidden]
    return last


def log10_time_ratio(site: RecurrentSite, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float | None:
    """log10(||dS/dx at t=0|| / ||dS/dx at t=T-1||) for S = y[T-1] . r, r a fixed N(0, 1) projection.

    The graph is retained so the loss gradient of the same pass can follow. A gradient that
    underflows to zero at t=0 is floored at the dtype's smallest normal number, so total vanishing
    reads as a large negative ratio rather than an undefined one.
    """
    steps = x.shape[site.time_axis] if x.dim() > site.time_axis else 0
    if steps < 2 or not x.requires_grad or not y.requires_grad or y.shape[site.time_axis] < 2:
        return None
    last = _last_step(site, y)
    projection = torch.randn(last.shape, generator=generator).to(last.dtype).to(last.device)
    (grad,) = torch.autograd.grad((last * projection).sum(), x, retain_graph=True, allow_unused=True)
    if grad is None:
        return None
    at_first = float(torch.linalg.vector_norm(grad.select(site.time_axis, 0), dtype=torch.float64))
    at_last = float(torch.linalg.vector_norm(grad.select(site.time_axis, steps - 1), dtype=torch.float64))
    if not (math.isfinite(at_first) and math.isfinite(at_last)) or at_last <= 0:
        return None
    floor = torch.finfo(grad.dtype).tiny
    return math.log10(max(at_first, floor)) - math.log10(at_last)
