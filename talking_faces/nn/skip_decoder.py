"""Decoder from codes to a frame with one identity skip (davs's decoder; amie reuses it).

[identity code, content code] (+ the identity encoder's map at H/8) -> **SkipDecoder** -> frame
``N,3,H,W`` in [0,1]

The DAVS authors' decoder: the concatenated codes through a 4x4 transposed convolution to a 4 px
map, then blocks of 3x3 conv-BN-ReLU each followed by bilinear 2x upsampling, up to the frame size;
the identity encoder's map at an eighth of the frame size is concatenated before the block that
works at that size; two last convolutions give 3 channels and ``tanh``, mapped to [0, 1]. At 256
px their blocks have 512, 512, 256, 256, 128, 64 channels and 2, 3, 4, 4, 3, 2 convolutions. Here
widths, convolutions per block and the code sizes are arguments, so one class serves every size:
a smaller frame uses the last (finest) ``log2(size / 4)`` entries of the lists, so the 256 px
lists build the 128 px decoder too (512, 256, 256, 128, 64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _block(cin: int, cout: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Conv2d(cin if i == 0 else cout, cout, 3, 1, 1), nn.BatchNorm2d(cout)]
        mods.append(nn.ReLU(True))
    return nn.Sequential(*mods)


class SkipDecoder(nn.Module):
    """Codes + skip map -> frame.

    Args:
        image_size: output size (a power of two >= 16).
        code_dim: total size of the concatenated codes.
        skip_channels: channels of the skip map (at ``image_size / 8``); 0 for none.
        channels: one width per upsampling block, coarse to fine; the last
            ``log2(image_size / 4)`` are used.
        layers: convolutions per block (the same entries as ``channels``).
        align_corners: of the bilinear upsampling (the DAVS authors' PyTorch 0.2 upsampling
            behaves as True).

    Shapes: ``forward(code, skip)`` with ``code`` ``N,code_dim`` and ``skip`` ``N,skip_channels,
    S/8,S/8`` (or None) -> ``N,3,S,S`` in [0,1].
    """

    def __init__(
        self,
        image_size: int = 256,
        code_dim: int = 512,
        skip_channels: int = 160,
        channels: Sequence[int] = (512, 512, 256, 256, 128, 64),
        layers: Sequence[int] = (2, 3, 4, 4, 3, 2),
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        n = int(round(math.log2(image_size / 4)))
        if image_size < 16 or 4 * 2**n != image_size:
            raise ValueError(f"image_size must be a power of two >= 16, got {image_size}")
        if len(channels) < n or len(layers) < n:
            raise ValueError(
                f"{image_size} px needs {n} decoder blocks; got {len(channels)} widths and "
                f"{len(layers)} layer counts"
            )
        channels, layers = list(channels)[-n:], list(layers)[-n:]
        self.skip_at = n - 3  # block index whose input is at S/8 (after n-3 upsamplings)
        self.stem = nn.Sequential(
            nn.ConvTranspose2d(code_dim, channels[0], 4, 1, 0),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(True),
        )
        blocks = []
        cin = channels[0]
        for i, (c, k) in enumerate(zip(channels, layers, strict=True)):
            extra = skip_channels if i == self.skip_at else 0
            blocks.append(_block(cin + extra, c, k))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align_corners)
        half = max(3, cin // 2)
        self.out = nn.Sequential(
            nn.Conv2d(cin, half, 3, 1, 1),
            nn.BatchNorm2d(half),
            nn.ReLU(True),
            nn.Conv2d(half, 3, 3, 1, 1),
            nn.Tanh(),
        )
        self.skip_channels = skip_channels

    def forward(self, code: Tensor, skip: Tensor | None = None) -> Tensor:
        h = self.stem(code[:, :, None, None])
        for i, block in enumerate(self.blocks):
            if i == self.skip_at and self.skip_channels:
                if skip is None:
                    raise TypeError(
                        f"this decoder needs a skip map of {self.skip_channels} channels"
                    )
                h = torch.cat([skip, h], 1)
            h = self.up(block(h))
        return (self.out(h) + 1) / 2
