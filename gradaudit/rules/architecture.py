"""GA3xx: architecture: deep plain stacks, unnormalised residual accumulation, Post-LN stacks.

Both rules are longest-path computations over the LayerGraph in forward order: a chain is cut
where a normalisation (or, for plain stacks, a residual sum) resets the scale, which is exactly
what makes a deep network forgiving of a slightly wrong per-layer gain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gradaudit.graph import forward_order
from gradaudit.rules.rule_registry import Evidence, Hit, RuleContext, rule
from gradaudit.rules.topology import (
    branch_end_weight,
    consumer,
    is_residual_add,
    longest_chain,
    scale_resets,
    weight_stats,
)

# Below 10 layers a 25% per-layer variance error compounds to under a decade (1.25^10 = 9.3).
PLAIN_DEPTH_MIN = 10
# Past 20 layers a 12% per-layer error, less than finite-width corrections, reaches a decade
# (1.12^20 = 9.6): even a critical init is fragile.
PLAIN_DEPTH_MAX = 20
# Hanin 2018: log(|x_L|^2/|x_0|^2) ~ N(-5 beta/2, 5 beta), beta = sum 1/width. Its one-sigma
# spread sqrt(5 beta) reaches half a decade (ln 10 / 2) at beta = 0.265.
HANIN_BETA_MAX = (math.log(10.0) / 2.0) ** 2 / 5.0
RESIDUAL_CHAIN_MIN = 4  # fewer sums cannot show a geometric trend
# Variance growth per residual sum that counts as geometric: halfway (in log) between a
# variance-preserving sum (1) and x + F(x) with a variance-preserving branch (2).
RESIDUAL_GROWTH_MIN = math.sqrt(2.0)


@dataclass(frozen=True)
class PlainStackEvidence(Evidence):
    """GA301: the longest chain of weight layers without a scale reset, and Hanin's beta over it."""

    plain_depth: int
    beta: float
    min_width: float | None
    first: str
    last: str


@dataclass(frozen=True)
class ResidualEvidence(Evidence):
    """GA302: the sums' variance growth, the branch scale 1/sqrt(L) and each branch's last weight layer."""

    adds: int
    growth_per_add: float
    log10_variance_growth: float
    branch_scale: float
    branch_layers: list[str]


@dataclass(frozen=True)
class PostLnEvidence(Evidence):
    """GA303: the number of post-norm sums and the warm-up they call for."""

    sums: int
    warmup_steps: int


@rule("GA301", "deep-plain-stack", "warning",
      "Many weight layers in a chain with no normalisation and no residual connection.",
      "{plain_depth} weight layers in a chain without normalisation or residuals (beta = {beta:.2f})",
      evidence=PlainStackEvidence)
def deep_plain_stack(ctx: RuleContext) -> list[Hit]:
    """What it detects
    The longest chain of weight layers with no normalisation and no residual sum on the path,
    when it is at least 10 deep and either deeper than 20 or narrow enough that Hanin's
    beta = sum of 1/width over its hidden layers exceeds 0.265.

    Why it matters
    Without a reset, every layer's gain multiplies: a 12% per-layer error (less than finite-width
    corrections) compounds to a decade over 20 layers, so only an exactly critical init trains.
    The fluctuations of the gradient size across inputs also grow with beta: at beta = 0.265 their
    one-sigma spread is half a decade, so narrow deep nets are riskier than wide ones.

    Example
    A 24-layer MLP of width 64 with ReLU and no BatchNorm or skip connections (beta = 0.36).

    Fix
    Insert normalisation (BatchNorm after convs, LayerNorm after linears) in the chain, or add
    residual connections; at the least, initialise at the critical scale.

    References
    Hanin 2018, Which neural net architectures give rise to exploding and vanishing gradients?;
    Hanin & Rolnick 2018; Schoenholz et al. 2017 (depth scales); Ioffe & Szegedy 2015.
    """
    graph = ctx.graph
    counted = {n for n in graph.nodes if weight_stats(graph.nodes[n]) is not None}
    chain = longest_chain(graph, scale_resets(graph), counted)
    widths = [float(graph.nodes[n]["attrs"].get("fan_in") or 0) for n in chain[1:]]
    beta = sum(1.0 / w for w in widths if w > 0)
    if len(chain) < PLAIN_DEPTH_MIN or (len(chain) <= PLAIN_DEPTH_MAX and beta <= HANIN_BETA_MAX):
        return []
    names = [graph.nodes[n]["name"] for n in chain]
    return [Hit(names, PlainStackEvidence(len(chain), beta, min(widths, default=None), names[0], names[-1]))]


@rule("GA302", "unnormalised-residual-accumulation", "warning",
      "Residual sums without normalisation whose variance grows geometrically.",
      "{adds} residual sums without normalisation: predicted variance grows {growth_per_add:.2f}x per sum "
      "(10^{log10_variance_growth:.1f} in all)",
      evidence=ResidualEvidence)
