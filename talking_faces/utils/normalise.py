"""THEval's ground-truth normalisation and final score: pure arithmetic, torch-free.

results JSON metrics of a row + the ground-truth row's (same comparison group) ->
**gt_normalised** per metric of :data:`GT_NORMALISED_METRICS` (``<key>_norm``) ->
**final_score** (their unweighted mean) -> leaderboard column
(:mod:`talking_faces.reporting.leaderboard`). :mod:`talking_faces.metrics.naturalness`, which
computes the raw metrics, re-exports both functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

#: the metrics reported raw and normalised by the ground-truth row (``<key>_norm``), in the
#: order a leaderboard lists them: lip, head-motion and eyebrow dynamics (naturalness) and
#: silent-lip stability (synchronisation); the final score is the mean of those a protocol scores
GT_NORMALISED_METRICS: tuple[str, ...] = (
    "lip_dynamics",
    "head_motion_dynamics",
    "eyebrow_dynamics",
    "silent_lip_mad",
)
#: suffix of a normalised metric's key
NORM_SUFFIX = "_norm"
#: the key of the final score
FINAL_SCORE = "final_score"
#: |ground truth| at or below this cannot normalise a metric (THEval's epsilon)
GT_EPSILON = 1e-9


def norm_key(metric: str) -> str:
    """``lip_dynamics`` -> ``lip_dynamics_norm``."""
    return metric + NORM_SUFFIX


def gt_normalised(value: float, gt_value: float) -> float:
    """THEval's closeness to the ground truth: ``1 - |value - gt| / |gt|``.

    1 at the ground truth's value, 0 at zero or at twice it, below 0 beyond (not clipped, as in
    THEval's ``compute_normalized_scores``); NaN when ``value`` is NaN.

    Raises:
        ValueError: ``|gt_value|`` is at most :data:`GT_EPSILON` or not finite.

    >>> gt_normalised(1.5, 1.0), gt_normalised(0.0, 2.0), gt_normalised(3.0, 1.0)
    (0.5, 0.0, -1.0)
    """
    if not math.isfinite(gt_value) or abs(gt_value) <= GT_EPSILON:
        raise ValueError(f"the ground truth's value must be finite and non-zero, got {gt_value}")
    return 1.0 - abs(value - gt_value) / abs(gt_value)


def final_score(normalised: Mapping[str, float], metrics: Sequence[str]) -> float:
    """The unweighted mean of the normalised ``metrics`` (THEval's final score); NaN if any is.

    Raises:
        ValueError: ``metrics`` is empty or names a metric ``normalised`` lacks.

    >>> final_score({"lip_dynamics": 0.5, "eyebrow_dynamics": 1.0, "psnr": 0.0},
    ...             ["lip_dynamics", "eyebrow_dynamics"])
    0.75
    """
    missing = [m for m in metrics if m not in normalised]
    if not metrics or missing:
        raise ValueError(
            f"the final score needs a normalised value of each of {list(metrics)}; "
            f"missing {missing}"
        )
    return math.fsum(normalised[m] for m in metrics) / len(metrics)


__all__ = [
    "FINAL_SCORE",
    "GT_EPSILON",
    "GT_NORMALISED_METRICS",
    "NORM_SUFFIX",
    "final_score",
    "gt_normalised",
    "norm_key",
]
