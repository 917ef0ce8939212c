"""Small versions of the architecture families the executor must run, for differential tests:
MobileNet, DenseNet, a ConvTranspose + Resize decoder and a causal transformer decoder."""

from __future__ import annotations

import torch
from torch import nn


class InvertedResidual(nn.Module):
    """MobileNetV3 block: expand, depthwise, squeeze-excite (HardSigmoid), project, residual."""

    def __init__(self, channels: int, expand: int) -> None:
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden), nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.BatchNorm2d(hidden),
                                       nn.ReLU6())
        self.excite = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(hidden, 4, 1), nn.ReLU(),
                                    nn.Conv2d(4, hidden, 1), nn.Hardsigmoid())
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(self.expand(x))
        return x + self.project(y * self.excite(y))


class MobileNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.Hardswish())
        self.blocks = nn.Sequential(InvertedResidual(8, 3), InvertedResidual(8, 2))
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class DenseNetLike(nn.Module):
    """Dense blocks (BN-ReLU-Conv, concatenated growth) and a pooling transition."""

    def __init__(self, growth: int = 4, layers: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(8 + i * growth), nn.ReLU(), nn.Conv2d(8 + i * growth, growth, 3, padding=1))
            for i in range(layers)
        )
        width = 8 + layers * growth
        self.transition = nn.Sequential(nn.BatchNorm2d(width), nn.Conv2d(width, 8, 1), nn.AvgPool2d(2))
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        for layer in self.layers:
            y = torch.cat([y, layer(y)], 1)
        return self.head(self.transition(y).flatten(2).mean(-1))


class Decoder(nn.Module):
    """Learned (ConvTranspose) and fixed (nearest, bilinear Resize) upsampling."""

    def __init__(self) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose2d(6, 8, 4, stride=2, padding=1)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.up3 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.out = nn.ConvTranspose2d(8, 3, 3, padding=1, output_padding=0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.up1(z))
        y = torch.relu(self.conv(self.up2(y)))
        return torch.tanh(self.out(self.up3(y)))


class CausalDecoder(nn.Module):
    """nn.TransformerDecoder over token embeddings, a causal mask and a memory."""

    def __init__(self, vocab: int = 20, d_model: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        layer = nn.TransformerDecoderLayer(d_model, 4, 32, dropout=0.0, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, 2)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1])
        return self.head(self.decoder(self.embed(tokens), memory, tgt_mask=mask, tgt_is_causal=True))

