"""Region metrics from the real clip's landmarks: does a method keep the face outside the mouth
(the eyes and brows above all), and does its mouth show teeth where the real one does?

Generated and real frames ``B,T,3,H,W`` in [0,1] + the real clip's 68 iBUG landmarks ``B,T,68,2``
in those frames' pixels (pixel centres at integers) [+ a ``B,T`` valid mask] -> per frame, boxes
and a polygon from the real landmarks, used for both frames (:func:`region_masks`,
:func:`inner_mouth_mask`) -> one value per clip -> mean over the clips that could be scored
(:class:`FaceL1OutsideMouth`, :class:`EyesL1`, :class:`TeethVisible`) -> results JSON.

- ``face_l1_outside_mouth``: the mean absolute error (all 3 channels) over the face box (the box
  of the 68 points, each side pushed out by :data:`FACE_MARGIN` of its size) less the mouth box
  (points 48-67, each side pushed out by :data:`MOUTH_MARGIN` of its size, so the lip edges do not
  count); mean over the clip's frames. Lower is better;
- ``eyes_l1``: the same over the eyes-and-brows box (points 17-26 and 36-47, each side pushed out
  by :data:`EYES_MARGIN`). Lower is better;
- ``teeth_visible``: a frame *shows teeth* when more than :data:`TEETH_MIN_SHARE` of the pixels
  inside the real inner-mouth polygon (points 60-67) are tooth-like: luma (BT.601) at least
  :data:`TOOTH_MIN_LUMA` and saturation ``(max - min) / max`` of the RGB at most
  :data:`TOOTH_MAX_SATURATION` (lips and the mouth's inside are saturated, teeth are not); per
  clip, the share of the frames whose real frame shows teeth in which the generated one does too
  (a recall). A clip whose real frames never show teeth has no value. Higher is better; the
  ground truth scores 1.

A frame counts when its landmarks are valid and finite and its region has a pixel in the frame;
a clip without a counted frame has no value (NaN per clip), left out of the mean and counted in
``clips_unscored``. The rule and its thresholds were calibrated on the synthetic corpus against
its renderer (docs/metrics.md, "Region metrics").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from talking_faces.metrics.exact import ClipMean

#: iBUG 68-point indices (0-based)
FACE_POINTS = tuple(range(68))
MOUTH_POINTS = tuple(range(48, 68))
EYES_BROWS_POINTS = (*range(17, 27), *range(36, 48))
INNER_MOUTH_POINTS = tuple(range(60, 68))
#: each side of a box is pushed out by this share of the box's width (x) or height (y)
FACE_MARGIN = 0.05
MOUTH_MARGIN = 0.25
EYES_MARGIN = 0.15
#: a tooth-like pixel: BT.601 luma at least this (frames in [0, 1]) ...
TOOTH_MIN_LUMA = 0.5
#: ... and RGB saturation ``(max - min) / max`` at most this
TOOTH_MAX_SATURATION = 0.3
#: a frame shows teeth when more than this share of its inner-mouth pixels are tooth-like
TEETH_MIN_SHARE = 0.1
_LUMA = (0.299, 0.587, 0.114)


# ------------------------------------------------------------------------------------- masks


def _check(landmarks: Tensor, valid: Tensor | None) -> Tensor:
    """``B,T,68,2`` (+ ``B,T`` valid) -> ``B,T`` bool: valid frames with every point finite."""
    if landmarks.ndim != 4 or landmarks.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must be B,T,68,2; got {tuple(landmarks.shape)}")
    ok = torch.isfinite(landmarks).flatten(2).all(-1)
    if valid is not None:
        if valid.shape != landmarks.shape[:2]:
            raise ValueError(
                f"valid must be B,T = {tuple(landmarks.shape[:2])}; got {tuple(valid.shape)}"
            )
        ok = ok & valid.to(landmarks.device, torch.bool)
    return ok


def _box_mask(points: Tensor, margin: float, height: int, width: int) -> Tensor:
    """``N,P,2`` points -> ``N,H,W`` bool: the pixels whose centres lie in the points' box, each
    side pushed out by ``margin`` of the box's size."""
    lo, hi = points.amin(1), points.amax(1)  # N,2
    pad = (hi - lo) * margin
    lo, hi = lo - pad, hi + pad
    xs = torch.arange(width, device=points.device, dtype=points.dtype)
    ys = torch.arange(height, device=points.device, dtype=points.dtype)
    in_x = (xs >= lo[:, None, 0:1]) & (xs <= hi[:, None, 0:1])  # N,1,W
    in_y = (ys[:, None] >= lo[:, None, 1:2]) & (ys[:, None] <= hi[:, None, 1:2])  # N,H,1
    return in_x & in_y


