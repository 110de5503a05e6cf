"""Per-clip random motion of the synthetic face: blinks, head drift, slight expression changes.

Place in the data flow: the corpus writer (:mod:`.corpus`) draws one :class:`ClipMotion` per clip
from a generator of its own, seeded apart from the one that drives the speech; with the mouth track
of the speech it makes the :class:`~talking_faces.data.synthetic.face.FaceState` of every frame.
Nothing here looks at the audio, so none of it can be predicted from the audio: this is the
variation a stochastic talking-face model should learn to sample rather than to regress.

Signals are sampled at the frame centres ``(t + 0.5) / fps``, like the mouth track.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from talking_faces.data.synthetic import detmath
from talking_faces.names import FPS

#: bounds of the head drift: translation (fraction of the frame size), rotation (degrees), scale
MAX_TRANSLATION = 0.03
MAX_ROTATION = 4.0
MAX_SCALE = 0.03


@dataclass(frozen=True)
class ClipMotion:
    """Audio-independent face signals for the T frames of one clip (all float64 arrays).

    blink (T,) in [0, 1], 1 = eyes shut; tx, ty (T,) head translation as a fraction of the frame
    size; rotation (T,) in-plane head rotation in degrees; scale (T,) head scale factor around 1;
    brow_raise (T,) in [-1, 1]; smile (T,) in [0, 1]; gaze (T, 2) iris offset in [-1, 1].
    """

    blink: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    rotation: np.ndarray
    scale: np.ndarray
    brow_raise: np.ndarray
    smile: np.ndarray
    gaze: np.ndarray

    def __len__(self) -> int:
        return len(self.blink)

    def window(self, start: int, stop: int) -> ClipMotion:
        """Frames ``start:stop`` of every signal."""
        return ClipMotion(**{f.name: getattr(self, f.name)[start:stop] for f in fields(self)})


def smooth_noise(num: int, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation: (num,) float64.

    ``sigma`` is the filter width in samples; the noise is drawn with a margin of 3 sigma on both
    sides so the ends are as smooth as the middle.
    """
    if num <= 0:
        return np.zeros(0)
    half = max(1, int(np.ceil(3.0 * sigma)))
    k = detmath.exp(-0.5 * (np.arange(-half, half + 1) / max(sigma, 1e-6)) ** 2)
    k /= np.sqrt(np.sum(k**2))  # unit-variance white noise in, unit variance out
    white = rng.standard_normal(num + 2 * half)
    # The convolution as one multiply-add per tap in a fixed order: np.convolve goes through the
    # BLAS dot product, whose kernel (and so its last bits) depends on the CPU.
    out = np.zeros(num)
    for j, kj in enumerate(k[::-1]):
        out += kj * white[j : j + num]
    return out


def blink_signal(
    times: np.ndarray,
    rng: np.random.Generator,
    rate: float = 0.3,
    duration: tuple[float, float] = (0.13, 0.2),
) -> np.ndarray:
    """Eyelid closure in [0, 1] at ``times`` (s) for blinks at Poisson times of ``rate`` per second.

    A blink closes quickly (35 % of its duration), stays shut for 45 ms so that at least one
    frame at 25 fps sees the eyes fully closed, and opens more slowly.
    """
    times = np.asarray(times, dtype=np.float64)
    out = np.zeros_like(times)
    if times.size == 0:
        return out
    hold = 0.045
    t0, t1 = times[0] - 0.3, times[-1] + 0.05
    count = int(rng.poisson(rate * (t1 - t0)))
    onsets = np.sort(rng.uniform(t0, t1, size=count))
    for onset in onsets:
        dur = float(rng.uniform(*duration))
        close, reopen = 0.35 * dur, 0.65 * dur
        t = times - onset
        closing = np.clip(t / close, 0.0, 1.0)
        opening = np.clip(1.0 - (t - close - hold) / reopen, 0.0, 1.0)
        shape = np.where(t < close, closing, np.where(t < close + hold, 1.0, opening))
        shape[(t < 0) | (t > close + hold + reopen)] = 0.0
        out = np.maximum(out, shape)
    return out


def random_motion(num_frames: int, rng: np.random.Generator, fps: float = float(FPS)) -> ClipMotion:
    """Draw the blinks, head drift and expression of one clip of ``num_frames`` frames.

    Head drift stays within +-3 % of the frame size (translation), +-4 degrees (rotation) and
    +-3 % (scale): a slow component (about 1 s) plus a faster, smaller one (about 0.25 s),
    squashed by tanh so the bounds hold. ``rng`` must not be the generator of the speech.
    """
    n = int(num_frames)
    times = (np.arange(n) + 0.5) / fps

    def drift(bound: float) -> np.ndarray:
        z = 0.8 * smooth_noise(n, rng, sigma=fps * 1.0) + 0.35 * smooth_noise(n, rng, fps * 0.25)
        return bound * detmath.tanh(0.8 * z)

    blink = blink_signal(times, rng)
    tx = drift(MAX_TRANSLATION)
    ty = drift(MAX_TRANSLATION)
    rotation = drift(MAX_ROTATION)
    scale = 1.0 + drift(MAX_SCALE)
    brow_raise = detmath.tanh(0.5 * smooth_noise(n, rng, sigma=fps * 0.6))
    base_smile = float(rng.uniform(0.0, 0.4))
    smile = np.clip(base_smile + 0.15 * smooth_noise(n, rng, sigma=fps * 0.8), 0.0, 1.0)
    gaze = np.stack(
        [detmath.tanh(0.5 * smooth_noise(n, rng, sigma=fps * 0.5)) for _ in range(2)], axis=1
    )
    return ClipMotion(
        blink=blink,
        tx=tx,
        ty=ty,
        rotation=rotation,
        scale=scale,
        brow_raise=brow_raise,
        smile=smile,
        gaze=gaze,
    )