def residual_accumulation(ctx: RuleContext) -> list[Hit]:
    """What it detects
    A chain of at least 4 residual additions with no normalisation between them whose predicted
    output second moment grows, over the later half of the chain, by more than sqrt(2) per sum:
    geometric growth, as opposed to the linear growth of a Pre-LN stack. The evidence carries
    the branch scale alpha = 1/sqrt(L) and the last weight layer of each branch.

    Why it matters
    x + F(x) with a variance-preserving branch doubles the variance per block: 2^L over L blocks
    (a 30-block ReLU MLP reaches 10^9), so activations and gradients explode in absolute scale
    while the first/last gradient ratio can stay near 0.

    Example
    30 blocks of x + Linear(ReLU(x)) with He init and no norm.

    Fix
    Scale each branch by alpha = 1/sqrt(L) (multiply its last layer's weights), zero-initialise
    the last layer of each branch (SkipInit, ReZero, Fixup), or normalise inside the branches.

    References
    Zhang et al. 2019 (Fixup); De & Smith 2020 (SkipInit); Bachlechner et al. 2020 (ReZero);
    Hanin & Rolnick 2018; THEORY.md, residual stacks.
    """
    if ctx.static is None:
        return []
    graph = ctx.graph
    resets = {n for n in graph.nodes if graph.nodes[n]["op"] == "norm"}
    adds = longest_chain(graph, resets, {n for n in graph.nodes if is_residual_add(graph, n)})
    if len(adds) < RESIDUAL_CHAIN_MIN:
        return []
    moments = [ctx.static.nodes[a].q if a in ctx.static.nodes else math.nan for a in adds]
    logs = [math.log10(q) for q in moments if 0 < q < math.inf]  # an overflowed q ends the trend
    steps = [b - a for a, b in zip(logs, logs[1:])]
    later = steps[len(steps) // 2:]
    growth = 10.0 ** (sum(later) / len(later)) if len(logs) >= RESIDUAL_CHAIN_MIN else 1.0
    if growth < RESIDUAL_GROWTH_MIN:
        return []
    branches = [branch_end_weight(graph, a) for a in adds]
    evidence = ResidualEvidence(len(adds), growth, logs[-1] - logs[0], 1.0 / math.sqrt(len(adds)),
                                [graph.nodes[b]["name"] for b in branches if b is not None])
    return [Hit([graph.nodes[a]["name"] for a in adds], evidence)]


# Xiong et al. 2020 trained their 6-layer Post-LN Transformer only with warm-up (BLEU 8.45
# without): six post-norm sums are already enough to need it.
POST_LN_SUMS_MIN = 6


def is_post_norm_sum(graph, node: str) -> bool:
    """A residual sum whose only consumer is a layer norm: the Post-LN block ending."""
    if not is_residual_add(graph, node):
        return False
    after = consumer(graph, node)
    return after is not None and graph.nodes[after]["op"] == "norm" and graph.nodes[after]["fn"] in ("layer", "rms")


@rule("GA303", "post-ln-needs-warmup", "warning",
      "A deep Post-LN transformer: the gradients of its last layers are large at initialisation.",
      "{sums} residual sums are followed by LayerNorm (Post-LN): train with learning-rate warm-up or use Pre-LN",
      evidence=PostLnEvidence)
def post_ln_stack(ctx: RuleContext) -> list[Hit]:
    """What it detects
    Residual sums whose only consumer is a LayerNorm (or RMSNorm) — the Post-LN arrangement
    x_{l+1} = LN(x_l + F(x_l)) of the original Transformer — at least 6 times in the model.

    Why it matters
    At initialisation the expected gradient of the last layers' weights is O(d sqrt(ln d)) in a
    Post-LN Transformer and O(d sqrt(ln d / L)) in a Pre-LN one: the output-side layers get the
    largest updates, and a learning rate that suits the rest destabilises them. Post-LN models
    therefore need learning-rate warm-up even when the gradient flow is otherwise healthy.

    Example
    nn.TransformerEncoder(nn.TransformerEncoderLayer(d, h, norm_first=False), num_layers=12).

    Fix
    Linear warm-up of the learning rate (Xiong et al.: 4000 steps on IWSLT14; 500 steps worked at
    lr 5e-4 but not at 1e-3), or move the norms into the branches (Pre-LN, norm_first=True),
    which trains without warm-up.

    References
    Xiong et al. 2020, On Layer Normalization in the Transformer Architecture; Liu et al. 2020
    (Admin); Vaswani et al. 2017.
    """
    graph = ctx.graph
    sums = [n for n in forward_order(graph) if is_post_norm_sum(graph, n)]
    if len(sums) < POST_LN_SUMS_MIN:
        return []
    return [Hit([graph.nodes[n]["name"] for n in sums], PostLnEvidence(len(sums), 4000))]
