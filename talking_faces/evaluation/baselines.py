"""Reference rows scored without a model: the bounds every method is read against.

test pairs (real frames, identity frame, waveform) -> **BASELINE_CLIPS[name]** (the baseline's
frames and the waveform they are scored with) -> metric suite -> results JSON with
``kind: baseline``

The names are :data:`talking_faces.names.BASELINES`:

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from talking_faces.errors import UserError
from talking_faces.names import BASELINES, GROUND_TRUTH, SAMPLES_PER_FRAME, SHUFFLED, STATIC

if TYPE_CHECKING:
    from talking_faces.data.dataset import TestPairDataset


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


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class BaselineSetup:
    """What a baseline may use beyond one batch."""

    #: the test pairs scored (``pairs[i]["frames"]``: pair i's real frames, ``T,3,H,W`` uint8)
    pairs: TestPairDataset
    #: how many of them are scored (the first ``count``)
    count: int
    seed: int
    #: video frames the audio moves (ground truth only, :func:`shift_waveform`)
    audio_shift: int
    device: str | torch.device


@dataclass(frozen=True)
class BaselineBatch:
    """One batch of test pairs as a baseline sees it."""

    #: the collated batch (``identity``: ``B,3,H,W``, on the CPU)
    batch: dict[str, Any]
    #: its pair indices
    indices: Sequence[int]
    #: ``B,T,3,H,W`` real frames in [0,1] and ``B,S`` waveform, on the device
    target: Tensor
    waveform: Tensor


#: one batch -> ``(frames scored as generated, waveform they are scored with)``
BaselineClip = Callable[[BaselineBatch], tuple[Tensor, Tensor]]


def _ground_truth(setup: BaselineSetup) -> BaselineClip:
    def clip(b: BaselineBatch) -> tuple[Tensor, Tensor]:
        return b.target, shift_waveform(b.waveform, setup.audio_shift)

    return clip


def _static(setup: BaselineSetup) -> BaselineClip:
    def clip(b: BaselineBatch) -> tuple[Tensor, Tensor]:
        frames = static_frames(b.batch["identity"].to(setup.device), b.target.shape[1])
        return frames, b.waveform

    return clip


def _shuffled(setup: BaselineSetup) -> BaselineClip:
    partner = derangement(setup.count, setup.seed)

    def clip(b: BaselineBatch) -> tuple[Tensor, Tensor]:
        t = b.target.shape[1]
        other = [setup.pairs[partner[i]]["frames"] for i in b.indices]
        frames = torch.stack([fit_length(f, t) for f in other]).to(setup.device).float() / 255.0
        return frames, b.waveform

    return clip


#: baseline name -> how its clips are made (given the evaluation's :class:`BaselineSetup`)
BASELINE_CLIPS: Mapping[str, Callable[[BaselineSetup], BaselineClip]] = MappingProxyType(
    {GROUND_TRUTH: _ground_truth, STATIC: _static, SHUFFLED: _shuffled}
)
assert tuple(BASELINE_CLIPS) == BASELINES, "every name of talking_faces.names.BASELINES, in order"


def baseline_clip(name: str, setup: BaselineSetup) -> BaselineClip:
    """How the clips of baseline ``name`` are made (:data:`BASELINE_CLIPS`).

    Raises:
        UserError: an unknown name; the shuffled baseline with fewer than 2 pairs.
    """
    if name not in BASELINE_CLIPS:
        raise UserError(f"unknown baseline {name!r}; choose {', '.join(BASELINES)}")
    return BASELINE_CLIPS[name](setup)


__all__ = [
    "BASELINE_CLIPS",
    "BaselineBatch",
    "BaselineClip",
    "BaselineSetup",
    "baseline_clip",
    "derangement",
    "fit_length",
    "shift_waveform",
    "static_frames",
]
