"""Discriminators shared by the GAN methods: frame PatchGAN, sequence PatchGAN with an audio
branch, and an audio-conditioned frame discriminator.

generated or real frames (+ their audio windows) -> **discriminator** -> logits ->
:class:`~talking_faces.nn.gan.GANLoss`

- :class:`PatchDiscriminator`: pix2pix's N-layer PatchGAN over one image (Isola et al. 2017): a map
  of logits, one per overlapping patch.
- :class:`SequenceDiscriminator`: the PatchGAN over ``F`` frames stacked on the channel axis (davs's
  sequence discriminator, 6 frames in the authors' code), plus a pair head: features of the mouth
  region of the patch trunk and an audio branch over the ``F`` audio windows are joined into one
  logit, "real frames that match this audio". Two heads (``pair_head``, :class:`PairHead`):

  - ``crop``, the authors' (``network/Discriminator_networks.py``): a fixed 9x9 window (rows
    19-27, columns 11-19) of the 31x31 trunk map at 256 px, an unpadded 3x3 conv (batch norm,
    LeakyReLU) and a 7x7 conv to 1x1 (LeakyReLU); the audio branch is the authors' MFCC stack
    with batch norm after every conv and no activation, to ``4 * audio_width`` channels; the two
    joined through two linear layers (768 -> 512 -> 1 at their widths, nothing between them). At
    other map sizes the window keeps its place and size as fractions of the map (at least 3x3).
    19,016,770 parameters at the authors' settings (256 px, 6 frames, ``ndf`` 64, 3 layers,
    ``audio_width`` 64); their module also builds a ``conv8``, ``bn7``, ``bn8`` and ``bn9`` it
    never uses (2,562 more: 19,019,332 counted over the module), not built here;
  - ``pooled``, ours before (the default, for checkpoints of that time): a padded 3x3 conv over
    the trunk features of the ``mouth_box`` rows and columns, averaged; a three-conv LeakyReLU
    audio branch to the trunk's width; an MLP (6,336,258 parameters at the same settings).
- :class:`AudioFrameDiscriminator`: an image CNN and an audio MLP whose features are concatenated
  into one logit, the probability that frame and audio are a real, matching pair (amie's frame
  discriminator).

All return logits (no sigmoid): :class:`~talking_faces.nn.gan.GANLoss` applies the loss.
:func:`init_pix2pix` is the authors' discriminator initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from talking_faces.config.choices import Choice
from talking_faces.nn.speech import mfcc_trunk


class Norm(Choice):
    """The normalisation layer of a discriminator (a config choice)."""

    batch = "batch"
    instance = "instance"
    none = "none"


NORMS: tuple[str, ...] = Norm.names()


class PairHead(Choice):
    """The sequence discriminator's audio-visual pair head (a config choice)."""

    pooled = "pooled"
    crop = "crop"


PAIR_HEADS: tuple[str, ...] = PairHead.names()

#: the authors' pair-head window of the trunk map, as fractions of it: top, left, side (rows
#: 19-27 and columns 11-19 of the 31x31 map at 256 px)
AUTHORS_CROP: tuple[float, float, float] = (19 / 31, 11 / 31, 9 / 31)


