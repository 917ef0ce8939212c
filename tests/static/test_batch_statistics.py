"""BatchNorm over a few values of a signal another BatchNorm already standardised (issue 18).

At a 32x32 input, MobileNetV2's and EfficientNet's last stages run at 1x1: a depthwise 3x3
convolution there scales each channel, and the BatchNorm after it measures 4 values (the batch)
that the block's first BatchNorm has already standardised. Their variance hardly fluctuates, so
E[1/sigma_B^2] is not the chi-square n/(n - 3) = 4 of independent values: read that way, each
such block added ~0.28 decades (torchvision mobilenet_v2 +3.49 static against +2.83 measured).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradaudit.loaders.torch_loader import from_module
from gradaudit.probe import run_probe
from gradaudit.static import estimate
from gradaudit.static.gains_norm import finite_set_correction, inverse_variance_factor
from gradaudit.static.moments import Moments
from gradaudit.static.quadrature import batch_freedom

PINNED = Moments(0.0, 1.0, 0.0, free_mean=0.0, free_var=0.0)


def _standardised(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(1, keepdim=True)) / x.var(1, unbiased=False, keepdim=True).sqrt()


def test_an_identity_of_a_standardised_signal_keeps_nothing_free():
    assert batch_freedom("identity", None, PINNED) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert inverse_variance_factor(4, True, Moments(0.0, 1.0, 0.0, free_mean=0.0, free_var=0.0)) == pytest.approx(1.0)


@pytest.mark.parametrize("fn, torch_fn", [("relu", torch.relu), ("silu", nn.functional.silu)])
@pytest.mark.parametrize("n", [4, 16])
def test_inverse_batch_variance_of_an_activation_of_standardised_values(fn, torch_fn, n):
    """E[v / sigma_B^2] of phi(BatchNorm(z)) over n values, against 200k seeded samples: ReLU at
    n = 4 gives 1.36 where independent values give n/(n - 3) = 4."""
    free_mean, free_var = batch_freedom(fn, None, PINNED)
    predicted = inverse_variance_factor(n, True, Moments(0.0, 1.0, 0.0, free_mean=free_mean, free_var=free_var))
    gen = torch.Generator().manual_seed(0)
    y = torch_fn(_standardised(torch.randn(200_000, n, generator=gen, dtype=torch.float64)))
    population = torch_fn(torch.randn(2_000_000, generator=gen, dtype=torch.float64)).var().item()
    measured = (population / y.var(1, unbiased=False)).mean().item()
    assert predicted == pytest.approx(measured, rel=0.15 if n == 4 else 0.03)
    assert predicted < n / (n - 3.0)


def test_independent_values_keep_the_chi_square_correction():
    assert finite_set_correction(4, True) == pytest.approx(2.0)
    assert finite_set_correction(16, True, Moments(0.0, 1.0, 0.0)) == pytest.approx(14 / 13)


class _MBConvAtOnePixel(nn.Module):
    """Expand 1x1 -> BN -> SiLU -> depthwise 3x3 -> BN -> SiLU, three times, on 1x1 images."""

    def __init__(self, width: int = 128, blocks: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers += [nn.Conv2d(width, width, 1), nn.BatchNorm2d(width), nn.SiLU(),
                       nn.Conv2d(width, width, 3, padding=1, groups=width), nn.BatchNorm2d(width), nn.SiLU()]
        self.body = nn.Sequential(*layers, nn.Conv2d(width, 10, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_depthwise_blocks_at_one_pixel_match_a_real_backward_pass():
    """Static first/last within 0.2 decades of the probe's (three seeds averaged); reading each
    block's second BatchNorm as independent values put it 0.55 decades high."""
    torch.manual_seed(0)
    handle = from_module(_MBConvAtOnePixel(), (torch.randn(4, 128, 1, 1),))
    predicted = estimate(handle.graph, handle.inputs).log10_ratio_first_last
    measured = [run_probe(handle, passes=4, seed=seed).log10_ratio_first_last for seed in range(3)]
    assert predicted == pytest.approx(sum(measured) / len(measured), abs=0.2)