def _points(landmarks: Tensor, points: Sequence[int]) -> Tensor:
    index = torch.as_tensor(points, dtype=torch.long, device=landmarks.device)
    return landmarks.index_select(-2, index)


def region_masks(landmarks: Tensor, height: int, width: int) -> dict[str, Tensor]:
    """``...,68,2`` landmarks (pixels, centres at integers) -> ``...,H,W`` bool masks:
    ``face_outside_mouth`` (the face box less the mouth box) and ``eyes`` (the eyes-and-brows
    box). Non-finite landmarks give empty masks.

    >>> lmk = torch.zeros(68, 2)
    >>> lmk[:, 0] = torch.linspace(2, 13, 68); lmk[:, 1] = torch.linspace(2, 13, 68)
    >>> m = region_masks(lmk, 16, 16)  # 68 points on the diagonal, the mouth at its low end
    >>> face, eyes = m["face_outside_mouth"], m["eyes"]
    >>> bool(face[3, 3]), bool(face[12, 12]), bool(eyes[7, 7]), bool(eyes[3, 3])
    (True, False, True, False)
    """
    lead = landmarks.shape[:-2]
    x = landmarks.reshape(-1, 68, 2).double()
    ok = torch.isfinite(x).flatten(1).all(-1)
    x = torch.where(ok[:, None, None], x, 0.0)
    face = _box_mask(_points(x, FACE_POINTS), FACE_MARGIN, height, width)
    mouth = _box_mask(_points(x, MOUTH_POINTS), MOUTH_MARGIN, height, width)
    eyes = _box_mask(_points(x, EYES_BROWS_POINTS), EYES_MARGIN, height, width)
    keep = ok[:, None, None]
    return {
        "face_outside_mouth": (face & ~mouth & keep).view(*lead, height, width),
        "eyes": (eyes & keep).view(*lead, height, width),
    }


def inner_mouth_mask(landmarks: Tensor, height: int, width: int) -> Tensor:
    """``...,68,2`` landmarks -> ``...,H,W`` bool: the pixels whose centres lie inside the
    inner-lip polygon (points 60-67; even-odd rule, so a closed mouth's flat polygon has
    none). Non-finite landmarks give an empty mask.

    >>> lmk = torch.zeros(68, 2)
    >>> octagon = [[2, 4], [4, 2], [6, 2], [8, 2], [10, 4], [8, 6], [6, 6], [4, 6]]
    >>> lmk[60:68] = torch.tensor(octagon, dtype=torch.float32)
    >>> inner_mouth_mask(lmk, 8, 12).sum(-1).tolist()  # pixel centres inside, per row
    [0, 0, 4, 6, 8, 6, 0, 0]
    """
    lead = landmarks.shape[:-2]
    poly = _points(landmarks.reshape(-1, 68, 2).double(), INNER_MOUTH_POINTS)  # N,8,2
    ok = torch.isfinite(poly).flatten(1).all(-1)
    poly = torch.where(ok[:, None, None], poly, 0.0)
    ys = torch.arange(height, device=poly.device, dtype=poly.dtype)[:, None]  # H,1
    xs = torch.arange(width, device=poly.device, dtype=poly.dtype)  # W
    inside = torch.zeros(poly.shape[0], height, width, dtype=torch.bool, device=poly.device)
    n = poly.shape[1]
    for k in range(n):
        x0, y0 = poly[:, k, 0, None, None], poly[:, k, 1, None, None]
        x1, y1 = poly[:, (k + 1) % n, 0, None, None], poly[:, (k + 1) % n, 1, None, None]
        crosses = (y0 > ys) != (y1 > ys)  # N,H,1: the edge spans the pixel row
        dy = torch.where(y1 == y0, 1.0, y1 - y0)
        inside ^= crosses & (xs < x0 + (ys - y0) * (x1 - x0) / dy)
    return (inside & ok[:, None, None]).view(*lead, height, width)


def tooth_like(frames: Tensor) -> Tensor:
    """``...,3,H,W`` in [0,1] -> ``...,H,W`` bool: luma >= :data:`TOOTH_MIN_LUMA` and saturation
    <= :data:`TOOTH_MAX_SATURATION` (the synthetic renderer's teeth are (236, 232, 220)).

    >>> px = torch.tensor([[236, 232, 220], [62, 18, 24], [190, 124, 115]]) / 255.0
    >>> tooth_like(px.T[:, None, :]).tolist()  # teeth, the mouth's inside, a lip
    [[True, False, False]]
    """
    x = frames.double()
    luma = sum(w * x[..., c, :, :] for c, w in enumerate(_LUMA))
    hi, lo = x.amax(-3), x.amin(-3)
    saturation = (hi - lo) / hi.clamp_min(1e-6)
    return (luma >= TOOTH_MIN_LUMA) & (saturation <= TOOTH_MAX_SATURATION)


