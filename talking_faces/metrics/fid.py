"""FID on video frames: torchmetrics' ``FrechetInceptionDistance`` over the generated and target
frames of every scored clip.

Generated and target clips ``B,T,3,H,W`` in [0, 1] -> every ``frame_stride``-th frame of each clip
-> uint8 (``round(255 x)``) -> the FID Inception v3 (torch-fidelity's
``FeatureExtractorInceptionV3`` inside torchmetrics, 299x299, its 2048-d pool features by
default) -> float64 sums of the features
and of their outer products, target frames as the real set, generated ones as the fake set ->
:class:`VideoFID` ``compute()`` (the Fréchet distance of the two Gaussians, float64) and
``counts()`` (frames and clips seen) -> results JSON.

FID is one number for the whole evaluation set, not a mean of per-clip scores, and it is biased
upwards at small sample counts (the covariance of N frames has rank N - 1 < 2048 below 2049
frames), so the results record how many frames and clips it saw.

The weights are the standard FID Inception (the TensorFlow 2015-12-05 graph converted by
torch-fidelity) from the torch hub cache, ``torch.hub.get_dir()/checkpoints/`` +
:data:`INCEPTION_FILENAME` (what torch-fidelity downloads) or :data:`PYTORCH_FID_FILENAME`
(pytorch-fid's name for the same weights). Nothing is downloaded: without the file it is a
one-line :class:`~talking_faces.errors.MissingWeightsError` naming the file, the folder and the
URL. torch-fidelity reads the file with ``torch.load(weights_only=False)``, which can run code
stored in it, so the file is read here with ``weights_only=True`` and only the tensors it holds
reach torch-fidelity (re-serialised in memory).

Across DDP processes the states are float64 sums reduced with ``sum``: unlike the
:class:`~talking_faces.metrics.exact.ExactSums` metrics, one process and N processes add the same
terms in different orders, so FID agrees between them to rounding only (tests/test_metrics_fid.py
measures it), not to the last bit.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import Any, cast

import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from talking_faces.errors import MissingWeightsError, UserError

#: the FID Inception weights as torch-fidelity (and so torchmetrics) downloads them
INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
#: the same weights under pytorch-fid's name (same sha256 prefix), also looked for
PYTORCH_FID_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILENAME
)
#: the feature layers torchmetrics' Inception offers (2048: the pool features of standard FID)
FEATURE_LAYERS = (64, 192, 768, 2048)
#: frames per Inception forward pass (each is 3x299x299 after the resize)
FRAMES_PER_PASS = 32


def inception_weights_path() -> Path:
    """The FID Inception file in the torch hub cache: torch-fidelity's name if that file is there,
    else pytorch-fid's if that one is, else torch-fidelity's (missing)."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for name in (INCEPTION_FILENAME, PYTORCH_FID_FILENAME):
        if (folder / name).is_file():
            return folder / name
    return folder / INCEPTION_FILENAME


def read_inception_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict, sha256 of the file)``, read with ``weights_only=True``.

    Raises:
        MissingWeightsError: the file does not exist (one line: the file, folder and URL).
        UserError: the file holds anything but a dict of tensors.
    """
    if not path.is_file():
        raise MissingWeightsError(
            f"FID Inception weights not found: {path}; download {INCEPTION_URL} into "
            f"{path.parent} (or set TORCH_HOME to the folder whose hub/checkpoints holds "
            f"{INCEPTION_FILENAME})"
        )
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path} is not a plain state dict (read with weights_only=True: {reason}); download "
            f"{INCEPTION_URL} into {path.parent} again"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state dict of tensors; download {INCEPTION_URL} again")
    return state, sha256


def _as_buffer(state: dict[str, torch.Tensor]) -> io.BytesIO:
    """``state`` serialised in memory: tensors only, so torch-fidelity's unrestricted
    ``torch.load`` of it unpickles nothing but what :func:`read_inception_state` let through."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Frames in [0, 1] -> uint8 ``round(255 x)`` (torchmetrics' ``normalize=True`` truncates, so
    a frame read as ``k / 255`` in float32 could come back as ``k - 1``)."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8)


