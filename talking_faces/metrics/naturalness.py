"""Naturalness (lip, head-motion and eyebrow dynamics) and silent-lip stability from landmarks,
after THEval (Chen et al., CVPR 2026), adapted to the iBUG 68-point layout.

68-point landmarks of a clip's frames ``B,T,68,2`` (the generated frames through the protocol's
landmark model; the ground-truth row's real frames the same way) [+ a per-frame silence mask,
:func:`silence_mask` of the clip's word alignment, or webrtcvad's
(:func:`talking_faces.data.silence.vad_silence_mask`) where the layout has none] -> one statistic
per clip -> mean over the clips that could be scored (:class:`LipDynamics`,
:class:`HeadMotionDynamics`, :class:`EyebrowDynamics`, :class:`SilentLipStability`) -> results
JSON; then, per comparison group, each method's mean against the ground-truth row's
(:func:`gt_normalised`) and the unweighted mean of the normalised metrics (:func:`final_score`);
both are torch-free arithmetic in :mod:`talking_faces.utils.normalise`, re-exported here (the
leaderboard imports them there).

Every length is divided by the inter-ocular distance (IOD): the distance between the outer eye
corners 36 and 45 of the same frame, so every value is scale-free (the same for a clip at 64 px
or 256 px). Angles are in degrees. A frame counts when its landmarks are valid (the mask says so),
all 68 points are finite and its IOD is at least 1e-3 (THEval's threshold); frame-to-frame
differences use only pairs of consecutive counted frames. A clip with no such pair (or, for
silent-lip stability, fewer than two counted silent frames) has no value (NaN per clip) and is
left out of the mean, counted in ``clips_unscored``.

- lip dynamics: per frame, the 190 pairwise distances of the mouth points 48-67 over IOD; their
  population standard deviation over the clip's frames, averaged over the 190 pairs;
- head-motion dynamics: per frame, roll (the angle of the line between the eye centres), yaw and
  pitch proxies (the angles ``atan(d / IOD)`` of the nose tip's horizontal and vertical offset
  ``d`` from the eyes' midpoint, in the de-rolled frame) and the translation of the rigid points
  (nose 27-35, eye corners 36, 39, 42, 45) over the clip's mean IOD; then THEval's
  ``sqrt(mean_a std(a) * mean_a var(diff a) + mean(var(tx), var(ty)))`` over the three angles;
- eyebrow dynamics: per frame and side, the distance from the brow's centroid (17-21, 22-26) to
  the eye centre over IOD; the mean absolute frame-to-frame change over both sides;
- silent-lip stability: in the silent frames, the mouth opening (the mean vertical gap of the
  inner-lip pairs 61-67, 62-66, 63-65 over IOD); the median absolute deviation of the openings
  from their mean (THEval's "silent MAD": lower is stiller).

Eye centres are the midpoints of each eye's two corners (36-39, 42-45), which blinks do not
move; THEval's eyelid-mesh centroids do. docs/metrics.md has the formulas and the adaptation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from talking_faces.data.silence import MIN_SILENCE_S as MIN_SILENCE_S
from talking_faces.data.silence import silence_mask as silence_mask
from talking_faces.metrics.exact import ClipMean
from talking_faces.utils.normalise import GT_EPSILON as GT_EPSILON
from talking_faces.utils.normalise import final_score as final_score
from talking_faces.utils.normalise import gt_normalised as gt_normalised

# iBUG 68-point indices (0-based); "first" = the eye or brow on the image's left
MOUTH = slice(48, 68)
BROWS = (slice(17, 22), slice(22, 27))
EYE_CORNERS = ((36, 39), (42, 45))
#: outer eye corners: the inter-ocular distance
IOD_POINTS = (36, 45)
NOSE_TIP = 30
#: points that move with the head only (nose, eye corners): what head translation follows
RIGID_POINTS = (*range(27, 36), 36, 39, 42, 45)
#: inner-lip pairs (upper, lower) whose vertical gap is the mouth opening
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
#: frames whose IOD is below this (in the landmarks' pixels) do not count (THEval's threshold)
MIN_IOD = 1e-3


# ------------------------------------------------------------------------- frames and geometry


def counted_frames(landmarks: Tensor, valid: Tensor | None = None) -> Tensor:
    """``B,T,68,2`` landmarks (+ ``B,T`` valid mask) -> ``B,T`` bool: the frames that count
    (valid, every point finite, IOD >= :data:`MIN_IOD`)."""
    if landmarks.ndim != 4 or landmarks.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must be B,T,68,2; got {tuple(landmarks.shape)}")
    ok = torch.isfinite(landmarks).flatten(2).all(-1)
    if valid is not None:
        if valid.shape != landmarks.shape[:2]:
            raise ValueError(
                f"valid must be B,T = {tuple(landmarks.shape[:2])}; got {tuple(valid.shape)}"
            )
        ok = ok & valid.to(landmarks.device, torch.bool)
    safe = torch.where(ok[..., None, None], landmarks.double(), 0.0)
    return ok & (_iod(safe) >= MIN_IOD)


def _iod(x: Tensor) -> Tensor:
    """``...,68,2`` -> ``...`` distance between the outer eye corners."""
    return torch.linalg.vector_norm(x[..., IOD_POINTS[0], :] - x[..., IOD_POINTS[1], :], dim=-1)


def _eye_centres(x: Tensor) -> tuple[Tensor, Tensor]:
    """``T,68,2`` -> the two eye centres ``T,2`` (midpoints of each eye's corners)."""
    (a0, a1), (b0, b1) = EYE_CORNERS
    return (x[:, a0] + x[:, a1]) / 2, (x[:, b0] + x[:, b1]) / 2


def _rows(values: Tensor, mask: Tensor) -> Tensor:
    """``values[mask]`` for a ``T`` bool mask, through ``index_select`` (boolean indexing of a
    3-d tensor costs milliseconds on CPU)."""
    return values.index_select(0, mask.nonzero().squeeze(1))


def _take(x: Tensor, points: Sequence[int] | Tensor) -> Tensor:
    """``N,68,2`` -> ``N,P,2`` the points ``points`` (``index_select``: tensor indexing of a
    point list is far slower on CPU)."""
    return x.index_select(1, torch.as_tensor(points, dtype=torch.long, device=x.device))


def _steps(signal: Tensor, ok: Tensor) -> Tensor:
    """``T,...`` per-frame values -> ``P,...`` changes between consecutive counted frames."""
    pairs = ok[:-1] & ok[1:]
    return _rows(signal[1:] - signal[:-1], pairs)


def _from_first(values: Tensor) -> Tensor:
    """``N,...`` -> the same less the first row: a spread about the mean is unchanged, and the
    values of a still face become exact zeros (so their mean is exactly 0, not a rounding)."""
    return values - values[:1]


def _per_clip(
    clip_fn: Callable[[Tensor, Tensor], float],
    landmarks: Tensor,
    valid: Tensor | None,
    extra: Tensor | None = None,
) -> Tensor:
    """Run ``clip_fn(T,68,2 float64 landmarks, T counted mask)`` on each clip -> ``B,`` float64.

    ``extra`` (``B,T`` bool) narrows the counted frames (the silence mask)."""
    ok = counted_frames(landmarks, valid)
    if extra is not None:
        if extra.shape != ok.shape:
            raise ValueError(f"silence must be B,T = {tuple(ok.shape)}; got {tuple(extra.shape)}")
        ok = ok & extra.to(ok.device, torch.bool)
    x = torch.where(ok[..., None, None], landmarks.double(), 0.0)
    values = [clip_fn(x[b], ok[b]) for b in range(x.shape[0])]
    return torch.tensor(values, dtype=torch.float64)


# ---------------------------------------------------------------------------- per-clip statistics


def _lip_clip(x: Tensor, ok: Tensor) -> float:
    if not bool((ok[:-1] & ok[1:]).any()):
        return math.nan
    frames = _rows(x, ok)
    mouth = frames[:, MOUTH]
    i, j = torch.triu_indices(mouth.shape[1], mouth.shape[1], offset=1, device=x.device)
    dist = torch.linalg.vector_norm(_take(mouth, i) - _take(mouth, j), dim=-1)
    dist = dist / _iod(frames)[:, None]
    return float(_from_first(dist).std(0, correction=0).mean())


def _brow_clip(x: Tensor, ok: Tensor) -> float:
    steps_of_sides = []
    iod = torch.where(ok, _iod(x), 1.0)
    for brow, eye in zip(BROWS, _eye_centres(x), strict=True):
        height = torch.linalg.vector_norm(x[:, brow].mean(1) - eye, dim=-1) / iod
        steps_of_sides.append(_steps(height, ok).abs())
    steps = torch.cat(steps_of_sides)
    return float(steps.mean()) if steps.numel() else math.nan


def _head_pose(x: Tensor, ok: Tensor) -> tuple[Tensor, Tensor]:
    """``T,68,2`` -> angles ``T,3`` (roll, yaw, pitch; degrees) and translation ``T,2`` (in the
    clip's mean IOD)."""
    first, second = _eye_centres(x)
    axis = second - first
    roll = torch.atan2(axis[:, 1], axis[:, 0])
    offset = x[:, NOSE_TIP] - (first + second) / 2
    cos, sin = torch.cos(roll), torch.sin(roll)
    along = cos * offset[:, 0] + sin * offset[:, 1]  # offset in the de-rolled frame
    across = -sin * offset[:, 0] + cos * offset[:, 1]
    iod = torch.where(ok, _iod(x), 1.0)
    angles = torch.stack([roll, torch.atan(along / iod), torch.atan(across / iod)], -1)
    translation = _take(x, RIGID_POINTS).mean(1) / _rows(iod, ok).mean()
    return torch.rad2deg(angles), translation


def _head_clip(x: Tensor, ok: Tensor) -> float:
    if not bool((ok[:-1] & ok[1:]).any()):
        return math.nan
    angles, translation = _head_pose(x, ok)
    spread = _from_first(_rows(angles, ok)).std(0, correction=0).mean()
    jerk = _steps(angles, ok).var(0, correction=0).mean()
    drift = _from_first(_rows(translation, ok)).var(0, correction=0).mean()
    return float(torch.sqrt(spread * jerk + drift))


def _silent_clip(x: Tensor, ok: Tensor) -> float:
    if int(ok.sum()) < 2:
        return math.nan
    frames = _rows(x, ok)
    upper, lower = zip(*INNER_LIP_PAIRS, strict=True)
    gap = (_take(frames, upper)[..., 1] - _take(frames, lower)[..., 1]).abs().mean(1)
    gap = _from_first(gap / _iod(frames))
    return float(torch.quantile((gap - gap.mean()).abs(), 0.5))


# ----------------------------------------------------------------------------- functional forms


def lip_dynamics(landmarks: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-clip lip dynamics (IOD units): how much the mouth's shape varies over the clip.

    Args:
        landmarks: ``B,T,68,2`` (x, y) in pixels.
        valid: ``B,T`` bool, whether each frame's landmarks were found (default all).

    Returns:
        ``B,`` float64; NaN for a clip without two consecutive counted frames.

    >>> face = torch.zeros(1, 4, 68, 2)
    >>> face[..., 45, 0] = 10.0  # outer eye corners 10 px apart
    >>> face[..., 48:68, 0] = torch.arange(20.0)  # a mouth
    >>> lip_dynamics(face).tolist()
    [0.0]
    >>> face[:, 1::2, 48:68, 0] *= 2  # every other frame twice as wide
    >>> round(lip_dynamics(face).item(), 6)
    0.35
    """
    return _per_clip(_lip_clip, landmarks, valid)


def head_motion_dynamics(landmarks: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-clip head-motion dynamics (degrees and IOD units, THEval's mix of the two).

    Args:
        landmarks: ``B,T,68,2`` (x, y) in pixels.
        valid: ``B,T`` bool (default all).

    Returns:
        ``B,`` float64; NaN for a clip without two consecutive counted frames.

    >>> face = torch.zeros(1, 4, 68, 2)
    >>> face[..., 42:46, 0] = 10.0  # one eye's corners 10 px right of the other's
    >>> head_motion_dynamics(face).tolist()
    [0.0]
    >>> face[:, 1::2, :, 0] += 3.0  # the head moves 0.3 IOD right and back
    >>> round(head_motion_dynamics(face).item(), 4)  # sqrt(var(tx) / 2): no rotation
    0.1061
    """
    return _per_clip(_head_clip, landmarks, valid)


def eyebrow_dynamics(landmarks: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-clip eyebrow dynamics (IOD units per frame): the mean absolute change of the
    brow-to-eye distance between consecutive frames, over both sides.

    Args:
        landmarks: ``B,T,68,2`` (x, y) in pixels.
        valid: ``B,T`` bool (default all).

    Returns:
        ``B,`` float64; NaN for a clip without two consecutive counted frames.

    >>> face = torch.zeros(1, 4, 68, 2)
    >>> face[..., 45, 0] = 10.0  # outer eye corners 10 px apart
    >>> face[..., 22:27, 0] = 5.0  # the second brow above the second eye's centre
    >>> face[..., 17:27, 1] = -3.0  # brows 3 px above the eyes
    >>> face[:, 1::2, 17:27, 1] = -4.0  # raised by 1 px every other frame
    >>> round(eyebrow_dynamics(face).item(), 6)
    0.1
    """
    return _per_clip(_brow_clip, landmarks, valid)


def silent_lip_mad(landmarks: Tensor, silence: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-clip silent-lip instability (IOD units): the median absolute deviation from their
    mean of the mouth openings in the silent frames (lower is stiller).

    Args:
        landmarks: ``B,T,68,2`` (x, y) in pixels.
        silence: ``B,T`` bool, the frames in a silence long enough to count (:func:`silence_mask`).
        valid: ``B,T`` bool (default all).

    Returns:
        ``B,`` float64; NaN for a clip with fewer than two counted silent frames.

    >>> face = torch.zeros(1, 6, 68, 2)
    >>> face[..., 45, 0] = 10.0  # outer eye corners 10 px apart
    >>> face[:, :, 65:68, 1] = torch.tensor([1.0, 1.0, 1.0, 3.0, 1.0, 1.0])[:, None]  # opening
    >>> silent = torch.ones(1, 6, dtype=torch.bool)
    >>> round(silent_lip_mad(face, silent).item(), 6)  # openings 0.1 (x5), 0.3: MAD 1/30
    0.033333
    """
    return _per_clip(_silent_clip, landmarks, valid, silence)


# ---------------------------------------------------------------------------- metric classes


class LipDynamics(ClipMean):
    """Lip dynamics (:func:`lip_dynamics`), mean over clips. ``update(landmarks B,T,68,2,
    valid B,T | None)``. Not a score on its own (its target is the ground truth's value):
    ``higher_is_better`` is None; :func:`gt_normalised` makes it one.

    >>> m = LipDynamics()
    >>> m.update(torch.zeros(2, 3, 68, 2))  # no eyes: no frame counts
    >>> m.compute().isnan().item(), m.counts()
    (True, {'clips_scored': 0, 'clips_unscored': 2})
    """

    higher_is_better = None

    def update(self, landmarks: Tensor, valid: Tensor | None = None) -> None:
        self._update(lip_dynamics(landmarks, valid))


class HeadMotionDynamics(ClipMean):
    """Head-motion dynamics (:func:`head_motion_dynamics`), mean over clips.
    ``update(landmarks B,T,68,2, valid B,T | None)``; ``higher_is_better`` None (see
    :class:`LipDynamics`).

    >>> face = torch.zeros(1, 4, 68, 2); face[..., 45, 0] = 10.0
    >>> m = HeadMotionDynamics(); m.update(face); m.compute().item()
    0.0
    """

    higher_is_better = None

    def update(self, landmarks: Tensor, valid: Tensor | None = None) -> None:
        self._update(head_motion_dynamics(landmarks, valid))


class EyebrowDynamics(ClipMean):
    """Eyebrow dynamics (:func:`eyebrow_dynamics`), mean over clips.
    ``update(landmarks B,T,68,2, valid B,T | None)``; ``higher_is_better`` None (see
    :class:`LipDynamics`).

    >>> face = torch.zeros(1, 4, 68, 2); face[..., 45, 0] = 10.0
    >>> m = EyebrowDynamics(); m.update(face); m.compute().item()
    0.0
    """

    higher_is_better = None

    def update(self, landmarks: Tensor, valid: Tensor | None = None) -> None:
        self._update(eyebrow_dynamics(landmarks, valid))


class SilentLipStability(ClipMean):
    """Silent-lip MAD (:func:`silent_lip_mad`), mean over the clips with a counted silence.
    ``update(landmarks B,T,68,2, silence B,T, valid B,T | None)``; lower is stiller.

    >>> face = torch.zeros(1, 10, 68, 2); face[..., 45, 0] = 10.0
    >>> m = SilentLipStability(); m.update(face, torch.ones(1, 10, dtype=torch.bool))
    >>> m.compute().item()
    0.0
    """

    higher_is_better = False

    def update(self, landmarks: Tensor, silence: Tensor, valid: Tensor | None = None) -> None:
        self._update(silent_lip_mad(landmarks, silence, valid))


class Naturalness(torch.nn.Module):
    """The four landmark statistics of the metric suite, behind one ``update`` / ``compute``.

    ``update(landmarks B,T,68,2, valid B,T, silence B,T | None)`` -> the batch's per-clip columns
    (``lip_dynamics``, ``head_motion_dynamics``, ``eyebrow_dynamics``, ``silent_lip_mad``; the
    last NaN without a silence mask); ``compute()`` -> their means over the scored clips and
    ``silent_lip_clips_scored``.
    """

    KEYS = ("lip_dynamics", "head_motion_dynamics", "eyebrow_dynamics", "silent_lip_mad")

    def __init__(self) -> None:
        super().__init__()
        self.lip = LipDynamics()
        self.head = HeadMotionDynamics()
        self.brow = EyebrowDynamics()
        self.silent = SilentLipStability()

    def update(
        self, landmarks: Tensor, valid: Tensor | None, silence: Tensor | None
    ) -> dict[str, Tensor]:
        self.lip.update(landmarks, valid)
        self.head.update(landmarks, valid)
        self.brow.update(landmarks, valid)
        if silence is None:  # no word alignments: nothing is known to be silent
            silence = torch.zeros(landmarks.shape[:2], dtype=torch.bool)
        self.silent.update(landmarks, silence.to(landmarks.device, torch.bool), valid)
        parts = (self.lip, self.head, self.brow, self.silent)
        return {key: m.batch_values for key, m in zip(self.KEYS, parts, strict=True)}

    def compute(self) -> dict[str, float]:
        parts = (self.lip, self.head, self.brow, self.silent)
        out = {key: float(m.compute()) for key, m in zip(self.KEYS, parts, strict=True)}
        out["silent_lip_clips_scored"] = self.silent.counts()["clips_scored"]
        return out

    def reset(self) -> None:
        for m in (self.lip, self.head, self.brow, self.silent):
            m.reset()
