"""Light-CNN identity encoder: max-feature-map blocks, a code and multi-scale maps (davs's PID).

identity face ``B,3,H,W`` -> **IdentityEncoder** -> person-identity code (PID) + maps -> decoder
(skip at H/8) and davs's word discriminator (maps at H/4)

A max-feature-map (MFM) block (Wu et al. 2018, "A Light CNN for Deep Face Representation") computes
two convolutions with batch norm and keeps their elementwise maximum. The DAVS authors' encoder
(``network/IdentityEncoder.py``): an MFM stem (7x7, stride 2, 32 channels), then four stages
separated by 2x max-pools with 4, 6, 4 and 2 MFM blocks ending at 64, 160, 320 and 256 channels
(5x5 kernels in the last stage), and a global average of the last stage as the 256-d code. At 256
px the stages are at 64, 32, 16 and 8 px; the 32 px map is the decoder's skip.

Here the widths and block counts are arguments. Inside a stage the authors widen in steps: their
blocks have 32, 32, 64, 64 / 96, 96, 128, 128, 160, 160 / 320 x 4 / 256, 256 output channels
(15,619,584 parameters at 256 px). ``stage_widths`` gives every block's width; without it the
first block of a stage changes the width and the others keep it (16,598,016 parameters with the
authors' stage widths: a different network, the one of our earlier checkpoints). Two convolutions
and two norms are computed as one convolution with twice the channels and a grouped split, the
same function. :meth:`IdentityEncoder.init_authors` is the authors' initialisation.
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


def stage_block_widths(
    channels: Sequence[int],
    blocks: Sequence[int],
    stage_widths: Sequence[Sequence[int]] | None = None,
) -> list[list[int]]:
    """Output width of every MFM block of the four stages: ``stage_widths`` when given (checked
    against ``blocks`` and the stage widths ``channels[1:]``, which each stage must end at), else
    ``blocks[i]`` times ``channels[i]``.

    >>> stage_block_widths([8, 16, 32, 48, 64], [1, 2, 1, 1, 1], [[8, 16], [32], [48], [64]])[0]
    [8, 16]
    """
    if len(channels) != 5 or len(blocks) != 5 or blocks[0] != 1 or min(blocks) < 1:
        raise ValueError("channels and blocks need 5 entries (stem + 4 stages), stem 1 block")
    if stage_widths is None:
        return [[int(channels[i])] * int(blocks[i]) for i in range(1, 5)]
    widths = [[int(w) for w in stage] for stage in stage_widths]
    ok = len(widths) == 4 and all(
        len(widths[i - 1]) == blocks[i] and widths[i - 1][-1] == channels[i] for i in range(1, 5)
    )
    if not ok:
        raise ValueError(
            f"stage widths {widths} must be 4 lists of {list(blocks[1:])} widths ending at "
            f"{list(channels[1:])}"
        )
    return widths


class IdentityEncoder(nn.Module):
    """Face -> ``(code, maps)`` with ``maps[i]`` at ``H / 2**(i+2)`` (i = 0..3).

    Args:
        image_size: square input size (a multiple of 32).
        channels: output widths of the stem and the four stages (the last is the code size).
        blocks: MFM blocks of the stem (1) and of each stage.
        stage_widths: output width of every block of each stage (see :func:`stage_block_widths`);
            None: every block at its stage's width.

    Shapes: ``x`` ``N,3,S,S`` in [0,1] -> ``code`` ``N,channels[-1]``, ``maps`` ``[N,c1,S/4,S/4],
    [N,c2,S/8,S/8], [N,c3,S/16,S/16], [N,c4,S/32,S/32]``.
    """

    def __init__(
        self,
        image_size: int = 256,
        channels: Sequence[int] = (32, 64, 160, 320, 256),
        blocks: Sequence[int] = (1, 4, 6, 4, 2),
        stage_widths: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        if image_size % 32:
            raise ValueError(f"the identity encoder needs a multiple of 32 px, got {image_size}")
        widths = stage_block_widths(channels, blocks, stage_widths)
        self.stem = MFM(3, channels[0], kernel=7, stride=2)
        stages = []
        cin = channels[0]
        for i, stage_w in enumerate(widths):
            k = 5 if i == 3 else 3
            stage = []
            for w in stage_w:
                stage.append(MFM(cin, w, k))
                cin = w
            stages.append(nn.Sequential(*stage))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        self.code_dim = channels[-1]
        self.map_channels = list(channels[1:])

    @torch.no_grad()
    def init_authors(self) -> None:
        """The authors' initialisation (their ``BasicBlock.initial``): convolutions N(0, std) with
        ``std = 1 / sqrt(k^2 * cout)``, ``k`` 7 for the stem and 3 for every other block (their
        constants use 3 in the 5x5 stage too), biases 0; batch norm scale 1, shift 0."""
        blocks = [m for m in self.modules() if isinstance(m, MFM)]
        for block in blocks:
            k = 7 if block is self.stem else 3
            nn.init.normal_(block.conv.weight, 0.0, (k * k * block.cout) ** -0.5)
            if block.conv.bias is not None:
                nn.init.zeros_(block.conv.bias)
            nn.init.ones_(block.bn.weight)
            nn.init.zeros_(block.bn.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = self.stem(x)
        maps = []
        for stage in self.stages:
            h = stage(self.pool(h))
            maps.append(h)
        return h.mean(dim=(2, 3)), maps
