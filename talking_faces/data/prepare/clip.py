"""One raw clip to one processed clip: the per-clip half of ``prepare``.

readers (RawClip) -> **clip.process_clip** -> ProcessedClip | ClipSkipped -> writer (shards)

``process_clip`` decodes (25 fps, 16 kHz mono), finds landmarks, fills short gaps and smooths them,
aligns and crops every frame to the template, computes the audio features and, for GRID, the
word alignment in frames. Every parameter that shaped the result is in :func:`feature_params`,
which the writer stores in ``meta.json``.

Skip reasons raised here (besides those of :func:`~talking_faces.data.prepare.video.decode_clip`
and the landmark backends): ``no-face`` (no frame has a face), ``face-gap`` (a run of frames
without a face longer than ``max_gap_frames``), ``alignment-mismatch`` (the GRID alignment runs
past the end of the clip), ``bad-alignment`` (an alignment file that cannot be parsed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from talking_faces.data.clips import ClipSkipped, ProcessedClip, RawClip
from talking_faces.data.prepare import align, audio, landmarks, video
from talking_faces.data.sources import readers
from talking_faces.names import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME


@dataclass(frozen=True)
class ClipConfig:
    """How ``prepare`` turns a raw clip into a processed one.

    Attributes:
        size: crop size in pixels (``--size``).
        landmarks: landmark backend, ``"sidecar"``, ``"fan"`` or ``"dlib"`` (``--landmarks``).
        device: torch device of the FAN backend (``--device``).
        face_detector: the dlib backend's face detector, ``"cnn"`` or ``"hog"``
            (``--face-detector``; None: the backend's default, ``cnn``).
        jpeg_quality: JPEG quality of the stored frames (used by the writer).
        max_gap_frames: longest run of frames without a face that is interpolated; longer runs
            skip the clip (``face-gap``).
        smoothing: Gaussian sigma, in frames, of the temporal smoothing of the landmarks.
        align_smoothing: Gaussian sigma, in frames, of the smoothing of the alignment transform.
        template: name of the alignment template (only ``"default"`` exists).
        min_frames: clips with fewer 25 fps frames are skipped (``too-short``).
        max_audio_shortfall: fraction of the video's duration the audio may miss (zero-padded);
            more is ``audio-too-short``.
        n_mels: log-mel bands.
    """

    size: int = 128
    landmarks: str = "sidecar"
    device: str = "cpu"
    jpeg_quality: int = 90
    face_detector: str | None = None
    max_gap_frames: int = 5
    smoothing: float = 1.0
    align_smoothing: float = 2.0
    template: str = "default"
    min_frames: int = 5
    max_audio_shortfall: float = 0.1
    n_mels: int = 80

    def __post_init__(self) -> None:
        if self.template != "default":
            raise ValueError(f"unknown alignment template {self.template!r}; only 'default'")
        if self.landmarks not in landmarks.BACKENDS:
            raise ValueError(
                f"unknown landmark backend {self.landmarks!r}; one of {landmarks.BACKENDS}"
            )
        if self.size < 16:
            raise ValueError(f"crop size {self.size} is too small (at least 16 px)")


_BACKENDS: dict[tuple[str, str, str | None], landmarks.LandmarkBackend] = {}


def _default_backend(cfg: ClipConfig) -> landmarks.LandmarkBackend:
    """One backend per (name, device, detector) and process: FAN loads its networks once."""
    key = (cfg.landmarks, cfg.device, cfg.face_detector)
    if key not in _BACKENDS:
        _BACKENDS[key] = landmarks.create_backend(cfg.landmarks, cfg.device, cfg.face_detector)
    return _BACKENDS[key]


def process_clip(
    raw: RawClip, cfg: ClipConfig, detector: landmarks.LandmarkBackend | None = None
) -> ProcessedClip:
    """Decode, find and clean landmarks, align and crop, compute audio features.

    Args:
        raw: the clip, as a reader found it.
        cfg: the preparation parameters.
        detector: the landmark backend (default: ``cfg.landmarks`` on ``cfg.device``, created
            once per process).

    Raises:
        ClipSkipped: the clip cannot be prepared; ``reason`` says why.
    """
    rows = _alignment(raw)
    decoded = video.decode_clip(raw, cfg.max_audio_shortfall, cfg.min_frames)
    num = decoded.num_frames
    # A GRID alignment filed under the wrong speaker can carry the right words (same sentence)
    # but another recording's timing: it must not run past the clip.
    end = rows[-1][1] / readers.GRID_UNITS_PER_FRAME if rows else 0.0
    if end > num + 1:
        raise ClipSkipped(
            "alignment-mismatch",
            f"{raw.align}: ends at frame {end:g} but the clip has {num} frames",
        )
    words = readers.alignment_words(rows)
    words = [(min(s, num), min(e, num), w) for s, e, w in words]

    backend = detector if detector is not None else _default_backend(cfg)
    lm, found = backend(decoded.frames, raw, source_index=decoded.source_index)
    found = found & align.usable_frames(lm)  # collapsed points cannot place a face
    if not found.any():
        raise ClipSkipped("no-face", f"{raw.clip_id}: no face in any of its {num} frames")
    lm, usable = landmarks.fill_gaps(lm, found, cfg.max_gap_frames)
    if not usable.all():
        a, b = landmarks.longest_gap(usable)
        raise ClipSkipped(
            "face-gap",
            f"{raw.clip_id}: no face in frames {a}-{b - 1} ({b - a} frames, at most "
            f"{cfg.max_gap_frames} are interpolated)",
        )
    lm = landmarks.smooth(lm, usable, cfg.smoothing)
    crops, lm_crop = align.align_clip(decoded.frames, lm, usable, cfg.size, cfg.align_smoothing)
    feats = audio.prepared_features(decoded.waveform, num, cfg.n_mels)
    return ProcessedClip(
        clip_id=raw.clip_id,
        speaker=raw.speaker,
        word=raw.word,
        split_hint=raw.split_hint,
        frames=crops,
        waveform=decoded.waveform,
        mfcc=feats["mfcc"],
        logmel=feats["logmel"],
        landmarks=lm_crop,
        landmarks_valid=found,
        source_sha256=readers.source_sha256(raw),
        words=words,
        mfcc_davs=feats["mfcc_davs"],
        mfcc_wavepad=feats["mfcc_wavepad"],
    )


def _alignment(raw: RawClip) -> list[tuple[int, int, str]]:
    if raw.align is None:
        return []
    try:
        return readers.read_grid_alignment(raw.align)
    except (ValueError, OSError) as exc:
        raise ClipSkipped("bad-alignment", str(exc)) from exc


def feature_params(cfg: ClipConfig) -> dict[str, Any]:
    """Everything that shaped the processed clips, for ``meta.json``."""
    return {
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "samples_per_frame": SAMPLES_PER_FRAME,
        "size": cfg.size,
        "video_resampling": "nearest presentation time (frames repeated or dropped)",
        "template": align.template_params(cfg.size),
        "alignment": {
            "transform": "similarity, weighted least squares on the stable points (no reflection)",
            "smoothing_sigma_frames": cfg.align_smoothing,
            "sampling": "bilinear (torch grid_sample, border padding), antialiased pre-downscale "
            f"when the scale is below {align.PRE_DOWNSCALE_BELOW}",
        },
        "audio": audio.audio_feature_params(cfg.n_mels),
        "landmarks": {
            "backend": cfg.landmarks,
            "points": 68,
            "order": "iBUG 68",
            "units": "crop pixels, pixel centres at integers",
            "smoothing_sigma_frames": cfg.smoothing,
            "max_gap_frames": cfg.max_gap_frames,
            "gap_filling": "linear between valid frames; held at clip ends",
            "valid": "a face was found in the frame (False where landmarks were interpolated)",
        },
        "min_frames": cfg.min_frames,
        "max_audio_shortfall": cfg.max_audio_shortfall,
    }
