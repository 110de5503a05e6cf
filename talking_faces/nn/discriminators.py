"""Discriminators shared by the GAN methods: frame PatchGAN, sequence PatchGAN with an audio
branch, and an audio-conditioned frame discriminator.

generated or real frames (+ their audio windows) -> **discriminator** -> logits ->
:class:`~talking_faces.nn.gan.GANLoss`

- :class:`PatchDiscriminator`: pix2pix's N-layer PatchGAN over one image (Isola et al. 2017): a map
  of logits, one per overlapping patch.
- :class:`SequenceDiscriminator`: the PatchGAN over ``F`` frames stacked on the channel axis (davs's
  sequence discriminator, 6 frames in the authors' code), plus a pair head: features of the mouth
  rows of the patch trunk and an audio branch over the ``F`` audio windows are joined into one
  logit, "real frames that match this audio". The authors crop a fixed 9x9 window of the 30x30
  feature map at 256 px; here the crop is the feature rows/columns of ``mouth_box`` (fractions of
  the frame) at any resolution.
- :class:`AudioFrameDiscriminator`: an image CNN and an audio MLP whose features are concatenated
  into one logit, the probability that frame and audio are a real, matching pair (amie's frame
  discriminator).

All return logits (no sigmoid): :class:`~talking_faces.nn.gan.GANLoss` applies the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from talking_faces.config.choices import Choice


class Norm(Choice):
    """The normalisation layer of a discriminator (a config choice)."""

    batch = "batch"
    instance = "instance"
    none = "none"


NORMS: tuple[str, ...] = Norm.names()


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")


class PatchTrunk(nn.Module):
    """The N-layer PatchGAN body: ``n_layers`` stride-2 4x4 convs (``ndf * min(2**i, 8)``
    channels), one stride-1 4x4 conv; ``forward`` gives its ``N,C,h,w`` features and ``head``
    maps them to ``N,1,h',w'`` patch logits."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=norm == "instance"),
                _norm(norm, ndf * mult),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=norm == "instance"),
            _norm(norm, ndf * mult),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        self.body = nn.Sequential(*layers)
        self.out_channels = ndf * mult
        self.head = nn.Conv2d(ndf * mult, 1, 4, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class PatchDiscriminator(nn.Module):
    """One image -> ``N,1,h,w`` patch logits (pix2pix's NLayerDiscriminator).

    Args:
        in_channels: image channels (3; 6 for a conditional pair stacked on channels).
        ndf: width of the first layer.
        n_layers: stride-2 layers (3: 70x70 receptive field).
        norm: ``batch``, ``instance`` or ``none``.

    Shapes: ``x`` ``N,in_channels,H,W`` -> ``N,1,H/2**n_layers - 2,W/2**n_layers - 2``.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        self.trunk = PatchTrunk(in_channels, ndf, n_layers, norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk.head(self.trunk(x))


class AudioBranch(nn.Module):
    """``F`` audio-feature windows (``N,F,W,C``, frames on the channel axis) -> ``N,out`` vector:
    three 3x3 convs (the first two with stride 2) and a global average."""

    def __init__(self, frames: int, width: int = 64, out: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(frames, width, 3, 2, 1),
            nn.BatchNorm2d(width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 3, 2, 1),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, out, 3, 1, 1),
            nn.BatchNorm2d(out),
            nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, audio: Tensor) -> Tensor:
        return self.net(audio).flatten(1)


class SequenceDiscriminator(nn.Module):
    """``F`` stacked frames and their audio -> (patch logits, pair logit).

    Args:
        frames: F, frames per sequence (6 in the DAVS authors' code).
        ndf, n_layers, norm: the PatchGAN trunk over ``3F`` channels.
        audio_width: width of the audio branch (its output has as many channels as the trunk).
        mouth_box: ``(x0, y0, x1, y1)`` fractions of the frame whose trunk features feed the
            pair head.

    Shapes: ``frames`` ``N,F,3,H,W`` in [0,1], ``audio`` ``N,F,W,C`` -> ``(N,1,h,w)``, ``(N,1)``.
    """

    def __init__(
        self,
        frames: int = 6,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "batch",
        audio_width: int = 64,
        mouth_box: Sequence[float] = (0.30, 0.54, 0.70, 0.80),
    ) -> None:
        super().__init__()
        self.frames = frames
        self.trunk = PatchTrunk(3 * frames, ndf, n_layers, norm)
        c = self.trunk.out_channels
        self.mouth_box = tuple(float(v) for v in mouth_box)
        self.mouth = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 1), _norm(norm, c), nn.LeakyReLU(0.2, inplace=True)
        )
        self.audio = AudioBranch(frames, audio_width, c)
        self.pair = nn.Sequential(
            nn.Linear(2 * c, c), nn.LeakyReLU(0.2, inplace=True), nn.Linear(c, 1)
        )

    def forward(self, frames: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        n, f = frames.shape[:2]
        if f != self.frames:
            raise ValueError(f"the discriminator takes {self.frames} frames, got {f}")
        feats = self.trunk(frames.reshape(n, f * 3, *frames.shape[-2:]))
        patch = self.trunk.head(feats)
        h, w = feats.shape[-2:]
        x0, y0, x1, y1 = self.mouth_box
        rows = slice(int(y0 * h), max(int(y0 * h) + 1, round(y1 * h)))
        cols = slice(int(x0 * w), max(int(x0 * w) + 1, round(x1 * w)))
        mouth = self.mouth(feats[:, :, rows, cols]).mean(dim=(2, 3))
        pair = self.pair(torch.cat([mouth, self.audio(audio)], 1))
        return patch, pair


class AudioFrameDiscriminator(nn.Module):
    """Frame + its audio window -> one logit: "a real frame of this audio".

    Args:
        image_size: square frame size.
        audio_window, audio_features: the audio window's shape (W rows, C coefficients).
        ndf: width of the first image conv; the image CNN halves the resolution down to 4 px,
            doubling the width up to ``8 * ndf``.
        audio_hidden: width of the audio MLP (and of its output).

    Shapes: ``frame`` ``N,3,H,W`` in [0,1], ``audio`` ``N,W,C`` -> ``N,1``.
    """

    def __init__(
        self,
        image_size: int,
        audio_window: int,
        audio_features: int,
        ndf: int = 64,
        audio_hidden: int = 256,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, c, size = 3, ndf, image_size
        while size > 4:
            layers += [nn.Conv2d(cin, c, 4, 2, 1, bias=norm != "batch")]
            if cin != 3:
                layers.append(_norm(norm, c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin, c, size = c, min(2 * c, 8 * ndf), size // 2
        self.image = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.audio = nn.Sequential(
            nn.Linear(audio_window * audio_features, audio_hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(audio_hidden, audio_hidden),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.head = nn.Sequential(
            nn.Linear(cin + audio_hidden, audio_hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(audio_hidden, 1),
        )

    def forward(self, frame: Tensor, audio: Tensor) -> Tensor:
        img = self.image(frame).flatten(1)
        aud = self.audio(audio.flatten(1))
        return self.head(torch.cat([img, aud], 1))