@torch.no_grad()
def init_pix2pix(module: nn.Module) -> None:
    """pix2pix's ``weights_init``, as the DAVS authors apply it to their discriminators: every
    convolution N(0, 0.02) with zero bias, every 2-D batch norm scale N(1, 0.02) and zero shift
    (linear layers keep their initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


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


def trunk_side(image_size: int, n_layers: int) -> int:
    """Side of :class:`PatchTrunk`'s feature map over ``image_size`` frames (31 at 256 px with 3
    layers; the patch logits are one smaller)."""
    side = image_size
    for _ in range(n_layers):
        side = (side + 2 - 4) // 2 + 1
    return side - 1


def crop_window(side: int) -> tuple[slice, slice]:
    """Rows and columns of the authors' pair-head window (:data:`AUTHORS_CROP`) of a ``side`` x
    ``side`` trunk map: 19:28 and 11:20 at 31; at least 3x3, inside the map."""
    top, left, frac = AUTHORS_CROP
    k = min(side, max(3, round(frac * side)))
    y0 = min(round(top * side), side - k)
    x0 = min(round(left * side), side - k)
    return slice(y0, y0 + k), slice(x0, x0 + k)


class SequenceDiscriminator(nn.Module):
    """``F`` stacked frames and their audio -> (patch logits, pair logit).

    Args:
        frames: F, frames per sequence (6 in the DAVS authors' code).
        ndf, n_layers, norm: the PatchGAN trunk over ``3F`` channels.
        audio_width: width of the audio branch (``pooled``: its first conv, its output has as
            many channels as the trunk; ``crop``: widths ``w, 2w, 4w, 4w``).
        mouth_box: ``(x0, y0, x1, y1)`` fractions of the frame whose trunk features feed the
            ``pooled`` pair head.
        pair_head: ``pooled`` or ``crop`` (the authors', see the module docstring).
        image_size, audio_window, audio_features: the inputs' sizes (the ``crop`` head's layers
            depend on them).

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
        pair_head: str = "pooled",
        image_size: int = 256,
        audio_window: int = 20,
        audio_features: int = 12,
    ) -> None:
        super().__init__()
        if pair_head not in PAIR_HEADS:
            raise ValueError(f"pair_head must be one of {', '.join(PAIR_HEADS)}, got {pair_head!r}")
        self.frames, self.pair_head = frames, str(pair_head)
        self.trunk = PatchTrunk(3 * frames, ndf, n_layers, norm)
        c = self.trunk.out_channels
        self.mouth_box = tuple(float(v) for v in mouth_box)
        if pair_head == "pooled":
            self.mouth = nn.Sequential(
                nn.Conv2d(c, c, 3, 1, 1), _norm(norm, c), nn.LeakyReLU(0.2, inplace=True)
            )
            self.audio: nn.Module = AudioBranch(frames, audio_width, c)
            self.pair = nn.Sequential(
                nn.Linear(2 * c, c), nn.LeakyReLU(0.2, inplace=True), nn.Linear(c, 1)
            )
            return
        self.side = trunk_side(image_size, n_layers)
        self.window = crop_window(self.side)
        k = self.window[0].stop - self.window[0].start
        self.mouth = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 0, bias=norm != "batch"),
            _norm(norm, c),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c, c, k - 2, 1, 0),
            nn.LeakyReLU(0.2, inplace=True),
        )
        w = audio_width
        widths = (w, 2 * w, 4 * w, 4 * w)
        self.audio = mfcc_trunk(
            frames, widths, audio_window, audio_features, activation=False, last_norm=True
        )
        self.pair = nn.Sequential(nn.Linear(c + 4 * w, c), nn.Linear(c, 1))

    def _mouth_features(self, feats: Tensor) -> Tensor:
        if self.pair_head == "crop":
            rows, cols = self.window
            return self.mouth(feats[:, :, rows, cols]).flatten(1)
        h, w = feats.shape[-2:]
        x0, y0, x1, y1 = self.mouth_box
        rows = slice(int(y0 * h), max(int(y0 * h) + 1, round(y1 * h)))
        cols = slice(int(x0 * w), max(int(x0 * w) + 1, round(x1 * w)))
        return self.mouth(feats[:, :, rows, cols]).mean(dim=(2, 3))

    def forward(self, frames: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        n, f = frames.shape[:2]
        if f != self.frames:
            raise ValueError(f"the discriminator takes {self.frames} frames, got {f}")
        feats = self.trunk(frames.reshape(n, f * 3, *frames.shape[-2:]))
        patch = self.trunk.head(feats)
        if self.pair_head == "crop" and feats.shape[-2:] != (self.side, self.side):
            raise ValueError(
                f"the crop pair head was built for a {self.side}x{self.side} trunk map, got "
                f"{tuple(feats.shape[-2:])} (frames {tuple(frames.shape[-2:])})"
            )
        mouth = self._mouth_features(feats)
        pair = self.pair(torch.cat([mouth, self.audio(audio).flatten(1)], 1))
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
