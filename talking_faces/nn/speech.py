"""Speech-content encoder over one MFCC window: two conv branches (davs's audio WID encoder).

``audio`` window ``N,W,C`` (20 x 12 MFCC in the DAVS authors' code: 0.2 s) -> **SpeechEncoder**
-> word-ID (WID) code, ``N,code_dim``

Branch one: 3x3 convolutions, the first with stride (3, 2), then stride 2, then two more, to 512
channels (with batch norm and LeakyReLU 0.2 between them); branch two: a convolution spanning all
coefficients of 3 rows, a stride-3 max-pool over time, a (3, 1) convolution, a stride-2 pool and a
last (3, 1) convolution, to 512 channels. The two are concatenated and a linear layer gives the
code. At 20 x 12 both branches end at 1 x 1 as in the authors' code; windows too small for the
unpadded 3x3 and 2x2 convolutions of branch one get padding 1 there, and every window is reduced to
1 x 1 by a global average, so any window works. The authors' second branch normalises its first
4-D map with ``BatchNorm1d`` (an error in their code, which PyTorch 0.2 tolerated); it is a
``BatchNorm2d`` here. ``width`` scales every channel count (1.0 = the authors').
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _ch(c: int, width: float) -> int:
    return max(4, round(c * width))


class SpeechEncoder(nn.Module):
    """One audio-feature window -> WID code.

    Args:
        window: feature rows per window (W).
        features: coefficients per row (C).
        code_dim: output size (256).
        width: channel multiplier of both branches.

    Shapes: ``a`` ``N,W,C`` -> ``N,code_dim``.
    """

    def __init__(
        self, window: int = 20, features: int = 12, code_dim: int = 256, width: float = 1.0
    ):
        super().__init__()
        c64, c128, c256, c512 = (_ch(c, width) for c in (64, 128, 256, 512))
        act = nn.LeakyReLU(0.2, inplace=True)
        # map size after the two strided convs; the authors' unpadded convs need 4 x 4 there
        h2 = ((window + 2 - 3) // 3 + 1 + 2 - 3) // 2 + 1
        w2 = ((features + 4 - 3) // 2 + 1 + 2 - 3) // 2 + 1
        pad = 0 if min(h2, w2) >= 4 else 1
        self.branch1 = nn.Sequential(
            nn.Conv2d(1, c64, 3, (3, 2), (1, 2), bias=False),
            nn.BatchNorm2d(c64),
            act,
            nn.Conv2d(c64, c128, 3, 2, 1, bias=False),
            nn.BatchNorm2d(c128),
            act,
            nn.Conv2d(c128, c256, 3, 1, pad, bias=False),
            nn.BatchNorm2d(c256),
            act,
            nn.Conv2d(c256, c512, 2, 1, pad, bias=False),
            nn.AdaptiveAvgPool2d(1),
        )
        self.branch2 = nn.Sequential(
            nn.Conv2d(1, c64, (3, features), 1, 0, bias=False),
            nn.BatchNorm2d(c64),
            act,
            nn.MaxPool2d((3, 1), (3, 1), ceil_mode=True),
            nn.Conv2d(c64, c256, (3, 1), 1, (1, 0), bias=False),
            nn.BatchNorm2d(c256),
            act,
            nn.MaxPool2d((2, 1), (2, 1), ceil_mode=True),
            nn.Conv2d(c256, c512, (3, 1), 1, (1, 0), bias=False),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(2 * c512, code_dim)
        self.window, self.features, self.code_dim = window, features, code_dim

    def forward(self, a: Tensor) -> Tensor:
        if a.shape[-2:] != (self.window, self.features):
            raise ValueError(
                f"audio windows are {tuple(a.shape[-2:])}, the encoder was built for "
                f"{(self.window, self.features)}"
            )
        x = a[:, None]
        return self.fc(torch.cat([self.branch1(x).flatten(1), self.branch2(x).flatten(1)], 1))
