"""Speech-content encoder over one MFCC window: two conv branches (davs's audio WID encoder).

``audio`` window ``N,W,C`` (20 x 12 MFCC in the DAVS authors' code: 0.2 s) -> **SpeechEncoder**
-> word-ID (WID) code, ``N,code_dim``

Branch one (the authors' ``mfcc_encoder``): 3x3 convolutions, the first with stride (3, 2), then
stride 2, then two more, to 512 channels (with batch norm and LeakyReLU 0.2 between them); branch
two (their ``mfcc_encoder_alter``): a convolution spanning all coefficients of 3 rows, a
subsampling of time, a (3, 1) convolution, a second subsampling and a last (3, 1) convolution, to
512 channels. The two are concatenated and a linear layer gives the code. How branch two subsamples
is ``subsample`` (:class:`Subsample`):

- ``stride`` (the authors'): kernel-1 pools with strides 3 and 2 (every third, then every second
  row) and an unpadded last convolution: at 20 rows, 18 -> 6 -> 3 -> 1;
- ``maxpool`` (ours before, the default for checkpoints of that time): max-pools over windows of
  3 and 2 rows and a padded last convolution, 18 -> 6 -> 3 -> 3, then a mean over the 3.

Both have the same parameters. At 20 x 12 both branches end at 1 x 1 as in the authors' code;
windows too small for an unpadded convolution get padding 1 there, and every branch ends in a
global average (nothing at 1 x 1), so any window works. The authors' second branch normalises its
first 4-D map with ``BatchNorm1d`` (an error in their code, which PyTorch 0.2 tolerated); it is a
``BatchNorm2d`` here. Their first branch also builds a ``bn5`` it never uses (1,024 parameters,
not built here). ``width`` scales every channel count (1.0 = the authors').

:func:`mfcc_trunk` is branch one's layout, shared with the audio branch of davs's sequence
discriminator (:mod:`talking_faces.nn.discriminators`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from talking_faces.config.choices import Choice


class Subsample(Choice):
    """How the audio WID encoder's second branch subsamples time (a config choice)."""

    maxpool = "maxpool"
    stride = "stride"


SUBSAMPLES: tuple[str, ...] = Subsample.names()


def _ch(c: int, width: float) -> int:
    return max(4, round(c * width))


def _out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def mfcc_trunk(
    cin: int,
    widths: Sequence[int],
    window: int,
    features: int,
    activation: bool = True,
    last_norm: bool = False,
) -> nn.Sequential:
    """The authors' four-conv MFCC stack over ``N,cin,window,features``: 3x3 stride (3, 2) pad
    (1, 2); 3x3 stride 2 pad 1; 3x3 and 2x2 unpadded (padding 1 where the map is too small for
    them), each but the last followed by batch norm (and LeakyReLU 0.2 when ``activation``);
    ``last_norm`` adds batch norm after the last; a global average ends it (``N,widths[3],1,1``).
    Convolutions have no bias (batch norm follows them), as the authors'."""
    w1, w2, w3, w4 = widths
    h2 = _out(_out(window, 3, 3, 1), 3, 2, 1)
    f2 = _out(_out(features, 3, 2, 2), 3, 2, 1)
    pad = 0 if min(h2, f2) >= 4 else 1
    layers: list[nn.Module] = []
    specs: list[tuple[int, int, tuple[int, int], tuple[int, int]]] = [
        (cin, w1, (3, 2), (1, 2)),
        (w1, w2, (2, 2), (1, 1)),
        (w2, w3, (1, 1), (pad, pad)),
    ]
    for a, b, s, p in specs:
        layers += [nn.Conv2d(a, b, 3, s, p, bias=False), nn.BatchNorm2d(b)]
        if activation:
            layers.append(nn.LeakyReLU(0.2, inplace=True))
    layers.append(nn.Conv2d(w3, w4, 2, 1, pad, bias=False))
    if last_norm:
        layers.append(nn.BatchNorm2d(w4))
    layers.append(nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers)


def _branch2(window: int, features: int, c64: int, c256: int, c512: int, subsample: str):
    act = nn.LeakyReLU(0.2, inplace=True)
    if subsample == "stride":
        pool1: nn.Module = nn.MaxPool2d(1, (3, 1))
        pool2: nn.Module = nn.MaxPool2d(1, (2, 1))
        rows = _out(_out(window - 2, 1, 3, 0), 1, 2, 0)
        last_pad = 0 if rows >= 3 else 1
    elif subsample == "maxpool":
        pool1 = nn.MaxPool2d((3, 1), (3, 1), ceil_mode=True)
        pool2 = nn.MaxPool2d((2, 1), (2, 1), ceil_mode=True)
        last_pad = 1
    else:
        raise ValueError(f"subsample must be one of {', '.join(SUBSAMPLES)}, got {subsample!r}")
    return nn.Sequential(
        nn.Conv2d(1, c64, (3, features), 1, 0, bias=False),
        nn.BatchNorm2d(c64),
        act,
        pool1,
        nn.Conv2d(c64, c256, (3, 1), 1, (1, 0), bias=False),
        nn.BatchNorm2d(c256),
        act,
        pool2,
        nn.Conv2d(c256, c512, (3, 1), 1, (last_pad, 0), bias=False),
        nn.AdaptiveAvgPool2d(1),
    )


class SpeechEncoder(nn.Module):
    """One audio-feature window -> WID code.

    Args:
        window: feature rows per window (W).
        features: coefficients per row (C).
        code_dim: output size (256).
        width: channel multiplier of both branches.
        subsample: branch two's subsampling, ``maxpool`` or ``stride`` (the authors').

    Shapes: ``a`` ``N,W,C`` -> ``N,code_dim``.
    """

    def __init__(
        self,
        window: int = 20,
        features: int = 12,
        code_dim: int = 256,
        width: float = 1.0,
        subsample: str = "maxpool",
    ):
        super().__init__()
        c64, c128, c256, c512 = (_ch(c, width) for c in (64, 128, 256, 512))
        self.branch1 = mfcc_trunk(1, (c64, c128, c256, c512), window, features)
        self.branch2 = _branch2(window, features, c64, c256, c512, subsample)
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
