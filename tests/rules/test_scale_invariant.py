"""A weight whose output goes only into a normalisation is scale-invariant: the gate reads it at
the scale where the normalisation divides by one (diagnosis.log10_update_ratio).

transformers' RWKV initialises its embedding at std 1e-4 in front of a LayerNorm and trains
(benchmarks/train_labels.json); its raw relative update per position read 10^+6.2 over the
head's and failed the gate. Fifty Linear->BatchNorm->ReLU layers also feed norms, and stall: the
gradient reaching each norm's output grows through the depth, and that still fails.
"""

import pytest
import torch
from torch import nn

import gradaudit
from gradaudit.diagnosis import log10_update_ratio
from gradaudit.graph import forward_order, normalisation_eps
from gradaudit.loaders.torch_loader import from_module


class EmbeddingThenNorm(nn.Module):
    """An embedding of std `std` read through a LayerNorm, a ReLU block and a linear head."""

    def __init__(self, std: float):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(64, 32)
        nn.init.normal_(self.embed.weight, 0.0, std)
        self.norm = nn.LayerNorm(32)
        self.body = nn.Sequential(nn.Linear(32, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.norm(self.embed(ids))))


class NormAndSkip(nn.Module):
    """A linear layer whose output goes into a LayerNorm and past it (a residual stream)."""

    def __init__(self):
        super().__init__()
        self.dense, self.norm = nn.Linear(8, 8), nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dense(x)
        return self.norm(y) + y


def _ids() -> torch.Tensor:
    return torch.randint(0, 64, (8, 12), generator=torch.Generator().manual_seed(1))


def _audit(model: nn.Module, inputs: torch.Tensor):
    return gradaudit.audit(model, inputs, passes=2)


def test_an_end_feeding_a_normalisation_is_read_at_the_scale_where_it_divides_by_one():
    plain = log10_update_ratio(1.0, (0.1, 0.1), (1, 1))
    assert plain == pytest.approx(1.0)
    # first end's output RMS 1e-2 before its norm: read 100x larger, relative update 10^4 smaller
    assert log10_update_ratio(1.0, (0.1, 0.1), (1, 1), ((1e-2, 0.0), None)) == pytest.approx(-3.0)
    assert log10_update_ratio(1.0, (0.1, 0.1), (1, 1), (None, (10.0, 1e-5))) == pytest.approx(-1.0, abs=1e-6)
    # eps above the output's variance: the norm divides by sqrt(eps), not by sigma
    assert log10_update_ratio(1.0, (0.1, 0.1), (1, 1), ((1e-4, 1e-5), None)) == pytest.approx(1.0 - 4.0 - 2.5, abs=0.01)
    assert log10_update_ratio(1.0, (0.1, 0.1), (1, 1), ((0.0, 1e-5), None)) == pytest.approx(1.0)  # undefined: as is


def test_normalisation_eps_follows_copies_and_stops_at_another_op():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.1), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8),
                          nn.ReLU(), nn.Linear(8, 2))
    graph = from_module(model, (torch.randn(4, 8),)).graph
    dense = [n for n in forward_order(graph) if graph.nodes[n]["op"] == "linear"]
    assert [normalisation_eps(graph, n) for n in dense] == [pytest.approx(1e-5), None, None]
    tokens = from_module(EmbeddingThenNorm(1.0), (_ids(),)).graph
    embed = next(n for n in forward_order(tokens) if tokens.nodes[n]["op"] == "embedding")
    assert normalisation_eps(tokens, embed) == pytest.approx(1e-5)
    skip = from_module(NormAndSkip(), (torch.randn(4, 8),)).graph  # T5's, BERT's embedding: not scale-invariant
    (dense,) = [n for n in skip.nodes if skip.nodes[n]["op"] == "linear"]
    assert normalisation_eps(skip, dense) is None


def test_a_small_weight_in_front_of_a_norm_reads_as_its_unit_scale_twin_and_passes():
    ids = _ids()
    small, unit = _audit(EmbeddingThenNorm(1e-2), ids), _audit(EmbeddingThenNorm(1.0), ids)
    # the raw gradient ratio carries the 1/|w| of the scale-invariant embedding: two decades apart
    assert small.probe.log10_ratio_first_last - unit.probe.log10_ratio_first_last == pytest.approx(2.0, abs=0.3)
    # the gate's ratio does not depend on a scale the loss does not depend on
    assert small.probe.log10_update_ratio_first_last == pytest.approx(unit.probe.log10_update_ratio_first_last,
                                                                      abs=0.3)
    assert small.static.log10_update_ratio_first_last == pytest.approx(unit.static.log10_update_ratio_first_last,
                                                                       abs=0.3)
    rwkv_like = _audit(EmbeddingThenNorm(1e-4), ids)  # RWKV's embedding scale: LayerNorm's eps dominates
    assert rwkv_like.verdict != "fail"
    assert not {f.code for f in rwkv_like.findings if f.severity == "error"}


def test_depth_behind_batchnorm_still_fails():
    torch.manual_seed(0)
    layers = []
    for _ in range(50):
        layers += [nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU()]
    report = _audit(nn.Sequential(*layers, nn.Linear(64, 10)), torch.randn(4, 64))  # the corpus batch: +10.1
    assert report.probe.log10_update_ratio_first_last > 6.0
    assert report.verdict == "fail" and "GA103" in {f.code for f in report.findings if f.severity == "error"}
