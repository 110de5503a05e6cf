"""Reference rows scored without a model: the bounds every method is read against.

test pairs (real frames, identity frame, waveform) -> **baseline frames** -> metric suite ->
results JSON with ``kind: baseline``

- ``ground-truth``: the real clip (upper bound of every metric);
- ``static``: the identity frame repeated for every frame (lower bound for sync and LMD: a face
  that never moves);
- ``shuffled``: real frames of another test pair, scored against this pair's audio and reference
  (sync lower bound: real mouth motion that belongs to other speech). The other pair comes from a
  seeded derangement of the pairs, so no pair keeps its own frames.

``shift_waveform`` moves the audio against the frames, to check that a SyncNet finds a known
offset: shifting by ``+s`` makes the video lag the audio by ``s`` frames, which LSE reports as AV
offset ``+s`` (the sign convention of ``joonson/syncnet_python``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from talking_faces.errors import UserError

BASELINES: tuple[str, ...] = ("ground-truth", "static", "shuffled")
SAMPLES_PER_FRAME = 640


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation of ``range(n)`` with no fixed point (``n >= 2``).

    >>> p = derangement(5, 0)
    >>> sorted(p) == list(range(5)) and all(i != j for i, j in enumerate(p))
    True
    """
    if n < 2:
        raise UserError(f"the shuffled baseline needs at least 2 test pairs, got {n}")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return [int(i) for i in perm]


def shift_waveform(waveform: Tensor, frames: int) -> Tensor:
    """Move ``B,S`` audio ``frames`` video frames earlier (``> 0``) or later (``< 0``).

    The sound heard at frame ``t`` afterwards is the one originally at ``t + frames``; the gap
    left at one end is silence, so the length is unchanged. A positive shift makes the video lag
    the audio and LSE reports AV offset ``+frames``.
    """
    n = int(frames) * SAMPLES_PER_FRAME
    if n == 0:
        return waveform
    out = torch.zeros_like(waveform)
    if abs(n) >= waveform.shape[-1]:
        return out
    if n > 0:
        out[..., :-n] = waveform[..., n:]
    else:
        out[..., -n:] = waveform[..., :n]
    return out


def fit_length(frames: Tensor, length: int) -> Tensor:
    """``T,3,H,W`` frames cut or padded (last frame repeated) to ``length`` frames."""
    t = frames.shape[0]
    if t >= length:
        return frames[:length]
    return torch.cat([frames, frames[-1:].expand(length - t, *frames.shape[1:])])


def static_frames(identity: Tensor, num_frames: int) -> Tensor:
    """``B,3,H,W`` identity frames -> ``B,T,3,H,W`` (the frame repeated)."""
    return identity[:, None].expand(-1, num_frames, -1, -1, -1).contiguous()
