"""Landmark distance (LMD, Chen et al. ECCV 2018) on the mouth.

Landmarks of generated frames (a landmark model run by the metric suite) and of the target frames
(``batch["landmarks"]``, crop pixels) -> mouth points 48-67 of the iBUG 68-point layout ->
per-frame distance -> mean over the clip's scored frames -> :class:`LandmarkDistance` (mean over
clips) -> results JSON with the count of frames that could not be scored.

Variants (``variant``), all in the pixels of the landmarks given (the suite rescales them to the
protocol's resolution, 128 px by default):

- ``"default"``: each frame's 20 mouth points centred on their own mean (for both clips), the
  Euclidean distance of each point, averaged over the 20 points;
- ``"chen2018"``: centred as above, distances summed over the points (the authors' code);
- ``"uncentred"``: raw positions, averaged over the points.

A frame is scored only when both landmark sets are valid (the mask says so and the points are
finite). Frames that are not are counted as failures, never dropped silently; a clip with no
scored frame has no LMD (NaN in its per-clip value) and is left out of the clip mean.
"""

from __future__ import annotations

import torch

from talking_faces.config.choices import Choice
from talking_faces.metrics.exact import FrameScoredMean

MOUTH = slice(48, 68)


class LMDVariant(Choice):
    """The LMD definition (a config choice)."""

    default = "default"
    chen2018 = "chen2018"
    uncentred = "uncentred"


LMD_VARIANTS = LMDVariant.names()


def frame_landmark_distance(
    pred_mouth: torch.Tensor, true_mouth: torch.Tensor, variant: str = "default"
) -> torch.Tensor:
    """``...,P,2`` point sets -> ``...`` per-frame LMD under ``variant`` (float64)."""
    if variant not in LMD_VARIANTS:
        raise ValueError(f"LMD variant must be one of {LMD_VARIANTS}, got {variant!r}")
    p, q = pred_mouth.double(), true_mouth.double()
    if variant in ("default", "chen2018"):
        p = p - p.mean(-2, keepdim=True)
        q = q - q.mean(-2, keepdim=True)
    per_point = torch.linalg.vector_norm(p - q, dim=-1)
    return per_point.sum(-1) if variant == "chen2018" else per_point.mean(-1)


def landmark_distance(
    pred_lmk: torch.Tensor,
    true_lmk: torch.Tensor,
    pred_valid: torch.Tensor | None = None,
    true_valid: torch.Tensor | None = None,
    variant: str = "default",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-clip mouth LMD.

    Args:
        pred_lmk, true_lmk: ``B,T,68,2`` landmarks (x, y) in pixels.
        pred_valid, true_valid: ``B,T`` bool, whether each frame's landmarks were found (default
            all); non-finite landmarks also count as not found.
        variant: ``"default"``, ``"chen2018"`` or ``"uncentred"``.

    Returns:
        ``per_clip`` ``B,`` float64 (mean over scored frames; NaN where none), ``frames_scored``
        ``B,`` long, ``frames_failed`` ``B,`` long (``T - frames_scored``).

    >>> lmk = torch.zeros(1, 2, 68, 2)
    >>> moved = lmk.clone(); moved[..., 48, 0] = 20.0
    >>> per_clip, scored, failed = landmark_distance(moved, lmk, variant="uncentred")
    >>> float(per_clip[0]), int(scored[0]), int(failed[0])
    (1.0, 2, 0)
    """
    if pred_lmk.shape != true_lmk.shape or pred_lmk.ndim != 4 or pred_lmk.shape[-2:] != (68, 2):
        raise ValueError(
            f"landmarks must both be B,T,68,2; got {tuple(pred_lmk.shape)} and "
            f"{tuple(true_lmk.shape)}"
        )
    b, t = pred_lmk.shape[:2]
    ones = torch.ones(b, t, dtype=torch.bool, device=pred_lmk.device)
    pred_ok = ones if pred_valid is None else pred_valid.to(pred_lmk.device, torch.bool)
    true_ok = ones if true_valid is None else true_valid.to(pred_lmk.device, torch.bool)
    pred_mouth, true_mouth = pred_lmk[..., MOUTH, :], true_lmk[..., MOUTH, :]
    scored = (
        pred_ok
        & true_ok
        & torch.isfinite(pred_mouth).flatten(2).all(-1)
        & torch.isfinite(true_mouth).flatten(2).all(-1)
    )
    # Zero the unscored frames first so that NaN landmarks cannot leak into the sum.
    mask = scored[..., None, None]
    per_frame = frame_landmark_distance(
        torch.where(mask, pred_mouth, 0.0), torch.where(mask, true_mouth, 0.0), variant
    )
    n_scored = scored.sum(1)
    total = torch.where(scored, per_frame, 0.0).sum(1)
    per_clip = torch.where(n_scored > 0, total / n_scored.clamp(min=1), float("nan"))
    return per_clip, n_scored, t - n_scored


class LandmarkDistance(FrameScoredMean):
    """Mouth LMD: frame mean within each clip, then mean over the clips that have scored frames.

    ``update(pred_lmk B,T,68,2, true_lmk B,T,68,2, pred_valid B,T, true_valid B,T)``.
    ``compute()`` -> mean LMD. States (all ``sum``-reduced): ``total`` (sum of clip means),
    ``clips`` (clips with a score), ``frames_scored``, ``failures`` (frames not scored),
    ``clips_unscored``; :meth:`counts` returns the last three, reduced across processes.
    ``batch_values`` holds the latest update's per-clip ``B,`` values (local).
    """

    higher_is_better = False

    def __init__(self, variant: str = "default", **kwargs) -> None:
        super().__init__(**kwargs)
        if variant not in LMD_VARIANTS:
            raise ValueError(f"LMD variant must be one of {LMD_VARIANTS}, got {variant!r}")
        self.variant = variant

    def update(
        self,
        pred_lmk: torch.Tensor,
        true_lmk: torch.Tensor,
        pred_valid: torch.Tensor | None = None,
        true_valid: torch.Tensor | None = None,
    ) -> None:
        self._record(*landmark_distance(pred_lmk, true_lmk, pred_valid, true_valid, self.variant))
