"""The metric suite: every score of one evaluation protocol, behind one ``update``/``compute``.

Generated clips + the batch's targets, waveform and landmarks -> :class:`MetricSuite.update` ->
PSNR, SSIM, LPIPS, CPBD (at the protocol's resolution and colour space), mouth LMD (landmark model
on the generated frames vs the batch's landmarks, in protocol-resolution pixels), LSE-D / LSE-C /
offset (SyncNet on the generated frames at their own resolution), identity similarity (a face
embedder on the identity image and each generated frame at its own resolution), the region
metrics (the face outside the mouth, the eyes and brows, the teeth: in regions of the batch's
landmarks, at the protocol's resolution) -> :meth:`MetricSuite.compute` (means over clips,
reduced across DDP processes because every score is a torchmetrics state) and
:meth:`MetricSuite.per_clip` rows -> results JSON and per-clip CSV (written by the evaluator).

A :class:`Protocol` names every convention that changes the numbers; two results are comparable
only when their protocols are equal, so the results JSON stores ``Protocol.to_dict()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from talking_faces import names
from talking_faces.errors import UserError
from talking_faces.metrics.diversity import SampleDiversity
from talking_faces.metrics.identity import IdentitySimilarity
from talking_faces.metrics.image import (
    COLOUR_SPACES,
    SSIM_WINDOWS,
    VideoLPIPS,
    VideoPSNR,
    VideoSSIM,
    load_lpips,
    to_colour_space,
)
from talking_faces.metrics.landmarks import LMD_VARIANTS, LandmarkDistance
from talking_faces.metrics.naturalness import Naturalness
from talking_faces.metrics.regions import Regions
from talking_faces.metrics.sharpness import BLOCK, VideoCPBD
from talking_faces.metrics.sync import CHANNEL_ORDERS, MODES, LipSyncError, lip_sync_errors
from talking_faces.nn.syncnet import SyncNet

if TYPE_CHECKING:
    from talking_faces.metrics.fid import VideoFID

_INT_COLUMNS = {
    "lse_offset",
    "lmd_frames_scored",
    "lmd_frames_failed",
    "csim_frames_scored",
    "csim_frames_failed",
}

LandmarkModel = Callable[[torch.Tensor], Any]

# Direction of every key compute() can return (None: not a score, e.g. a count): one table for
# the whole package, in talking_faces.names.
HIGHER_IS_BETTER: Mapping[str, bool | None] = names.HIGHER_IS_BETTER


@dataclass
class Protocol:
    """The conventions behind a set of scores.

    Attributes:
        name: label shown on the leaderboard.
        resolution: frames (generated and target) are resized to ``resolution`` x
            ``resolution`` (bilinear, antialiased) for PSNR, SSIM, LPIPS, CPBD; LMD is in pixels
            of this size.
        colour_space: ``"rgb"`` or ``"y"`` (BT.601 luma) for PSNR and SSIM.
        ssim_window: ``"uniform7"`` (scikit-image default) or ``"gaussian11"`` (Wang et al.).
        lmd_variant: ``"default"``, ``"chen2018"`` or ``"uncentred"``.
        lse_mode: ``"full"`` (whole frame to SyncNet) or ``"crop"`` (``lse_crop_box`` first).
        vshift: largest AV shift searched, in frames.
        lse_crop_box: ``(x0, y0, x1, y1)`` as fractions of the frame for ``lse_mode="crop"``;
            ``None``: the lower-centre square ``(0.25, 0.5, 0.75, 1.0)``.
        lse_channel_order: ``"bgr"`` (the public SyncNet's input) or ``"rgb"``.
        cpbd: score CPBD (needs ``resolution >= 64``).
    """

    name: str = "default"
    resolution: int = 128
    colour_space: str = "rgb"
    ssim_window: str = "uniform7"
    lmd_variant: str = "default"
    lse_mode: str = "full"
    vshift: int = 15
    lse_crop_box: tuple[float, float, float, float] | None = None
    lse_channel_order: str = "bgr"
    cpbd: bool = True

    def __post_init__(self) -> None:
        choices = {
            "colour_space": COLOUR_SPACES,
            "ssim_window": SSIM_WINDOWS,
            "lmd_variant": LMD_VARIANTS,
            "lse_mode": MODES,
            "lse_channel_order": CHANNEL_ORDERS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise UserError(
                    f"protocol {self.name!r}: {key} must be one of {list(allowed)}, "
                    f"got {getattr(self, key)!r}"
                )
        if int(self.resolution) < 8 or int(self.vshift) < 0:
            raise UserError(
                f"protocol {self.name!r}: resolution must be >= 8 and vshift >= 0, got "
                f"{self.resolution} and {self.vshift}"
            )
        if self.cpbd and self.resolution < BLOCK:
            raise UserError(
                f"protocol {self.name!r}: CPBD needs resolution >= {BLOCK} px, got "
                f"{self.resolution}; set cpbd: false"
            )
        if self.lse_crop_box is not None:
            box = tuple(float(v) for v in self.lse_crop_box)
            if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
                raise UserError(
                    f"protocol {self.name!r}: lse_crop_box must be (x0, y0, x1, y1) fractions "
                    f"with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {self.lse_crop_box}"
                )
            self.lse_crop_box = box

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Protocol:
        """Build from a mapping (e.g. a YAML section); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown protocol keys {unknown}; known keys: {sorted(known)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        out = dataclasses.asdict(self)
        if out["lse_crop_box"] is not None:
            out["lse_crop_box"] = list(out["lse_crop_box"])
        return out


def _resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``B,T,C,H,W`` -> ``B,T,C,size,size`` (bilinear, antialiased; unchanged if already so)."""
    if tuple(frames.shape[-2:]) == (size, size):
        return frames
    b, t = frames.shape[:2]
    out = F.interpolate(
        frames.flatten(0, 1).float(),
        size=(size, size),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    return out.clamp(0, 1).view(b, t, *out.shape[1:])


def _run_landmark_model(
    model: LandmarkModel, frames: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``B,T,3,H,W`` -> landmarks ``B,T,68,2`` and validity ``B,T``.

    ``model`` maps ``N,3,H,W`` in [0,1] to ``N,68,2`` (NaN rows for failed detections) or to a
    ``(landmarks, valid)`` pair.
    """
    b, t = frames.shape[:2]
    out = model(frames.flatten(0, 1))
    valid = None
    if isinstance(out, tuple):
        out, valid = out
    lmk = torch.as_tensor(np.asarray(out) if not torch.is_tensor(out) else out).float()
    lmk = lmk.to(frames.device).view(b, t, 68, 2)
    if valid is None:
        valid = torch.isfinite(lmk).flatten(2).all(-1)
    else:
        valid = torch.as_tensor(valid).to(frames.device, torch.bool).view(b, t)
    return lmk, valid


class MetricSuite(nn.Module):
    """All metrics of a :class:`Protocol`.

    Args:
        protocol: the conventions (default :class:`Protocol`).
        syncnet: SyncNet for LSE-D/LSE-C/offset; ``None`` leaves them out.
        landmark_model: ``N,3,H,W`` in [0,1] -> ``N,68,2`` in those frames' pixels (NaN or a
            ``(landmarks, valid)`` pair for failures); ``None`` leaves LMD out.
        lpips: score LPIPS (needs the AlexNet weights, see :func:`load_lpips`).
        lpips_model: an LPIPS module to use instead of loading one.
        diversity: keep :meth:`update_diversity` scores (stochastic methods).
        lse_batch_size: SyncNet windows per forward pass.
        naturalness: score lip, head-motion and eyebrow dynamics and silent-lip stability from
            the landmark model's points of the generated frames (needs ``landmark_model``;
            ``update(..., silence=B,T)`` gives the silent frames, see
            :mod:`talking_faces.metrics.naturalness`).
        regions: score the face outside the mouth, the eyes and brows and the teeth against the
            real frames, in regions of the batch's ``target_landmarks`` (the real frames' points;
            :mod:`talking_faces.metrics.regions`).
        fid: a :class:`talking_faces.metrics.fid.VideoFID` (its Inception loaded), or None.
        identity_model: a face embedder, ``N,3,H,W`` in [0,1] -> ``N,D`` (NaN rows where no face),
            for identity similarity under ``identity_key`` (``csim_dlib``, ``csim_arcface``);
            ``None`` leaves it out.
        identity_frame_stride: identity similarity on frames 0, k, 2k, ... of each clip.

    ``update(pred, target, waveform, target_landmarks, target_landmarks_valid, clip_ids,
    identity)``: ``pred``/``target`` ``B,T,3,H,W`` in [0,1], ``waveform`` ``B,S`` 16 kHz,
    ``target_landmarks`` ``B,T,68,2`` in target-frame pixels, ``target_landmarks_valid`` ``B,T``,
    ``identity`` ``B,3,H,W`` the identity images the clips were generated from.
    ``compute()`` -> ``dict[str, float]`` (keys in :data:`HIGHER_IS_BETTER`). ``per_clip()`` ->
    one dict per clip seen by this process.
    """

    landmark_model: LandmarkModel | None  # kept in __dict__, see __init__
    identity_model: LandmarkModel | None  # kept in __dict__, see __init__

    def __init__(
        self,
        protocol: Protocol | None = None,
        syncnet: SyncNet | None = None,
        landmark_model: LandmarkModel | None = None,
        lpips: bool = True,
        lpips_model: nn.Module | None = None,
        diversity: bool = False,
        lse_batch_size: int = 64,
        identity_model: LandmarkModel | None = None,
        identity_key: str = "csim_dlib",
        identity_frame_stride: int = 1,
        naturalness: bool = False,
        fid: VideoFID | None = None,
        regions: bool = False,
    ) -> None:
        super().__init__()
        self.protocol = protocol if protocol is not None else Protocol()
        p = self.protocol
        # Not registered as a submodule: it may be any callable (e.g. a face-alignment wrapper).
        self.__dict__["landmark_model"] = landmark_model
        self.__dict__["identity_model"] = identity_model
        self.identity_key = identity_key
        if identity_frame_stride < 1:
            raise ValueError(f"identity_frame_stride must be 1 or more: {identity_frame_stride}")
        self.identity_frame_stride = identity_frame_stride
        self.csim = IdentitySimilarity() if identity_model is not None else None
        #: a VideoFID (talking_faces.metrics.fid) when the protocol scores FID
        self.fid = fid
        self.naturalness = Naturalness() if naturalness and landmark_model is not None else None
        self.regions = Regions() if regions else None
        if (lpips or diversity) and lpips_model is None:
            lpips_model = load_lpips()
        self.psnr = VideoPSNR()
        self.ssim = VideoSSIM(window=p.ssim_window)
        self.lpips = VideoLPIPS(model=lpips_model) if lpips else None
        self.cpbd = VideoCPBD() if p.cpbd else None
        self.lmd = LandmarkDistance(variant=p.lmd_variant) if landmark_model is not None else None
        self.lse = (
            LipSyncError(
                syncnet,
                vshift=p.vshift,
                mode=p.lse_mode,
                batch_size=lse_batch_size,
                channel_order=p.lse_channel_order,
            )
            if syncnet is not None
            else None
        )
        self.diversity = SampleDiversity(lpips_model) if diversity else None
        self._rows: list[dict[str, Any]] = []

    def _lse_crop_box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        if self.protocol.lse_mode != "crop":
            return None
        x0, y0, x1, y1 = self.protocol.lse_crop_box or (0.25, 0.5, 0.75, 1.0)
        return (round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height))

    @torch.no_grad()
    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        waveform: torch.Tensor | None = None,
        target_landmarks: torch.Tensor | None = None,
        target_landmarks_valid: torch.Tensor | None = None,
        clip_ids: Sequence[str] | None = None,
        identity: torch.Tensor | None = None,
        silence: torch.Tensor | None = None,
    ) -> None:
        """Score a batch of generated clips against their targets (see the class docstring)."""
        if pred.ndim != 5 or pred.shape[:3] != target.shape[:3] or pred.shape[2] != 3:
            raise ValueError(
                f"pred and target must be B,T,3,H,W with equal B,T; got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        res = self.protocol.resolution
        p_res, t_res = _resize(pred, res), _resize(target, res)
        p_col = to_colour_space(p_res, self.protocol.colour_space)
        t_col = to_colour_space(t_res, self.protocol.colour_space)
        columns: dict[str, torch.Tensor] = {}
        self.psnr.update(p_col, t_col)
        columns["psnr"] = self.psnr.batch_values
        self.ssim.update(p_col, t_col)
        columns["ssim"] = self.ssim.batch_values
        if self.lpips is not None:
            self.lpips.update(p_res, t_res)
            columns["lpips"] = self.lpips.batch_values
        if self.fid is not None:
            self.fid.update(pred, target)  # a set statistic: no per-clip column
        if self.cpbd is not None:
            self.cpbd.update(p_res)
            columns["cpbd"] = self.cpbd.batch_values
        if self.landmark_model is not None and (
            self.naturalness is not None or target_landmarks is not None
        ):
            lmk = (target_landmarks, target_landmarks_valid)
            columns.update(self._landmark_columns(pred, target, *lmk, silence))
        if self.regions is not None and target_landmarks is not None:
            columns.update(
                self._region_columns(p_res, t_res, target, target_landmarks, target_landmarks_valid)
            )
        if self.lse is not None and waveform is not None:
            box = self._lse_crop_box(*pred.shape[-2:])
            self.lse.update(pred, waveform, crop_box=box)
            rows = self.lse.batch_values
            columns["lse_d"], columns["lse_c"], columns["lse_offset"] = rows.unbind(1)
        if self.csim is not None and identity is not None:
            columns.update(self._identity_columns(pred, identity))

        start = len(self._rows)
        for b in range(pred.shape[0]):
            row: dict[str, Any] = {
                "clip_id": clip_ids[b] if clip_ids is not None else str(start + b)
            }
            for key, values in columns.items():
                value = values[b].item()
                row[key] = int(value) if key in _INT_COLUMNS else value
            self._rows.append(row)

    def _landmark_columns(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        target_landmarks: torch.Tensor | None,
        target_valid: torch.Tensor | None,
        silence: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """LMD and the naturalness metrics from the landmark model's points of ``pred``."""
        if self.landmark_model is None:
            raise RuntimeError("MetricSuite has no landmark model")
        res = self.protocol.resolution
        columns: dict[str, torch.Tensor] = {}
        pred_lmk, pred_valid = _run_landmark_model(self.landmark_model, pred)
        if self.lmd is not None and target_landmarks is not None:
            # Both sets to protocol-resolution pixels: x by res / W, y by res / H.
            pred_scale = pred_lmk.new_tensor([res / pred.shape[-1], res / pred.shape[-2]])
            true_scale = pred_lmk.new_tensor([res / target.shape[-1], res / target.shape[-2]])
            true_lmk = target_landmarks.to(pred_lmk.device).float() * true_scale
            self.lmd.update(pred_lmk * pred_scale, true_lmk, pred_valid, target_valid)
            columns["lmd"] = self.lmd.batch_values
            counts = self.lmd.batch_counts
            columns["lmd_frames_scored"], columns["lmd_frames_failed"] = counts[:, 0], counts[:, 1]
        if self.naturalness is not None:
            columns.update(self.naturalness.update(pred_lmk, pred_valid, silence))
        return columns

    def _region_columns(
        self,
        p_res: torch.Tensor,
        t_res: torch.Tensor,
        target: torch.Tensor,
        target_landmarks: torch.Tensor,
        target_valid: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """The region metrics on the protocol-resolution frames, in regions of the real frames'
        landmarks (moved from target-frame pixels to protocol-resolution pixels, centres at
        integers)."""
        if self.regions is None:
            raise RuntimeError("MetricSuite does not score the regions")
        res = self.protocol.resolution
        scale = p_res.new_tensor([res / target.shape[-1], res / target.shape[-2]])
        lmk = (target_landmarks.to(p_res.device).float() + 0.5) * scale - 0.5
        valid = target_valid.to(p_res.device) if target_valid is not None else None
        return self.regions.update(p_res, t_res, lmk, valid)

    def _identity_columns(
        self, pred: torch.Tensor, identity: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Identity similarity of each clip's frames to its identity image (per-clip columns)."""
        if self.csim is None or self.identity_model is None:
            raise RuntimeError("MetricSuite has no identity model")
        pred = pred[:, :: self.identity_frame_stride]  # frames 0, k, 2k, ... of each clip
        b, t = pred.shape[:2]
        ident = torch.as_tensor(self.identity_model(identity)).float().to(pred.device)
        frames = torch.as_tensor(self.identity_model(pred.flatten(0, 1))).float().to(pred.device)
        self.csim.update(ident, frames.view(b, t, -1))
        counts = self.csim.batch_counts
        return {
            self.identity_key: self.csim.batch_values,
            "csim_frames_scored": counts[:, 0],
            "csim_frames_failed": counts[:, 1],
        }

    @torch.no_grad()
    def sample_lse_c(self, samples: torch.Tensor, waveform: torch.Tensor) -> torch.Tensor:
        """LSE-C of every sample: ``B,K,T,3,H,W`` + ``B,S`` waveform -> ``B,K`` float64, scored
        exactly as :meth:`update` scores ``pred`` (same SyncNet, vshift, mode, crop box)."""
        if self.lse is None:
            raise ValueError("MetricSuite needs a syncnet for sample_lse_c")
        box = self._lse_crop_box(*samples.shape[-2:])
        b, k = samples.shape[:2]
        frames = samples.transpose(0, 1).flatten(0, 1)  # K*B clips, sample-major
        rows = lip_sync_errors(
            self.lse.syncnet,
            frames,
            waveform.repeat(k, 1),
            self.lse.vshift,
            self.lse.mode,
            self.lse.batch_size,
            box if box is not None else self.lse.crop_box,
            self.lse.channel_order,
        )
        return rows[:, 1].view(k, b).transpose(0, 1).contiguous()

    @torch.no_grad()
    def update_diversity(self, samples: torch.Tensor) -> None:
        """Score ``B,K,T,3,H,W`` samples for the same inputs (at the protocol resolution)."""
        if self.diversity is None:
            raise ValueError("MetricSuite(diversity=True) is needed for update_diversity")
        b, k = samples.shape[:2]
        resized = _resize(samples.flatten(0, 1), self.protocol.resolution)
        self.diversity.update(resized.view(b, k, *resized.shape[1:]))

    def compute(self) -> dict[str, float]:
        """Every enabled score, reduced over processes; NaN for a score that saw no clip."""
        out: dict[str, float] = {
            "psnr": float(self.psnr.compute()),
            "ssim": float(self.ssim.compute()),
        }
        if self.lpips is not None:
            out["lpips"] = float(self.lpips.compute())
        if self.cpbd is not None:
            out["cpbd"] = float(self.cpbd.compute())
        if self.lmd is not None:
            out["lmd"] = float(self.lmd.compute())
            counts = self.lmd.counts()
            out["lmd_frames_scored"] = counts["frames_scored"]
            out["lmd_frames_failed"] = counts["frames_failed"]
            out["lmd_clips_unscored"] = counts["clips_unscored"]
        if self.lse is not None:
            lse = self.lse.compute()
            out["lse_d"] = float(lse["lse_d"])
            out["lse_c"] = float(lse["lse_c"])
            out["lse_offset"] = float(lse["offset"])
            out["lse_abs_offset"] = float(lse["abs_offset"])
        if self.naturalness is not None:
            out.update(self.naturalness.compute())
        if self.regions is not None:
            out.update(self.regions.compute())
        if self.fid is not None:
            out["fid"] = float(self.fid.compute())
            counts = self.fid.counts()
            out["fid_frames"], out["fid_clips"] = counts["frames"], counts["clips"]
        if self.csim is not None:
            out[self.identity_key] = float(self.csim.compute())
            counts = self.csim.counts()
            out["csim_frames_scored"] = counts["frames_scored"]
            out["csim_frames_failed"] = counts["frames_failed"]
            out["csim_clips_unscored"] = counts["clips_unscored"]
        if self.diversity is not None:
            for key, value in self.diversity.compute().items():
                out[f"diversity_{key}"] = float(value)
        with self.psnr.sync_context():
            out["clips"] = int(self.psnr.clips)
        return out

    def per_clip(self) -> list[dict[str, Any]]:
        """One row per clip scored by this process: ``clip_id`` and each per-clip score."""
        return [dict(row) for row in self._rows]

    def higher_is_better(self) -> dict[str, bool | None]:
        """Direction of each key of :meth:`compute` (for sorting a leaderboard)."""
        return dict(HIGHER_IS_BETTER)

    def reset(self) -> None:
        """Forget every score and row (e.g. between validation epochs)."""
        for metric in (
            self.psnr,
            self.ssim,
            self.lpips,
            self.cpbd,
            self.lmd,
            self.lse,
            self.csim,
            self.naturalness,
            self.regions,
            self.fid,
            self.diversity,
        ):
            if metric is not None:
                metric.reset()
        self._rows = []