class VideoFID(FrechetInceptionDistance):
    """FID between the generated frames and the target frames of every scored clip.

    ``update(preds B,T,3,H,W, target B,T,3,H,W)`` in [0, 1]; ``compute()`` -> 0-d float64 FID
    (NaN while either side has fewer than 2 frames); ``counts()`` -> ``{"frames", "clips"}``
    (frames per side, over all processes). The file read is on the metric as ``weights_path``
    and ``weights_sha256``; :meth:`describe` gives them with the settings that change the number.

    Args:
        feature: Inception layer whose features are compared (:data:`FEATURE_LAYERS`; 2048 is the
            standard FID).
        frame_stride: score every ``frame_stride``-th frame of each clip (frames 0, k, 2k, ...).
        antialias: resize to 299x299 with antialiasing (torchmetrics' default) instead of
            torch-fidelity's TensorFlow-1 compatible bilinear resize, which reproduces the
            reference FID and is the default here.
        path: the weights file (default :func:`inception_weights_path`).
        kwargs: :class:`torchmetrics.Metric` options.

    Raises:
        MissingWeightsError: the weights file is not there (one line).
        UserError: the file is not the FID Inception's state dict, or torch-fidelity is missing.
    """

    frames: torch.Tensor
    clips: torch.Tensor

    def __init__(
        self,
        feature: int = 2048,
        frame_stride: int = 1,
        antialias: bool = False,
        path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if feature not in FEATURE_LAYERS:
            raise UserError(f"FID feature must be one of {FEATURE_LAYERS}, got {feature!r}")
        if frame_stride < 1:
            raise UserError(f"FID frame_stride must be at least 1, got {frame_stride}")
        file = Path(path) if path is not None else inception_weights_path()
        state, sha256 = read_inception_state(file)
        buffer = _as_buffer(state)
        del state
        try:
            # torch-fidelity passes the "path" to torch.load, which reads a file object as well
            super().__init__(
                feature=feature,
                normalize=False,
                feature_extractor_weights_path=cast(str, buffer),
                antialias=antialias,
                **kwargs,
            )
        except ModuleNotFoundError as exc:
            raise UserError(
                f"FID needs torch-fidelity ({exc}); reinstall: pip install -e ."
            ) from None
        except RuntimeError as exc:  # load_state_dict(strict=True): wrong keys or shapes
            reason = " ".join(str(exc).split())[:240]
            raise UserError(
                f"{file} is not the FID Inception's state dict ({reason}); download "
                f"{INCEPTION_URL} into {file.parent}"
            ) from None
        self.feature, self.frame_stride, self.antialias = feature, frame_stride, antialias
        self.weights_path, self.weights_sha256 = file, sha256
        self.orig_dtype = torch.float64  # compute() in float64, also on a process that saw nothing
        self.add_state("frames", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("clips", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        """Add every ``frame_stride``-th frame of each generated clip (fake) and target (real)."""
        if preds.shape != target.shape or preds.ndim != 5 or preds.shape[2] != 3:
            raise ValueError(
                f"preds and target must both be B,T,3,H,W; got {tuple(preds.shape)} and "
                f"{tuple(target.shape)}"
            )
        fake = preds[:, :: self.frame_stride].flatten(0, 1)
        real = target[:, :: self.frame_stride].flatten(0, 1)
        for start in range(0, fake.shape[0], FRAMES_PER_PASS):
            part = slice(start, start + FRAMES_PER_PASS)
            super().update(to_uint8(real[part]), real=True)
            super().update(to_uint8(fake[part]), real=False)
        self.orig_dtype = torch.float64  # torchmetrics sets it to the features' float32
        self.frames += fake.shape[0]
        self.clips += preds.shape[0]

    def compute(self) -> torch.Tensor:
        """The FID of the generated frames against the target frames (0-d float64)."""
        if self.real_features_num_samples < 2 or self.fake_features_num_samples < 2:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return super().compute()

    def counts(self) -> dict[str, int]:
        """``frames`` (per side) and ``clips`` scored, over all processes."""
        with self.sync_context():
            return {"frames": int(self.frames), "clips": int(self.clips)}

    def describe(self) -> dict[str, Any]:
        """What the results record about this FID: weights file, its sha256 and the settings."""
        return {
            "kind": "inception-v3-fid",
            "path": str(self.weights_path),
            "sha256": self.weights_sha256,
            "feature": self.feature,
            "frame_stride": self.frame_stride,
            "antialias": self.antialias,
        }


__all__ = [
    "FEATURE_LAYERS",
    "INCEPTION_FILENAME",
    "INCEPTION_URL",
    "PYTORCH_FID_FILENAME",
    "VideoFID",
    "inception_weights_path",
    "read_inception_state",
    "to_uint8",
]
