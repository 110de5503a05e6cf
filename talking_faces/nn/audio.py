"""Audio CNN over one window of audio features (ldm's audio encoder).

Batch ``audio`` (``B,T,W,F``: one window of ``W`` feature rows at 100 Hz per video frame) ->
:class:`AudioEncoder` per window -> audio code -> prior over the latent.

Layout from PAPERS.md ("ldm"): conv 64, conv 128, max-pool, conv 256, conv 256, max-pool, FC 2048,
FC 128, over a 28 x 12 MFCC window (0.28 s, c0 dropped). The authors' code stacks the convolutions
with no non-linearity between them (which collapses them into one linear map); we put BN and
LeakyReLU(0.2) after each convolution, as in the frame encoder, and end with tanh so the audio code
lives in the same range as the frame codes. Max-pools are 2x2 with ``ceil_mode`` so odd window
sizes still work; the flattened size follows from ``window`` and ``features``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn


class AudioEncoder(nn.Module):
    """One audio-feature window -> ``code_dim`` vector in (-1, 1).

    Args:
        window: feature rows per window (28 for 0.28 s at 100 Hz).
        features: coefficients per row (12: MFCC without c0).
        channels: the four conv widths (64, 128, 256, 256); pooling after the 2nd and 4th.
        hidden: width of the first fully connected layer (2048).
        code_dim: output size (128).

    Shapes: ``forward(a)`` with ``a`` ``N,window,features`` returns ``N,code_dim``.
    """

    def __init__(
        self,
        window: int = 28,
        features: int = 12,
        channels: Sequence[int] = (64, 128, 256, 256),
        hidden: int = 2048,
        code_dim: int = 128,
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"the audio CNN has four conv layers, got channels={list(channels)}")
        layers: list[nn.Module] = []
        cin = 1
        for i, c in enumerate(channels):
            layers += [
                nn.Conv2d(cin, c, 3, 1, 1),
                nn.BatchNorm2d(c),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            if i in (1, 3):
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            cin = c
        self.conv = nn.Sequential(*layers)
        h, w = math.ceil(math.ceil(window / 2) / 2), math.ceil(math.ceil(features / 2) / 2)
        self.window, self.features = window, features
        self.fc = nn.Sequential(
            nn.Linear(cin * h * w, hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, code_dim),
            nn.Tanh(),
        )

    def forward(self, a: Tensor) -> Tensor:
        if a.shape[-2:] != (self.window, self.features):
            raise ValueError(
                f"audio windows are {tuple(a.shape[-2:])}, the encoder was built for "
                f"{(self.window, self.features)}"
            )
        return self.fc(self.conv(a[:, None]).flatten(1))
