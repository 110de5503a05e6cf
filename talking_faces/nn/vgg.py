"""VGG-style frame encoder and decoder with skip connections (SVG-LP / ldm).

Batch ``frames``/``identity`` -> :class:`VGGEncoder` -> frame codes (+ skip maps of the reference
frame) -> recurrent models -> :class:`VGGDecoder` -> generated frames.

The layout follows Denton and Fergus (2018), "vgg_64" and "vgg_128", which ldm reuses: blocks of
conv3x3-BN-LeakyReLU(0.2) with 2x max-pooling between blocks down to 4x4, then a 4x4 convolution to
a ``code_dim`` vector with BN and tanh. At 128 px the blocks have 64, 128, 256, 512, 512 channels
(2, 2, 3, 3, 3 layers); at 64 px the first four. The decoder mirrors it with nearest-neighbour 2x
upsampling and concatenates the encoder's skip map of the same resolution before each block; the
output is a sigmoid image in [0, 1]. Channels and layers per block are arguments so tiny test
variants are the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _vgg_layer(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)
    )


def num_blocks(image_size: int) -> int:
    """Encoder blocks for a square image: one per halving from ``image_size`` down to 4 px."""
    n = int(round(math.log2(image_size))) - 2
    if image_size < 8 or 2 ** (n + 2) != image_size:
        raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
    return n


def _check(image_size: int, channels: Sequence[int], layers: Sequence[int]) -> int:
    n = num_blocks(image_size)
    if len(channels) < n or len(layers) < n:
        raise ValueError(
            f"{image_size} px needs {n} blocks; got {len(channels)} channel entries and "
            f"{len(layers)} layer counts"
        )
    if min(layers[:n]) < 1:
        raise ValueError("every block needs at least one layer")
    return n


def init_weights(module: nn.Module) -> None:
    """DCGAN/SVG initialisation: conv weights N(0, 0.02), BN weights N(1, 0.02), BN bias 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class VGGEncoder(nn.Module):
    """Frame -> ``code_dim`` vector in (-1, 1) and one skip map per block.

    Args:
        image_size: square input size (a power of two; 64 and 128 are the published variants).
        code_dim: length of the frame code (128 in ldm).
        channels: output channels per block (the first ``num_blocks(image_size)`` are used).
        layers: conv layers per block.

    Shapes: ``forward(x)`` with ``x`` ``N,3,S,S`` in [0,1] returns ``(code N,code_dim,
    skips)`` where ``skips[i]`` is ``N,channels[i],S/2**i,S/2**i``.
    """

    def __init__(
        self,
        image_size: int = 128,
        code_dim: int = 128,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        layers: Sequence[int] = (2, 2, 3, 3, 3),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        n = _check(image_size, channels, layers)
        self.image_size = image_size
        self.code_dim = code_dim
        blocks = []
        cin = in_channels
        for i in range(n):
            block = [
                _vgg_layer(cin if j == 0 else channels[i], channels[i]) for j in range(layers[i])
            ]
            blocks.append(nn.Sequential(*block))
            cin = channels[i]
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(
            nn.Conv2d(cin, code_dim, 4, 1, 0), nn.BatchNorm2d(code_dim), nn.Tanh()
        )

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        if self.head[0].weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h if i == 0 else self.pool(h))
            skips.append(h)
        code = self.head(self.pool(h))
        return code.flatten(1), skips


class VGGDecoder(nn.Module):
    """Code vector + skip maps -> frame in [0,1] (mirror of :class:`VGGEncoder`).

    Shapes: ``forward(code, skips)`` with ``code`` ``N,code_dim`` and ``skips`` as returned by the
    encoder for the same ``N`` returns ``N,3,S,S``.
    """

    def __init__(
        self,
        image_size: int = 128,
        code_dim: int = 128,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        layers: Sequence[int] = (2, 2, 3, 3, 3),
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        n = _check(image_size, channels, layers)
        self.image_size = image_size
        self.code_dim = code_dim
        top = channels[n - 1]
        self.stem = nn.Sequential(
            nn.ConvTranspose2d(code_dim, top, 4, 1, 0),
            nn.BatchNorm2d(top),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        blocks: list[nn.Module] = []
        for i in reversed(range(n)):
            c = channels[i]
            seq: list[nn.Module] = []
            cin = 2 * c  # previous block's output (c) + the skip map of this resolution (c)
            if i > 0:
                for j in range(layers[i]):
                    cout = channels[i - 1] if j == layers[i] - 1 else c
                    seq.append(_vgg_layer(cin, cout))
                    cin = cout
            else:
                for _ in range(layers[i] - 1):
                    seq.append(_vgg_layer(cin, c))
                    cin = c
                seq += [nn.ConvTranspose2d(cin, out_channels, 3, 1, 1), nn.Sigmoid()]
            blocks.append(nn.Sequential(*seq))
        # blocks[k] works at resolution index n-1-k (coarse to fine)
        self.blocks = nn.ModuleList(blocks)

    def forward(self, code: Tensor, skips: Sequence[Tensor]) -> Tensor:
        h = self.stem(code.view(code.shape[0], -1, 1, 1))
        n = len(self.blocks)
        for k, block in enumerate(self.blocks):
            skip = skips[n - 1 - k]
            h = block(torch.cat([self.up(h), skip], 1))
        return h
