"""The records that flow through ``prepare``: a raw clip found by a reader, and a processed clip
ready for the writer.

raw corpus -> readers (RawClip) -> clip.process_clip (ProcessedClip | ClipSkipped)
-> writer (shards)

The timing of these clips (25 fps, 16 kHz mono, 640 samples and 4 feature rows per frame) is
defined once in :mod:`talking_faces.names`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ClipSkipped(Exception):
    """A clip that cannot be prepared; ``reason`` is a short slug, ``detail`` a sentence.

    Reasons are stable slugs so summaries can group by them, e.g. ``unreadable-video``,
    ``no-audio``, ``audio-too-short``, ``empty-file``, ``missing-alignment``,
    ``alignment-mismatch``, ``no-face``, ``too-short``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RawClip:
    """One source clip found by a layout reader.

    ``clip_id`` is unique within the corpus and stable across runs (e.g. ``s1/bbaf2n`` for GRID,
    ``ABOUT/train/ABOUT_00001`` for LRW, the relative path without suffix for a folder).
    """

    clip_id: str
    speaker: str
    video: Path
    audio: Path | None = None
    align: Path | None = None
    sidecar: Path | None = None
    word: str | None = None
    split_hint: str | None = None
    word_duration: float | None = None


@dataclass
class ProcessedClip:
    """A clip after decoding, landmarks, alignment and audio features (T frames at 25 fps)."""

    clip_id: str
    speaker: str
    word: str | None
    split_hint: str | None
    frames: np.ndarray  # (T, S, S, 3) uint8 aligned crops
    waveform: np.ndarray  # (T * 640,) float32, 16 kHz mono in [-1, 1]
    mfcc: np.ndarray  # (4T, 13) float32, python_speech_features-compatible, c0 = log energy
    logmel: np.ndarray  # (4T, n_mels) float32
    landmarks: np.ndarray  # (T, 68, 2) float32, crop pixels
    landmarks_valid: np.ndarray  # (T,) bool
    source_sha256: str
    words: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end frame, word)
    # features added after the first datasets were prepared (prepare.audio.prepared_features
    # always makes them; None leaves them out of the work file and the shards)
    mfcc_davs: np.ndarray | None = None  # (4T, 13) float32, the davs authors' MATLAB MFCC
    mfcc_wavepad: np.ndarray | None = None  # (4T+24, 13) float32, mfcc of wave +-1965 zeros

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])
