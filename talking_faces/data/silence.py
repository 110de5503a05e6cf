"""Silences of a prepared clip: which frames lie inside a pause long enough to judge how still the
mouth stays (silent-lip stability, :mod:`talking_faces.metrics.naturalness`).

a clip's word alignment (the shards' ``words``, GRID and the synthetic corpus) ->
**silence_mask**; else (LRW's one word per clip, a folder of videos) its 16 kHz waveform ->
webrtcvad -> **vad_silence_mask** -> ``(T,)`` bool per frame -> the test pairs' ``silence`` ->
:class:`talking_faces.metrics.naturalness.SilentLipStability`

Both keep only the pauses of at least :data:`MIN_SILENCE_S` (:func:`keep_long_silences`). The
voice-activity detector is webrtcvad (the ``webrtcvad-wheels`` package: an 83 KB C extension, no
model file) at aggressiveness :data:`VAD_MODE` on :data:`VAD_FRAME_MS` ms frames, chosen by
measurement against LibriVox word timings (docs/metrics.md, "Naturalness and silent-lip
stability"); silero-vad was not taken: its model is TorchScript/ONNX, which ``torch.load(...,
weights_only=True)`` cannot read, and would need onnxruntime or torchaudio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import webrtcvad

from talking_faces.names import FPS, SAMPLE_RATE

#: the shortest silence silent-lip stability looks at, in seconds (THEval's MIN_SILENCE_DURATION)
MIN_SILENCE_S = 0.3
#: webrtcvad's aggressiveness (0 least, 3 most eager to call audio non-speech) for clips without
#: word alignments: against LibriVox's word timings 2 found as many pauses as 3 and, unlike 3,
#: never called 300 ms of speech a silence (docs/metrics.md has the measurements)
VAD_MODE = 2
#: webrtcvad's frame length in ms (it takes 10, 20 or 30): 20 ms tiles a 40 ms video frame at
#: 25 fps exactly (two per frame; 30 ms would straddle frames) with twice the context of 10 ms
VAD_FRAME_MS = 20


def keep_long_silences(
    silent: np.ndarray, fps: float = FPS, min_silence_s: float = MIN_SILENCE_S
) -> np.ndarray:
    """``(T,)`` bool per-frame silence -> a copy with the runs shorter than ``min_silence_s``
    seconds (``ceil(min_silence_s * fps)`` frames: 8 at 25 fps) set False.

    >>> keep_long_silences(np.array([1, 1, 0] + [1] * 8, bool)).astype(int).tolist()
    [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    """
    silent = np.array(silent, dtype=bool)
    shortest = math.ceil(min_silence_s * fps - 1e-9)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start < shortest:
            silent[start:end] = False
    return silent


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
    return keep_long_silences(silent, fps, min_silence_s)


def vad_silence_mask(
    waveform: np.ndarray | Sequence[float],
    num_frames: int,
    fps: float = FPS,
    sample_rate: int = SAMPLE_RATE,
    aggressiveness: int = VAD_MODE,
    frame_ms: int = VAD_FRAME_MS,
    min_silence_s: float = MIN_SILENCE_S,
) -> np.ndarray:
    """A clip's waveform -> ``(num_frames,)`` bool: the frames inside a silence of at least
    ``min_silence_s`` seconds by webrtcvad, for clips without a word alignment.

    The waveform (float in [-1, 1], clipped) becomes 16-bit PCM and is cut into ``frame_ms``
    frames from sample 0; a video frame is silent when webrtcvad calls none of the VAD frames that
    overlap it speech. Samples missing at the end (a waveform shorter than the clip) count as
    digital silence; a VAD frame left incomplete at the end is padded with zeros.

    Args:
        waveform: ``(num_frames * sample_rate / fps,)`` mono samples, the prepared shards'
            ``waveform`` (``T * 640`` at 16 kHz and 25 fps).
        num_frames: the clip's length T.
        fps: frames per second of the clip.
        sample_rate: the waveform's rate: 8000, 16000, 32000 or 48000 Hz (webrtcvad's).
        aggressiveness: webrtcvad's mode, 0-3 (3 calls the most audio non-speech).
        frame_ms: webrtcvad's frame length: 10, 20 or 30 ms.
        min_silence_s: the shortest silence kept.

    Raises:
        ValueError: a rate, frame length or mode webrtcvad does not take.

    >>> bool(vad_silence_mask(np.zeros(30 * 640, np.float32), 30).all())  # digital silence
    True
    """
    if sample_rate not in (8000, 16000, 32000, 48000):
        raise ValueError(f"webrtcvad takes 8, 16, 32 or 48 kHz audio; got {sample_rate} Hz")
    if frame_ms not in (10, 20, 30):
        raise ValueError(f"webrtcvad takes 10, 20 or 30 ms frames; got {frame_ms}")
    if aggressiveness not in (0, 1, 2, 3):
        raise ValueError(f"webrtcvad's aggressiveness is 0-3; got {aggressiveness}")
    step = sample_rate * frame_ms // 1000
    per_frame = sample_rate / fps
    covered = math.ceil(num_frames * per_frame - 1e-9)  # the clip's samples
    count = math.ceil(covered / step)  # VAD frames over them
    wave = np.asarray(waveform, dtype=np.float64).reshape(-1)[:covered]
    pcm = np.zeros(count * step, dtype=np.int16)
    pcm[: wave.size] = np.round(np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)
    vad = webrtcvad.Vad(aggressiveness)
    frames = pcm.reshape(count, step)
    speech = np.array([vad.is_speech(x.tobytes(), sample_rate) for x in frames], dtype=bool)
    silent = np.ones(num_frames, dtype=bool)
    for f in range(num_frames):
        first = math.floor(f * per_frame / step + 1e-9)
        last = math.ceil((f + 1) * per_frame / step - 1e-9)  # exclusive
        silent[f] = not speech[first:last].any()
    return keep_long_silences(silent, fps, min_silence_s)


__all__ = [
    "MIN_SILENCE_S",
    "VAD_FRAME_MS",
    "VAD_MODE",
    "keep_long_silences",
    "silence_mask",
    "vad_silence_mask",
]
