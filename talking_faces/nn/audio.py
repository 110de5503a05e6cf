"""Audio CNN over one window of audio features (ldm's audio encoder).

Batch ``audio`` (``B,T,W,F``: one window of ``W`` feature rows at 100 Hz per video frame) ->
:class:`AudioEncoder` per window -> audio code -> prior over the latent.

The layout of the ldm authors' ``models/rnn_audio.py``, over a 28 x 12 MFCC window (0.28 s, c0
dropped): conv3x3 64, conv3x3 128, max-pool 3x3 stride (1, 2), conv3x3 256, conv3x3 256, max-pool
3x3 stride (2, 2) (28 x 12 -> 26 x 5 -> 12 x 2, so 256 x 12 x 2 = 6,144 features), FC 2048, ReLU,
FC 128, ReLU. Convolutions have biases and no batch norm, as theirs. Parameters: 13,806,976 at the
published widths, the authors' count.

One difference, on purpose: the authors stack the convolutions with no non-linearity between them,
so each pair of convolutions before a pool collapses into one linear 5x5 convolution; we put a
ReLU after every convolution (the activation the authors use in the rest of this network). It
adds no parameter. The flattened size follows from ``window`` and ``features`` (a window needs at
least 5 rows and 7 coefficients).

``batch_norm=True`` (an option, off in the authors' layout) puts batch norm between each
convolution and its ReLU. Narrow variants need it: with the authors' N(0, 0.02) initialisation and
no normalisation, each 3x3 convolution of ``c`` input channels scales its input by about
``0.02 * 3 * sqrt(c)``, so four narrow ones (16-64 channels) pass the audio on at a few thousandths
of its scale and the prior learns to ignore it (measured with the tiny ldm preset).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

#: the authors' pools: (kernel, stride) after the 2nd and the 4th convolution
POOLS = ((3, (1, 2)), (3, (2, 2)))


def _pooled(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


class AudioEncoder(nn.Module):
    """One audio-feature window -> ``code_dim`` vector (non-negative: ReLU output, as the
    authors').

    Args:
        window: feature rows per window (28 for 0.28 s at 100 Hz).
        features: coefficients per row (12: MFCC without c0).
        channels: the four conv widths (64, 128, 256, 256); pooling after the 2nd and 4th.
        hidden: width of the first fully connected layer (2048).
        code_dim: output size (128).
        batch_norm: batch norm after each convolution (not in the authors' layout).

    Shapes: ``forward(a)`` with ``a`` ``N,window,features`` returns ``N,code_dim``.
    """

    def __init__(
        self,
        window: int = 28,
        features: int = 12,
        channels: Sequence[int] = (64, 128, 256, 256),
        hidden: int = 2048,
        code_dim: int = 128,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"the audio CNN has four conv layers, got channels={list(channels)}")
        h, w = window, features
        for kernel, (sh, sw) in POOLS:
            if h < kernel or w < kernel:
                raise ValueError(
                    f"audio windows of {window} x {features} are too small for the audio CNN's "
                    "3x3 pools (needs at least 5 rows and 7 coefficients)"
                )
            h, w = _pooled(h, kernel, sh), _pooled(w, kernel, sw)
        layers: list[nn.Module] = []
        cin = 1
        for i, c in enumerate(channels):
            layers.append(nn.Conv2d(cin, c, 3, 1, 1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.ReLU(inplace=True))
            if i in (1, 3):
                kernel, stride = POOLS[i // 2]
                layers.append(nn.MaxPool2d(kernel, stride=stride))
            cin = c
        self.conv = nn.Sequential(*layers)
        self.window, self.features = window, features
        self.fc = nn.Sequential(
            nn.Linear(cin * h * w, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, code_dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, a: Tensor) -> Tensor:
        if a.shape[-2:] != (self.window, self.features):
            raise ValueError(
                f"audio windows are {tuple(a.shape[-2:])}, the encoder was built for "
                f"{(self.window, self.features)}"
            )
        return self.fc(self.conv(a[:, None]).flatten(1))
