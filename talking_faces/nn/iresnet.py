"""ArcFace's improved ResNet (IResNet, Duta et al. 2020) as InsightFace's ``arcface_torch`` trains
it: the face-embedding network behind ArcFace identity similarity (``csim_arcface``).

weight file (``backbone.pth`` of the ``arcface_torch`` model zoo, a plain state dict) ->
:func:`load_iresnet` (depth read from the state dict: r18, r34, r50, r100) -> :class:`IResNet`
(``N,3,112,112`` aligned faces in [-1, 1] -> ``N,512`` embeddings) ->
:class:`talking_faces.metrics.face_models.ArcFaceEmbedder`

The module names are the ones ``arcface_torch``'s ``iresnet.py`` gives (``conv1``, ``bn1``,
``prelu``, ``layer1..4`` of ``IBasicBlock`` with ``bn1, conv1, bn2, prelu, conv2, bn3`` and a
``downsample`` of conv1x1 + batch norm, then ``bn2``, ``fc`` 512*7*7 -> 512 and ``features``, a
batch norm over the embedding), so that their state dicts load with ``strict=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from talking_faces.errors import UserError

#: blocks per stage of each depth that the model zoo ships
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
}
#: the aligned face size the networks take
ARCFACE_SIZE = 112
_WIDTHS = (64, 128, 256, 512)
_EPS = 1e-5


class IBasicBlock(nn.Module):
    """Pre-activation basic block: BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN, plus
    the (downsampled) input."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=_EPS)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=_EPS)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes, eps=_EPS),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """``N,3,112,112`` (RGB, ``(x - 0.5) / 0.5``) -> ``N,512`` embeddings (not normalised).

    Args:
        layers: blocks in each of the four stages (see :data:`IRESNET_LAYERS`).
        embedding: the embedding size (512 in the model zoo).
    """

    def __init__(self, layers: tuple[int, int, int, int], embedding: int = 512) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, _WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(_WIDTHS[0], eps=_EPS)
        self.prelu = nn.PReLU(_WIDTHS[0])
        inplanes = _WIDTHS[0]
        for i, (width, blocks) in enumerate(zip(_WIDTHS, layers, strict=True)):
            stage = [IBasicBlock(inplanes, width, stride=2)]
            stage += [IBasicBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            inplanes = width
        self.bn2 = nn.BatchNorm2d(_WIDTHS[-1], eps=_EPS)
        self.fc = nn.Linear(_WIDTHS[-1] * 7 * 7, embedding)
        self.features = nn.BatchNorm1d(embedding, eps=_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.features(self.fc(torch.flatten(self.bn2(x), 1)))


def iresnet_depth(state: dict[str, Tensor]) -> str:
    """The depth (``r18`` ... ``r100``) whose blocks per stage the state dict holds.

    Raises:
        UserError: no known depth has these stages.
    """
    counts = tuple(
        len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)
    )
    for name, layers in IRESNET_LAYERS.items():
        if counts == layers:
            return name
    raise UserError(
        f"the ArcFace state dict has {counts} blocks per stage, which is none of "
        f"{', '.join(f'{n} {v}' for n, v in IRESNET_LAYERS.items())} (arcface_torch's iresnet)"
    )


def load_iresnet(path: str | Path) -> tuple[IResNet, str]:
    """The IResNet of an ``arcface_torch`` state-dict file (read with ``weights_only=True``),
    in eval mode, and its depth name.

    Raises:
        UserError: the file is not a state dict of an IResNet.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"ArcFace weights {path} are not a PyTorch state dict ({type(exc).__name__}); "
            "use arcface_torch's backbone.pth"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"ArcFace weights {path} do not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    depth = iresnet_depth(state)
    net = IResNet(IRESNET_LAYERS[depth], embedding=int(state["fc.weight"].shape[0]))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise UserError(f"ArcFace weights {path} do not fit IResNet-{depth}: {first}") from None
    return net.eval(), depth


__all__ = [
    "ARCFACE_SIZE",
    "IRESNET_LAYERS",
    "IBasicBlock",
    "IResNet",
    "iresnet_depth",
    "load_iresnet",
]
