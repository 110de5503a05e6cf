"""Visual speech-content encoders: a frame -> its word-ID (WID) code (davs's video WID encoder).

real frames ``N,3,H,W`` -> **LipEncoder** (default) or **HourglassEncoder** -> ``N,code_dim``

- :class:`LipEncoder`: the lip region (``mouth_box``, fractions of the aligned frame) cropped and
  resized to ``crop_size``, then stride-2 3x3 conv blocks (BN, LeakyReLU 0.2) and a global average
  into a linear layer. Cheap, and it sees only what speech moves.
- :class:`HourglassEncoder`: the DAVS authors' trunk: a FAN-style network (Bulat and Tzimiropoulos
  2017) over the whole frame: 7x7 stride-2 stem, bottleneck blocks, a 2x max-pool, one hourglass
  of depth 4, 68 "heatmap" channels at a quarter of the resolution; then BN, ReLU, a stride-2 conv
  to one channel, and a linear layer over its ``(H/8)^2`` values. ``width`` scales the 256-channel
  body (the authors': 1.0, initialised from a face-alignment FAN; here it trains from scratch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: lip region of a frame aligned by ``talking-faces prepare`` (x0, y0, x1, y1 fractions): the
#: template's mouth points span x 0.36-0.63, y 0.59-0.70 of the crop; the box adds room for an
#: open jaw below and a quarter mouth width on the sides
MOUTH_BOX: tuple[float, float, float, float] = (0.30, 0.54, 0.70, 0.80)


def crop_box(frames: Tensor, box: Sequence[float], size: int | None = None) -> Tensor:
    """The ``box`` (x0, y0, x1, y1 fractions) of ``N,C,H,W`` frames, resized to ``size`` x
    ``size`` (bilinear) when given."""
    h, w = frames.shape[-2:]
    x0, y0, x1, y1 = box
    r0, r1 = int(round(y0 * h)), max(int(round(y0 * h)) + 1, int(round(y1 * h)))
    c0, c1 = int(round(x0 * w)), max(int(round(x0 * w)) + 1, int(round(x1 * w)))
    out = frames[..., r0:r1, c0:c1]
    if size is not None and out.shape[-2:] != (size, size):
        out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
    return out


def box_mask(height: int, width: int, box: Sequence[float], device: torch.device | str = "cpu"):
    """``1,1,H,W`` float mask, 1 inside ``box`` (fractions), 0 outside."""
    x0, y0, x1, y1 = box
    mask = torch.zeros(1, 1, height, width, device=device)
    r0, r1 = int(round(y0 * height)), max(int(round(y0 * height)) + 1, int(round(y1 * height)))
    c0, c1 = int(round(x0 * width)), max(int(round(x0 * width)) + 1, int(round(x1 * width)))
    mask[..., r0:r1, c0:c1] = 1.0
    return mask


class LipEncoder(nn.Module):
    """Frame -> WID code from its lip region.

    Args:
        code_dim: output size.
        channels: widths of the stride-2 conv blocks.
        crop_size: side of the resized lip crop.
        box: the lip region (fractions of the frame).

    Shapes: ``x`` ``N,3,H,W`` in [0,1] -> ``N,code_dim``.
    """

    def __init__(
        self,
        code_dim: int = 256,
        channels: Sequence[int] = (64, 128, 256, 512),
        crop_size: int = 64,
        box: Sequence[float] = MOUTH_BOX,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for c in channels:
            layers += [nn.Conv2d(cin, c, 3, 2, 1), nn.BatchNorm2d(c), nn.LeakyReLU(0.2, True)]
            cin = c
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(cin, code_dim)
        self.crop_size = crop_size
        self.box = tuple(float(v) for v in box)

    def forward(self, x: Tensor) -> Tensor:
        lips = crop_box(x, self.box, self.crop_size)
        return self.fc(self.net(lips).flatten(1))


class Bottleneck(nn.Module):
    """FAN's pre-activation block: three 3x3 convs of c/2, c/4, c/4 channels, concatenated, plus
    the (1x1-projected) input."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout // 2, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout // 2)
        self.conv2 = nn.Conv2d(cout // 2, cout // 4, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout // 4)
        self.conv3 = nn.Conv2d(cout // 4, cout - cout // 2 - cout // 4, 3, 1, 1, bias=False)
        self.skip = (
            nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(True), nn.Conv2d(cin, cout, 1, bias=False))
            if cin != cout
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        o1 = self.conv1(F.relu(self.bn1(x)))
        o2 = self.conv2(F.relu(self.bn2(o1)))
        o3 = self.conv3(F.relu(self.bn3(o2)))
        return torch.cat([o1, o2, o3], 1) + self.skip(x)


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels over ``c`` channels (Newell et al. 2016, as in FAN)."""

    def __init__(self, depth: int, c: int, align_corners: bool = False) -> None:
        super().__init__()
        self.up = Bottleneck(c, c)
        self.low1 = Bottleneck(c, c)
        self.inner = Hourglass(depth - 1, c, align_corners) if depth > 1 else Bottleneck(c, c)
        self.low3 = Bottleneck(c, c)
        self.align_corners = align_corners

    def forward(self, x: Tensor) -> Tensor:
        up = self.up(x)
        low = self.low3(self.inner(self.low1(F.max_pool2d(x, 2))))
        low = F.interpolate(low, up.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        return up + low


class HourglassEncoder(nn.Module):
    """Frame -> WID code through a one-hourglass FAN trunk (the DAVS authors' video encoder).

    Args:
        image_size: square input size (a multiple of 64 for depth 4).
        code_dim: output size.
        width: multiplier of FAN's 256 channels.
        depth: hourglass depth.
        align_corners: of the hourglass's bilinear upsampling (the authors' PyTorch 0.2
            upsampling behaves as True).

    Shapes: ``x`` ``N,3,S,S`` in [0,1] -> ``N,code_dim``.
    """

    def __init__(
        self,
        image_size: int = 256,
        code_dim: int = 256,
        width: float = 1.0,
        depth: int = 4,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        c = max(16, int(round(256 * width / 4)) * 4)
        c64, c128 = max(8, c // 4), max(8, c // 2)
        if image_size % (4 * 2**depth):
            raise ValueError(f"image_size {image_size} must be a multiple of {4 * 2**depth}")
        self.stem = nn.Sequential(nn.Conv2d(3, c64, 7, 2, 3), nn.BatchNorm2d(c64), nn.ReLU(True))
        self.body = nn.Sequential(
            Bottleneck(c64, c128), nn.MaxPool2d(2), Bottleneck(c128, c128), Bottleneck(c128, c)
        )
        self.hourglass = Hourglass(depth, c, align_corners)
        self.top = nn.Sequential(
            Bottleneck(c, c),
            nn.Conv2d(c, c, 1),
            nn.BatchNorm2d(c),
            nn.ReLU(True),
            nn.Conv2d(c, 68, 1),
        )
        self.head = nn.Sequential(nn.BatchNorm2d(68), nn.ReLU(True), nn.Conv2d(68, 1, 3, 2, 1))
        self.fc = nn.Linear((image_size // 8) ** 2, code_dim)

    def forward(self, x: Tensor) -> Tensor:
        maps = self.top(self.hourglass(self.body(self.stem(x))))
        return self.fc(F.relu(self.head(maps)).flatten(1))
