"""Perceptual losses: distances between a fixed network's features of generated and real frames.

generated and real frames -> frozen feature network -> **PerceptualLoss** -> amie's loss term

Feature networks (:func:`load_feature_net`):

- ``vgg19``: torchvision's ImageNet VGG19, relu1_2, relu2_2, relu3_4, relu4_4 and relu5_4 (the
  usual perceptual-loss layers, Johnson et al. 2016; weights 1/32, 1/16, 1/8, 1/4, 1 as in
  pix2pixHD), inputs normalised with ImageNet statistics. Its weights are read from the torch
  hub cache (``<torch hub dir>/checkpoints/vgg19-dcbedc0f.pth``), never downloaded: without the
  file it stops with one line naming it.
- ``landmarks``: the trunk of the dataset's trained landmark expert
  (:meth:`~talking_faces.experts.landmarks.LandmarkRegressor.features`), equal weights: features
  that encode face geometry, available offline for any prepared dataset.

The feature network is frozen and kept out of the model's state (not trained, not saved).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from talking_faces.config.choices import Choice
from talking_faces.errors import MissingWeightsError, UserError


class FeatureRegressor(Protocol):
    """A network with a feature trunk (the landmark expert's regressor): frames -> feature maps.
    A protocol, so ``nn/`` needs no import of the experts above it."""

    def features(self, x: Tensor) -> list[Tensor]: ...

    def eval(self) -> Any: ...


class PerceptualNet(Choice):
    """The feature network of a perceptual loss (a config choice)."""

    vgg19 = "vgg19"
    landmarks = "landmarks"
    none = "none"


PERCEPTUAL_NETS: tuple[str, ...] = PerceptualNet.names()
VGG19_FILENAME = "vgg19-dcbedc0f.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILENAME}"
#: indices in torchvision's vgg19().features after which relu1_2 ... relu5_4 come
VGG19_LAYERS = (3, 8, 17, 26, 35)
VGG19_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def vgg19_weights_path() -> Path:
    """Where torchvision keeps the ImageNet VGG19 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


class VGG19Features(nn.Module):
    """``N,3,H,W`` in [0,1] -> the five relu maps of :data:`VGG19_LAYERS`."""

    mean: Tensor
    std: Tensor

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features[: VGG19_LAYERS[-1] + 1]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> list[Tensor]:
        h = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in VGG19_LAYERS:
                out.append(h)
        return out


def load_vgg19(path: str | Path | None = None) -> VGG19Features:
    """VGG19's feature layers with the ImageNet weights from ``path`` (default: the hub cache).

    Raises:
        MissingWeightsError: the file is not there (naming it and where to get it).
    """
    import torchvision

    path = Path(path) if path is not None else vgg19_weights_path()
    if not path.is_file():
        raise MissingWeightsError(
            f"VGG19 weights for the perceptual loss not found: {path}; download {VGG19_URL} into "
            f"{path.parent}, or train with model.perceptual=landmarks (the dataset's landmark "
            "expert) or model.perceptual=none"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vgg = torchvision.models.vgg19(weights=None)
    try:
        vgg.load_state_dict(state)
    except RuntimeError:
        raise UserError(f"{path} is not a torchvision VGG19 state dict") from None
    return VGG19Features(vgg.features).eval().requires_grad_(False)


class ExpertFeatures(nn.Module):
    """The landmark expert's trunk as a feature network (``N,3,H,W`` in [0,1] -> maps)."""

    def __init__(self, regressor: FeatureRegressor) -> None:
        super().__init__()
        self.regressor = regressor.eval().requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.regressor.features(x)


class PerceptualLoss(nn.Module):
    """Weighted mean of the L1 distances between feature maps of ``fake`` and ``real``.

    Args:
        net: frames -> list of feature maps (frozen).
        weights: one weight per map (default 1 each).

    Shapes: ``fake``, ``real`` ``N,3,H,W`` in [0,1] -> scalar.
    """

    def __init__(self, net: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.weights = list(weights) if weights is not None else None

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        with torch.no_grad():
            targets = self.net(real)
        feats = self.net(fake)
        weights = self.weights or [1.0] * len(feats)
        total = fake.new_zeros((), dtype=torch.float32)
        for w, f, t in zip(weights, feats, targets, strict=True):
            total = total + w * F.l1_loss(f.float(), t.float())
        return total


def perceptual_loss(
    kind: str, landmark_expert: FeatureRegressor | None = None
) -> PerceptualLoss | None:
    """The :class:`PerceptualLoss` of feature network ``kind`` (:data:`PERCEPTUAL_NETS`).

    ``landmarks`` needs the dataset's landmark expert (a module with ``features``).
    """
    if kind == "none":
        return None
    if kind == "vgg19":
        return PerceptualLoss(load_vgg19(), VGG19_WEIGHTS)
    if kind == "landmarks":
        if landmark_expert is None:
            raise UserError(
                "model.perceptual=landmarks needs the dataset's landmark expert "
                "(PREP/experts/landmarks.ckpt): train it with `talking-faces fit "
                "experiments/experts/landmarks.yaml data.root=PREP`, or use perceptual=vgg19/none"
            )
        return PerceptualLoss(ExpertFeatures(landmark_expert))
    raise UserError(f"model.perceptual must be one of {', '.join(PERCEPTUAL_NETS)}, got {kind!r}")