def teeth_share(frames: Tensor, landmarks: Tensor) -> Tensor:
    """``B,T,3,H,W`` frames + ``B,T,68,2`` landmarks -> ``B,T`` float64: the share of the
    inner-mouth polygon's pixels that are tooth-like (0 where the polygon has no pixel)."""
    b, t, _, h, w = frames.shape
    out = torch.zeros(b, t, dtype=torch.float64, device=frames.device)
    for i in range(b):  # one clip at a time: T,H,W masks
        mask = inner_mouth_mask(landmarks[i].to(frames.device), h, w)
        pixels = mask.flatten(1).sum(1)
        teeth = (tooth_like(frames[i]) & mask).flatten(1).sum(1)
        out[i] = torch.where(pixels > 0, teeth / pixels.clamp_min(1), 0.0)
    return out


def shows_teeth(frames: Tensor, landmarks: Tensor) -> Tensor:
    """``B,T,3,H,W`` frames + ``B,T,68,2`` landmarks -> ``B,T`` bool: more than
    :data:`TEETH_MIN_SHARE` of the inner-mouth pixels are tooth-like."""
    return teeth_share(frames, landmarks) > TEETH_MIN_SHARE


# ----------------------------------------------------------------------------- functional forms


def _shapes(pred: Tensor, target: Tensor, landmarks: Tensor) -> None:
    if pred.ndim != 5 or pred.shape != target.shape or pred.shape[2] != 3:
        raise ValueError(
            f"pred and target must be equal B,T,3,H,W; got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if landmarks.shape[:2] != pred.shape[:2]:
        raise ValueError(
            f"landmarks must be B,T = {tuple(pred.shape[:2])},68,2; got {tuple(landmarks.shape)}"
        )


def _region_l1(
    region: str, pred: Tensor, target: Tensor, landmarks: Tensor, valid: Tensor | None
) -> Tensor:
    _shapes(pred, target, landmarks)
    ok = _check(landmarks, valid).to(pred.device)
    b, _, _, h, w = pred.shape
    out = torch.empty(b, dtype=torch.float64)
    for i in range(b):
        mask = region_masks(landmarks[i].to(pred.device), h, w)[region]  # T,H,W
        err = (pred[i].double() - target[i].double()).abs().mean(1)  # T,H,W
        pixels = mask.flatten(1).sum(1)
        counted = ok[i] & (pixels > 0)
        if not bool(counted.any()):
            out[i] = math.nan
            continue
        per_frame = (err * mask).flatten(1).sum(1) / pixels.clamp_min(1)
        out[i] = per_frame[counted].mean()
    return out


def face_l1_outside_mouth(
    pred: Tensor, target: Tensor, landmarks: Tensor, valid: Tensor | None = None
) -> Tensor:
    """Per-clip mean absolute error over the face outside the mouth.

    Args:
        pred, target: ``B,T,3,H,W`` in [0,1], generated and real frames.
        landmarks: ``B,T,68,2`` the real frames' points (x, y) in their pixels.
        valid: ``B,T`` bool, whether each frame's landmarks were found (default all).

    Returns:
        ``B,`` float64; NaN for a clip without a counted frame.

    >>> lmk = torch.zeros(1, 2, 68, 2)
    >>> lmk[..., 0] = torch.linspace(2, 13, 68); lmk[..., 1] = torch.linspace(2, 13, 68)
    >>> real = torch.rand(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> face_l1_outside_mouth(real, real, lmk).tolist()
    [0.0]
    >>> round(face_l1_outside_mouth(real + 0.25, real, lmk).item(), 6)  # 0.25 everywhere
    0.25
    """
    return _region_l1("face_outside_mouth", pred, target, landmarks, valid)


def eyes_l1(pred: Tensor, target: Tensor, landmarks: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-clip mean absolute error over the eyes-and-brows box (points 17-26, 36-47).

    Args and returns as :func:`face_l1_outside_mouth`.
    """
    return _region_l1("eyes", pred, target, landmarks, valid)


def teeth_visible(
    pred: Tensor, target: Tensor, landmarks: Tensor, valid: Tensor | None = None
) -> Tensor:
    """Per-clip share of the frames whose real frame shows teeth (:func:`shows_teeth`) in which
    the generated frame shows teeth too (both judged inside the real inner-mouth polygon).

    Args and arguments as :func:`face_l1_outside_mouth`.

    Returns:
        ``B,`` float64; NaN for a clip whose counted real frames never show teeth.
    """
    _shapes(pred, target, landmarks)
    ok = _check(landmarks, valid).to(pred.device)
    real = shows_teeth(target, landmarks) & ok
    gen = shows_teeth(pred, landmarks) & real
    frames = real.sum(1).double()
    out = gen.sum(1).double() / frames
    return torch.where(frames > 0, out, math.nan).cpu()


# ---------------------------------------------------------------------------- metric classes


class FaceL1OutsideMouth(ClipMean):
    """:func:`face_l1_outside_mouth`, mean over clips. ``update(pred B,T,3,H,W, target, landmarks
    B,T,68,2, valid B,T | None)``; lower is better.

    >>> m = FaceL1OutsideMouth()
    >>> frames, lost = torch.zeros(1, 2, 3, 8, 8), torch.full((1, 2, 68, 2), float("nan"))
    >>> m.update(frames, frames, lost)  # no face found: the clip is not scored
    >>> m.compute().isnan().item(), m.counts()
    (True, {'clips_scored': 0, 'clips_unscored': 1})
    """

    higher_is_better = False

    def update(
        self, pred: Tensor, target: Tensor, landmarks: Tensor, valid: Tensor | None = None
    ) -> None:
        self._update(face_l1_outside_mouth(pred, target, landmarks, valid))


class EyesL1(ClipMean):
    """:func:`eyes_l1`, mean over clips (``update`` as :class:`FaceL1OutsideMouth`); lower is
    better."""

    higher_is_better = False

    def update(
        self, pred: Tensor, target: Tensor, landmarks: Tensor, valid: Tensor | None = None
    ) -> None:
        self._update(eyes_l1(pred, target, landmarks, valid))


class TeethVisible(ClipMean):
    """:func:`teeth_visible`, mean over the clips whose real frames show teeth (``update`` as
    :class:`FaceL1OutsideMouth`); higher is better, the ground truth scores 1."""

    higher_is_better = True

    def update(
        self, pred: Tensor, target: Tensor, landmarks: Tensor, valid: Tensor | None = None
    ) -> None:
        self._update(teeth_visible(pred, target, landmarks, valid))


class Regions(torch.nn.Module):
    """The three region metrics of the metric suite, behind one ``update`` / ``compute``.

    ``update(pred B,T,3,H,W, target, landmarks B,T,68,2 (the real frames', in their pixels),
    valid B,T | None)`` -> the batch's per-clip columns (:data:`KEYS`); ``compute()`` -> their
    means over the scored clips and ``teeth_clips_scored``.
    """

    KEYS = ("face_l1_outside_mouth", "eyes_l1", "teeth_visible")

    def __init__(self) -> None:
        super().__init__()
        self.face = FaceL1OutsideMouth()
        self.eyes = EyesL1()
        self.teeth = TeethVisible()

    def _parts(self) -> tuple[ClipMean, ...]:
        return (self.face, self.eyes, self.teeth)

    def update(
        self, pred: Tensor, target: Tensor, landmarks: Tensor, valid: Tensor | None = None
    ) -> dict[str, Tensor]:
        for m in self._parts():
            m.update(pred, target, landmarks, valid)
        return {key: m.batch_values for key, m in zip(self.KEYS, self._parts(), strict=True)}

    def compute(self) -> dict[str, float]:
        out = {key: float(m.compute()) for key, m in zip(self.KEYS, self._parts(), strict=True)}
        out["teeth_clips_scored"] = self.teeth.counts()["clips_scored"]
        return out

    def reset(self) -> None:
        for m in self._parts():
            m.reset()


def describe() -> dict[str, object]:
    """The conventions of the region metrics, for a resolved protocol's ``regions`` record."""
    return {
        "metrics": list(Regions.KEYS),
        "landmarks": "the real frames' (the LMD reference), at the protocol resolution",
        "margins": {"face": FACE_MARGIN, "mouth": MOUTH_MARGIN, "eyes": EYES_MARGIN},
        "teeth": {
            "min_luma": TOOTH_MIN_LUMA,
            "max_saturation": TOOTH_MAX_SATURATION,
            "min_share": TEETH_MIN_SHARE,
            "polygon": "inner lips 60-67 of the real frame",
        },
    }
