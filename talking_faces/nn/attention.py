"""Dynamic attention (amie's DA): a spatial mask on the lip region that weighs the identity's
features against the previous frame's.

identity maps + previous-frame maps (+ the previous mask and frame) -> **DynamicAttention** ->
blended skip map -> decoder

The first frame's mask is a coarse lip box: the mouth region of the alignment template
(``box``, fractions of the aligned frame; every prepared face is aligned to that template, so the
box is known without landmarks at generation time) at the maps' resolution. Each following frame's
mask is refined from the previous mask and the previous (generated) frame by a small conv head
(the "finer mask, closer to the lip shape"). The blend is

    skip_t = (1 - r_t m_t) * identity_map + r_t m_t * previous_frame_map

with the rate ``r_0 = init_rate`` on the first frame and ``r_t = rate`` after it, both fixed
(not learned). The paper's exact formula was not recovered; this is our reading of its text.
The paper describes DA for training: amie blends with it in training and, in generation, only
with ``attention_at_inference`` (:mod:`talking_faces.models.amie`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from talking_faces.nn.lipread import box_mask


class DynamicAttention(nn.Module):
    """Masks and blends for a sequence of frames.

    Args:
        map_size: side of the maps the mask weighs (and of the mask).
        box: the coarse lip box of the first frame (x0, y0, x1, y1 fractions).
        init_rate: rate of the first frame.
        rate: rate of every following frame.
        width: channels of the refining head.
    """

    initial: Tensor

    def __init__(
        self,
        map_size: int,
        box: Sequence[float],
        init_rate: float = 0.5,
        rate: float = 0.8,
        width: int = 16,
    ) -> None:
        super().__init__()
        self.register_buffer("initial", box_mask(map_size, map_size, box), persistent=False)
        self.init_rate, self.rate = float(init_rate), float(rate)
        layers: list[nn.Module] = [
            nn.Conv2d(4, width, 3, 1, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, width, 3, 1, 1),
            nn.LeakyReLU(0.2, True),
        ]
        last = nn.Conv2d(width, 1, 3, 1, 1)
        self.head = nn.Sequential(*layers, last)
        # start the refinement near the identity (keep the previous mask): logit of the mask
        nn.init.zeros_(last.weight)
        if last.bias is not None:  # always: the conv has a bias
            nn.init.zeros_(last.bias)

    def first(self, batch: int) -> Tensor:
        """The coarse lip box mask ``B,1,h,w`` of the first frame."""
        return self.initial.expand(batch, -1, -1, -1)

    def refine(self, mask: Tensor, previous_frame: Tensor) -> Tensor:
        """Next mask ``B,1,h,w`` in (0,1) from the previous mask and the previous frame
        ``B,3,H,W`` in [0,1]: a residual in logit space, so the zero-initialised head starts by
        keeping the mask."""
        small = F.interpolate(
            previous_frame, size=mask.shape[-2:], mode="bilinear", align_corners=False
        )
        logit = torch.logit(mask.clamp(1e-3, 1 - 1e-3))
        return torch.sigmoid(logit + self.head(torch.cat([mask, small], 1)))

    def blend(
        self, mask: Tensor, first: bool, identity_map: Tensor, previous_map: Tensor
    ) -> Tensor:
        """``(1 - r m) * identity_map + r m * previous_map``."""
        a = (self.init_rate if first else self.rate) * mask
        return (1 - a) * identity_map + a * previous_map
