"""Landmark expert: a small CNN that regresses the 68 iBUG landmarks from an aligned face crop.

prepared dataset (frames + landmarks) -> TalkingFaceDataModule -> **LandmarkExpert** (trained)
-> evaluate: landmarks of generated (and real) frames -> LandmarkDistance (LMD)

FAN (face-alignment) is the field's landmark detector, but its weights cannot be downloaded
everywhere and synthetic faces are not its domain; this expert is trained on any prepared dataset
from the landmarks that dataset carries (FAN's or the synthetic sidecar's), so LMD can be measured
with a detector that knows the domain. The network is an hourglass-lite: a strided encoder to 1/16,
a decoder back to 1/4 with skips, one heatmap per point, and a soft-argmax that turns each heatmap
into sub-pixel coordinates (integral regression); the loss is L1 on coordinates normalised by the
crop size, with the mouth points weighted up because LMD reads only those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from talking_faces.experts.base import ExpertConfig, ExpertModule

if TYPE_CHECKING:
    from talking_faces.data.batch import Batch

#: iBUG-68 indices of the mouth (outer lips 48-59, inner lips 60-67)
MOUTH = slice(48, 68)
#: crop size in which mouth errors are reported (docs/metrics.md: LMD in pixels of a 128 px crop)
REPORT_SIZE = 128


class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class _Residual(nn.Module):
    def __init__(self, ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _ConvBN(ch, ch, dilation=dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


def _upsample2(x: Tensor) -> Tensor:
    """Nearest-neighbour 2x upsampling of ``N,C,H,W``: the values of ``F.interpolate(x,
    scale_factor=2, mode="nearest")`` to the bit, as a broadcast copy (about 4x faster on CPU)."""
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        nhwc = x.permute(0, 2, 3, 1)  # a view of the NHWC storage: the copy stays channels-last
        up = nhwc[:, :, None, :, None, :].expand(n, h, 2, w, 2, c).reshape(n, 2 * h, 2 * w, c)
        return up.permute(0, 3, 1, 2)
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


class LandmarkRegressor(nn.Module):
    """Aligned face crop -> 68 landmarks in crop pixels.

    Args:
        width: channels at 1/4 resolution (doubled at 1/8 and 1/16).
        num_points: landmarks per face (68 for iBUG).

    Shapes: ``forward(images)`` with images ``N,3,H,W`` in [0,1] (H, W multiples of 16) returns
    ``N,P,2`` as (x, y) pixel coordinates of the input, pixel centres at integers.
    """

    def __init__(self, width: int = 32, num_points: int = 68) -> None:
        super().__init__()
        w = width
        self.num_points = num_points
        self.stem = nn.Sequential(_ConvBN(3, w // 2, stride=2), _ConvBN(w // 2, w, stride=2))
        self.level4 = nn.Sequential(_Residual(w), _Residual(w))
        self.level8 = nn.Sequential(_ConvBN(w, 2 * w, stride=2), _Residual(2 * w))
        self.level16 = nn.Sequential(
            _ConvBN(2 * w, 2 * w, stride=2), _Residual(2 * w, dilation=2), _Residual(2 * w)
        )
        self.up8 = _ConvBN(4 * w, 2 * w)
        self.up4 = _ConvBN(3 * w, w)
        self.head = nn.Conv2d(w, num_points, 1)
        # heatmaps start flat so the initial soft-argmax sits at the centre, not at a corner
        nn.init.zeros_(self.head.weight)
        assert self.head.bias is not None  # a Conv2d with bias=True
        nn.init.zeros_(self.head.bias)
        #: learnable inverse temperature of the spatial softmax
        self.log_beta = nn.Parameter(torch.tensor(math.log(4.0)))

    def features(self, images: Tensor) -> list[Tensor]:
        """``N,3,H,W`` in [0,1] -> the trunk's maps at 1/4, 1/8, 1/16 and the decoder's at 1/4
        (what a perceptual loss on face geometry compares; amie's ``perceptual: landmarks``)."""
        if images.shape[-1] % 16 or images.shape[-2] % 16:
            raise ValueError(f"crop size must be a multiple of 16, got {tuple(images.shape[-2:])}")
        x = (images - 0.5) / 0.25
        f4 = self.level4(self.stem(x))
        f8 = self.level8(f4)
        f16 = self.level16(f8)
        u8 = self.up8(torch.cat([f8, _upsample2(f16)], 1))
        u4 = self.up4(torch.cat([f4, _upsample2(u8)], 1))
        return [f4, f8, f16, u4]

    def heatmaps(self, images: Tensor) -> Tensor:
        """``N,3,H,W`` in [0,1] -> ``N,P,H/4,W/4`` heatmap logits."""
        return self.head(self.features(images)[-1])

    def forward(self, images: Tensor) -> Tensor:
        """``N,3,H,W`` in [0,1] -> ``N,P,2`` (x, y) in input pixels."""
        logits = self.heatmaps(images)
        n, p, h, w = logits.shape
        prob = torch.softmax(logits.flatten(2) * self.log_beta.exp(), dim=-1).view(n, p, h, w)
        stride_y = images.shape[-2] / h
        stride_x = images.shape[-1] / w
        # centre of heatmap cell j in input pixels (pixel centres at integers)
        ys = (torch.arange(h, device=logits.device, dtype=prob.dtype) + 0.5) * stride_y - 0.5
        xs = (torch.arange(w, device=logits.device, dtype=prob.dtype) + 0.5) * stride_x - 0.5
        x = (prob.sum(2) * xs).sum(-1)
        y = (prob.sum(3) * ys).sum(-1)
        return torch.stack([x, y], dim=-1)


def _fuse_conv_bn(module: nn.Module) -> nn.Module:
    """``module`` with every ``Conv2d`` that an eval-mode ``BatchNorm2d`` follows in an
    ``nn.Sequential`` folded into one convolution (children replaced in place; a Sequential is
    returned as a new one)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if isinstance(module, nn.Sequential):
        items, i = list(module), 0
        fused: list[nn.Module] = []
        while i < len(items):
            pair = items[i : i + 2]
            if (
                len(pair) == 2
                and isinstance(pair[0], nn.Conv2d)
                and isinstance(pair[1], nn.BatchNorm2d)
            ):
                fused.append(fuse_conv_bn_eval(pair[0], pair[1]))
                i += 2
            else:
                fused.append(_fuse_conv_bn(items[i]))
                i += 1
        return nn.Sequential(*fused)
    for name, child in module.named_children():
        setattr(module, name, _fuse_conv_bn(child))
    return module


def inference_network(net: LandmarkRegressor) -> LandmarkRegressor:
    """A copy of ``net`` (in eval mode) for prediction only: each convolution's batch norm folded
    into its weights and the weights channels-last, about 1.5x the frames per second of ``net``
    on CPU at 128 px (2 threads). Its points differ from ``net``'s by float rounding only (at most
    about 3e-5 px at 128 px in ``tests/test_experts.py``)."""
    import copy

    fused = copy.deepcopy(net).eval()
    for name, child in fused.named_children():
        setattr(fused, name, _fuse_conv_bn(child))
    return fused.to(memory_format=torch.channels_last)


def _augment(
    images: Tensor,
    points: Tensor,
    geometry: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Random similarity jitter, colour jitter, blur and noise; landmarks follow the geometry.

    Generated frames are blurrier and slightly off the alignment template; training on jittered
    real crops keeps the expert's error low on them too. ``geometry`` scales the similarity
    jitter (1: rotation +-3 degrees, scale +-3 %, shift +-3 % of the crop; 0: none).
    images ``N,3,H,W``; points ``N,P,2``.
    """
    n, _, h, w = images.shape
    dev, dt = images.device, images.dtype

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device=dev, dtype=dt)

    angle = (rand(n) - 0.5) * math.radians(6.0) * geometry
    scale = 1.0 + (rand(n) - 0.5) * 0.06 * geometry
    shift = (rand(n, 2) - 0.5) * 0.06 * geometry * torch.tensor([w, h], device=dev, dtype=dt)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    # forward map in pixels around the crop centre: p' = R p + t
    centre = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=dev, dtype=dt)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # N,2,2
    new_points = (points - centre) @ rot.transpose(1, 2) + centre + shift[:, None]
    # grid_sample needs the inverse map in normalised coordinates (align_corners=False)
    inv = torch.linalg.inv(rot)
    norm = torch.tensor([2.0 / w, 2.0 / h], device=dev, dtype=dt)
    # with u = N (p - centre): source s = N R^-1 N^-1 u - N R^-1 t
    a = torch.diag_embed(norm) @ inv @ torch.diag_embed(1.0 / norm)
    b = -(torch.diag_embed(norm) @ inv @ shift[..., None])[..., 0]
    theta = torch.cat([a, b[..., None]], -1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # colour: brightness, contrast, per-channel gain
    out = (out - 0.5) * (0.8 + 0.4 * rand(n, 1, 1, 1)) + 0.5 + (rand(n, 1, 1, 1) - 0.5) * 0.2
    out = out * (0.9 + 0.2 * rand(n, 3, 1, 1))
    # blur half the images with a 3x3 box (generated frames are soft)
    blurred = F.avg_pool2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    pick = (rand(n, 1, 1, 1) < 0.5).to(dt)
    out = pick * blurred + (1 - pick) * out
    out = out + torch.randn(out.shape, generator=generator, device=dev, dtype=dt) * 0.02
    return out.clamp(0, 1), new_points


@dataclass
class LandmarkExpertConfig(ExpertConfig):
    """Hyper-parameters of the landmark expert (``image_size`` is the dataset's crop size)."""

    name: str = "landmarks"
    lr: float = 2e-3
    #: channels of the regressor at 1/4 resolution
    width: int = 32
    #: weight of the mouth points in the loss (others weigh 1)
    mouth_weight: float = 3.0
    #: random similarity / colour / blur jitter on training crops
    augment: bool = True
    #: strength of the similarity part of the jitter (0: photometric jitter only)
    augment_geometry: float = 1.0


class LandmarkExpert(ExpertModule):
    """Trains :class:`LandmarkRegressor` on the frames and landmarks of a prepared dataset.

    Batches are :class:`~talking_faces.data.batch.Batch` dicts; all ``B*T`` frames with valid
    landmarks are used. Logs ``train/loss``, ``val/loss``, ``val/mouth_px`` (mean Euclidean error
    of points 48-67 in pixels of a 128 px crop) and ``val/nme`` (all points, divided by the crop
    size).
    """

    Config: ClassVar[type] = LandmarkExpertConfig

    #: per-point loss weights ``68`` (mean 1; the mouth weighed up), a buffer
    point_weights: Tensor

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.net = LandmarkRegressor(width=cfg.width)
        weights = torch.ones(68)
        weights[MOUTH] = cfg.mouth_weight
        self.register_buffer("point_weights", weights / weights.mean(), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """``N,3,H,W`` in [0,1] -> ``N,68,2`` crop pixels."""
        return self.net(images)

    @torch.no_grad()
    def predict_landmarks(self, frames: Tensor, batch_size: int = 256) -> Tensor:
        """Landmarks of any number of frames: ``...,3,H,W`` in [0,1] -> ``...,68,2`` in those
        frames' pixels.

        Frames of another size than the crops the expert was trained on (``config.image_size``)
        are resized to it (bilinear, antialiased) and the points mapped back.
        """
        lead = frames.shape[:-3]
        h, w = frames.shape[-2:]
        flat = frames.reshape(-1, *frames.shape[-3:]).float()
        size = self.config.image_size or max(16, (max(h, w) // 16) * 16)
        if (h, w) != (size, size):
            flat = F.interpolate(flat, size=(size, size), mode="bilinear", antialias=True)
        # eval mode: the folded channels-last copy, rebuilt per call (a few ms) so it always holds
        # the current weights (fit's validation calls this between optimizer steps)
        if self.net.training:
            out = [self.net(chunk) for chunk in flat.split(batch_size)]
        else:
            net = inference_network(self.net)
            cl = torch.channels_last
            out = [net(chunk.contiguous(memory_format=cl)) for chunk in flat.split(batch_size)]
        points = torch.cat(out) if out else flat.new_zeros(0, 68, 2)
        if (h, w) != (size, size):
            # pixel centres at integers: x_in = (x + 0.5) * W / size - 0.5
            scale = points.new_tensor([w / size, h / size])
            points = (points + 0.5) * scale - 0.5
        return points.view(*lead, 68, 2)

    def _flatten(self, batch: Batch) -> tuple[Tensor, Tensor]:
        frames = batch["frames"].flatten(0, 1)
        points = batch["landmarks"].flatten(0, 1)
        valid = batch["landmarks_valid"].flatten(0, 1).bool()
        return frames[valid], points[valid]

    def _loss(self, pred: Tensor, target: Tensor, size: int) -> Tensor:
        err = (pred - target).abs().sum(-1) / size  # N,68
        return (err * self.point_weights).mean()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        frames, points = self._flatten(batch)
        if frames.shape[0] == 0:
            return None  # no valid landmarks: Lightning skips the step
        if self.config.augment:
            frames, points = _augment(frames, points, self.config.augment_geometry)
        pred = self.net(frames)
        loss = self._loss(pred, points, frames.shape[-1])
        self.log("train/loss", loss, prog_bar=True, batch_size=frames.shape[0])
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        frames, points = self._flatten(batch)
        if frames.shape[0] == 0:
            return
        pred = self.net(frames)
        size = frames.shape[-1]
        n = frames.shape[0]
        dist = (pred - points).norm(dim=-1)  # N,68
        self.log("val/loss", self._loss(pred, points, size), batch_size=n, sync_dist=True)
        self.log(
            "val/mouth_px",
            dist[:, MOUTH].mean() * (REPORT_SIZE / size),
            prog_bar=True,
            batch_size=n,
            sync_dist=True,
        )
        self.log("val/nme", dist.mean() / size, batch_size=n, sync_dist=True)
