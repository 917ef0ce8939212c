"""A convolution's taps over zero padding carry nothing (issue 18: DenseNet-121 at 32x32).

DenseNet-121 on 32x32 images runs its 3x3 convolutions at 8x8, 4x4, 2x2 and 1x1, where 16%, 31%,
56% and 89% of the taps read padding. Counted as full 3x3 fans, each dense layer's output looked
up to 9x larger than the block input it is concatenated with, and the estimate drifted by 0.05
to 0.1 decades per dense layer: static first/last +3.33 against +1.52 measured.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradaudit.loaders.torch_loader import from_module
from gradaudit.probe import run_probe
from gradaudit.static import estimate


@pytest.mark.parametrize("size, coverage", [(1, 1 / 9), (2, 4 / 9), (4, (10 / 12) ** 2)])
def test_a_padded_conv_output_counts_only_the_taps_that_read_input(size, coverage):
    """E[y^2] of a 3x3 convolution (padding 1) over unit Gaussian input, against torch."""
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)
    x = torch.randn(256, 64, size, size)
    handle = from_module(conv, (x,))
    predicted = estimate(handle.graph, handle.inputs).nodes[handle.graph.graph["outputs"][0]].q
    full_kernel = 9 * 64 * conv.weight.pow(2).mean().item()
    with torch.no_grad():
        measured = conv(x).pow(2).mean().item()
    assert predicted == pytest.approx(coverage * full_kernel, rel=1e-6)
    assert predicted == pytest.approx(measured, rel=0.1)


class _DenseLayer(nn.Module):
    """BN-ReLU-conv1x1-BN-ReLU-conv3x3 at growth 32, its output concatenated to its input."""

    def __init__(self, channels: int, growth: int = 32):
        super().__init__()
        self.branch = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth), nn.ReLU(), nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.branch(x)], 1)


class _SmallDenseNet(nn.Module):
    """Four dense blocks at 8x8, 4x4, 2x2 and 1x1 joined by BN-ReLU-conv1x1-avgpool transitions."""

    def __init__(self, layers_per_block: int = 4, channels: int = 64):
        super().__init__()
        modules: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1, bias=False)]
        for block in range(4):
            for _ in range(layers_per_block):
                modules.append(_DenseLayer(channels))
                channels += 32
            if block < 3:
                modules += [nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels // 2, 1, bias=False),
                            nn.AvgPool2d(2)]
                channels //= 2
        self.features = nn.Sequential(*modules, nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(channels, 10)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)  # as torchvision's DenseNet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def test_dense_blocks_down_to_one_pixel_match_a_real_backward_pass():
    """Every weight layer's gradient RMS within 0.35 decades of the probe's (two seeds averaged)
    and first/last within 0.35; full 3x3 fans put layers up to 1.0 decade off and first/last 0.6."""
    torch.manual_seed(0)
    handle = from_module(_SmallDenseNet(), (torch.randn(4, 3, 8, 8),))
    static = estimate(handle.graph, handle.inputs)
    probes = [run_probe(handle, passes=3, seed=seed) for seed in range(2)]
    measured = {
        layer.layer: sum(math.log10(p.layers[i].grad_rms) for p in probes) / len(probes)
        for i, layer in enumerate(probes[0].layers)
    }
    errors = {w.layer: abs(w.log10_grad_rms - measured[w.layer]) for w in static.weights}
    assert len(errors) == len(measured) and max(errors.values()) <= 0.35, errors
    measured_ratio = sum(p.log10_ratio_first_last for p in probes) / len(probes)
    assert static.log10_ratio_first_last == pytest.approx(measured_ratio, abs=0.35)
