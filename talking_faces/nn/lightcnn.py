"""Light-CNN identity encoder: max-feature-map blocks, a code and multi-scale maps (davs's PID).

identity face ``B,3,H,W`` -> **IdentityEncoder** -> person-identity code (PID) + maps -> decoder
(skip at H/8) and davs's word discriminator (maps at H/4)

A max-feature-map (MFM) block (Wu et al. 2018, "A Light CNN for Deep Face Representation") computes
two convolutions with batch norm and keeps their elementwise maximum. The DAVS authors' encoder: an
MFM stem (7x7, stride 2, 32 channels), then four stages separated by 2x max-pools with 4, 6, 4 and 2
MFM blocks ending at 64, 160, 320 and 256 channels (5x5 kernels in the last stage), and a global
average of the last stage as the 256-d code. At 256 px the stages are at 64, 32, 16 and 8 px; the
32 px map is the decoder's skip. Here the widths and block counts are arguments; inside a stage the
first block changes the width and the others keep it (the authors change it half-way, e.g. 32, 32,
64, 64: a detail that only moves where the parameters sit). Two convolutions and two norms are
computed as one convolution with twice the channels and a grouped split, the same function.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class MFM(nn.Module):
    """Max-feature-map: ``max(BN(conv_a(x)), BN(conv_b(x)))`` with ``cout`` channels."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, kernel, stride, kernel // 2)
        self.bn = nn.BatchNorm2d(2 * cout)
        self.cout = cout

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.bn(self.conv(x)).split(self.cout, dim=1)
        return torch.maximum(a, b)


class IdentityEncoder(nn.Module):
    """Face -> ``(code, maps)`` with ``maps[i]`` at ``H / 2**(i+2)`` (i = 0..3).

    Args:
        image_size: square input size (a multiple of 32).
        channels: output widths of the stem and the four stages (the last is the code size).
        blocks: MFM blocks of the stem (1) and of each stage.

    Shapes: ``x`` ``N,3,S,S`` in [0,1] -> ``code`` ``N,channels[-1]``, ``maps`` ``[N,c1,S/4,S/4],
    [N,c2,S/8,S/8], [N,c3,S/16,S/16], [N,c4,S/32,S/32]``.
    """

    def __init__(
        self,
        image_size: int = 256,
        channels: Sequence[int] = (32, 64, 160, 320, 256),
        blocks: Sequence[int] = (1, 4, 6, 4, 2),
    ) -> None:
        super().__init__()
        if image_size % 32:
            raise ValueError(f"the identity encoder needs a multiple of 32 px, got {image_size}")
        if len(channels) != 5 or len(blocks) != 5 or blocks[0] != 1 or min(blocks) < 1:
            raise ValueError("channels and blocks need 5 entries (stem + 4 stages), stem 1 block")
        self.stem = MFM(3, channels[0], kernel=7, stride=2)
        stages = []
        cin = channels[0]
        for i in range(1, 5):
            k = 5 if i == 4 else 3
            stage = [MFM(cin if j == 0 else channels[i], channels[i], k) for j in range(blocks[i])]
            stages.append(nn.Sequential(*stage))
            cin = channels[i]
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        self.code_dim = channels[-1]
        self.map_channels = list(channels[1:])

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = self.stem(x)
        maps = []
        for stage in self.stages:
            h = stage(self.pool(h))
            maps.append(h)
        return h.mean(dim=(2, 3)), maps
