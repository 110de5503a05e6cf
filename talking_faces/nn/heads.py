"""Small classifier and discriminator heads over codes and maps (davs's associative and
adversarial heads).

WID / PID codes or maps -> **heads** -> logits

- :class:`SequenceClassifier`: a sequence of ``T`` codes flattened into two linear layers (the
  DAVS authors' word classifier "ModelFusion" over 12 WID codes, shared by audio and video).
- :class:`CodeDiscriminator`: an MLP on one code (the modality discriminator on WID with one
  output; the speaker discriminator on WID with one output per speaker; an identity head on PID).
- :class:`MapSequenceClassifier`: per frame a stride-2 conv to one channel and a linear layer on
  the flattened map, then the frames' features concatenated into a linear classifier (the
  authors' "ID_dis32", which predicts the word from PID maps).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SequenceClassifier(nn.Module):
    """``N,T,D`` codes -> ``N,classes`` logits. The first layer starts at N(0, 1e-4) weights as
    in the authors' code (a near-zero start keeps the early gradient into the encoders small).

    Shapes: ``codes`` ``N,frames,code_dim`` -> ``N,classes``.
    """

    def __init__(self, frames: int, code_dim: int, classes: int, hidden: int = 512) -> None:
        super().__init__()
        self.fc1 = nn.Linear(frames * code_dim, hidden)
        self.fc2 = nn.Linear(hidden, classes)
        nn.init.normal_(self.fc1.weight, 0.0, 1e-4)
        nn.init.zeros_(self.fc1.bias)
        self.frames = frames

    def forward(self, codes: Tensor) -> Tensor:
        if codes.shape[1] != self.frames:
            raise ValueError(f"the classifier takes {self.frames} codes, got {codes.shape[1]}")
        return self.fc2(torch.relu(self.fc1(codes.flatten(1))))


class CodeDiscriminator(nn.Module):
    """``N,D`` codes -> ``N,out`` logits: Linear, ReLU, Linear (the authors' modality
    discriminator has ``hidden = D`` and one output).

    Shapes: ``code`` ``N,code_dim`` (or ``N,T,code_dim``) -> ``N,out`` (or ``N,T,out``).
    """

    def __init__(self, code_dim: int, out: int = 1, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or code_dim
        self.net = nn.Sequential(nn.Linear(code_dim, hidden), nn.ReLU(True), nn.Linear(hidden, out))

    def forward(self, code: Tensor) -> Tensor:
        return self.net(code)


class MapSequenceClassifier(nn.Module):
    """``N,T,C,h,w`` maps -> ``N,classes`` logits.

    Args:
        channels, size: channels and side of each map.
        frames: T.
        classes: outputs.
        hidden: per-frame feature size (128 in the authors' code).

    The last layer starts at N(0, 1e-4) weights as in the authors' code. Dropout (0.5 in the
    authors' code) draws its mask from ``generator`` when one is given, so a resumed run drops the
    same units as an uninterrupted one.
    """

    def __init__(
        self,
        channels: int,
        size: int,
        frames: int,
        classes: int,
        hidden: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 3, 2, 1)
        side = (size + 1) // 2
        self.fc = nn.Linear(side * side, hidden)
        self.dropout = dropout
        self.out = nn.Linear(frames * hidden, classes)
        nn.init.normal_(self.out.weight, 0.0, 1e-4)
        nn.init.zeros_(self.out.bias)
        self.frames = frames

    def forward(self, maps: Tensor, generator: torch.Generator | None = None) -> Tensor:
        n, t = maps.shape[:2]
        if t != self.frames:
            raise ValueError(f"the classifier takes {self.frames} maps, got {t}")
        x = torch.relu(self.conv(maps.flatten(0, 1))).flatten(1)
        x = self.fc(x).view(n, t * self.fc.out_features)
        if self.training and self.dropout > 0:
            keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.dropout
            x = x * keep / (1.0 - self.dropout)
        return self.out(x)
