"""Silences of a prepared clip: which frames lie inside a pause long enough to judge how still the
mouth stays (silent-lip stability, :mod:`talking_faces.metrics.naturalness`).

a clip's word alignment (the shards' ``words``, GRID and the synthetic corpus) ->
**silence_mask** -> ``(T,)`` bool per frame -> the test pairs' ``silence`` ->
:class:`talking_faces.metrics.naturalness.SilentLipStability`

Layouts without word alignments (LRW's one word per clip, a folder of videos) have no silence
mask: their items say so (``silence_known`` False) and silent-lip stability is not scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from talking_faces.names import FPS

#: the shortest silence silent-lip stability looks at, in seconds (THEval's MIN_SILENCE_DURATION)
MIN_SILENCE_S = 0.3


def silence_mask(
    words: np.ndarray | Sequence[Sequence[int]],
    num_frames: int,
    fps: float = FPS,
    min_silence_s: float = MIN_SILENCE_S,
) -> np.ndarray:
    """A clip's word alignment -> ``(num_frames,)`` bool: the frames inside a silence of at
    least ``min_silence_s`` seconds (``ceil(min_silence_s * fps)`` frames: 8 at 25 fps).

    Args:
        words: ``(n, 2+)`` spoken words as ``(start frame, end frame exclusive, ...)``, the
            prepared shards' ``words`` (silence tokens already left out); spans are clipped to
            the clip.
        num_frames: the clip's length T.
        fps: frames per second of the clip.
        min_silence_s: the shortest silence kept.

    >>> silence_mask([[3, 10], [12, 20]], 30).astype(int).tolist()
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    """
    spans = np.asarray(words, dtype=np.int64)
    silent = np.ones(num_frames, dtype=bool)
    for start, end in spans.reshape(-1, spans.shape[-1] if spans.size else 2)[:, :2]:
        silent[max(int(start), 0) : max(min(int(end), num_frames), 0)] = False
    shortest = math.ceil(min_silence_s * fps - 1e-9)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start < shortest:
            silent[start:end] = False
    return silent


# ---------------------------------------------------------------- ground-truth normalisation


__all__ = ["MIN_SILENCE_S", "silence_mask"]
