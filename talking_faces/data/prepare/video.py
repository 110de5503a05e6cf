"""Decode one raw clip to 25 fps RGB frames and 16 kHz mono audio under them.

readers (RawClip) -> **video.decode_clip** (DecodedClip) -> landmarks -> align -> audio features

Video is decoded with PyAV and resampled to 25 fps by timestamps: output frame ``k`` shows the
source frame whose presentation time is nearest to ``t0 + k / 25`` (frames are repeated or
dropped, never blended). Audio comes from ``raw.audio`` when the reader found a separate file
(GRID's ``.wav`` at 25 or 50 kHz), else from the video's own audio stream, whose start is lined up
with the first video frame by presentation time (this also removes encoder delay, e.g. MP2's).
It is averaged to mono, resampled to 16 kHz with ``scipy.signal.resample_poly`` and trimmed or
zero-padded to exactly ``T * 640`` samples.

Bad input raises :class:`~talking_faces.data.clips.ClipSkipped` with one of the reasons
``empty-file``, ``unreadable-video``, ``truncated-video``, ``unreadable-audio``, ``no-audio``,
``audio-too-short``, ``too-short``, ``too-long``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from scipy.signal import resample_poly

from talking_faces.data.clips import ClipSkipped, RawClip
from talking_faces.names import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

#: decoded clips larger than this are skipped (``too-long``) rather than exhausting memory
MAX_DECODED_BYTES = 3 << 30
#: decoded frames may fall this far short of the container's own frame count before the file
#: counts as truncated (fraction of the declared count; at least 2 frames)
TRUNCATION_TOLERANCE = 0.02
#: audio may differ from the video by this much (seconds) whatever the fraction allows: audio
#: codecs work in frames of up to ~0.1 s (AAC: 1024 samples), which matters for short clips
AUDIO_SLACK_S = 0.1
# Formats soundfile (libsndfile) reads exactly; anything else goes through PyAV.
_SOUNDFILE_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


@dataclass
class DecodedClip:
    """A clip at 25 fps with the 16 kHz mono audio under its T frames.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB at 25 fps, source resolution.
        waveform: (T * 640,) float32 mono at 16 kHz in [-1, 1].
        source_fps: frame rate of the source video (from its timestamps).
        source_sample_rate: sample rate of the source audio.
        source_index: (T,) int64, the source frame shown at each output frame.
        source_frames: number of frames decoded from the source video.
    """

    frames: np.ndarray
    waveform: np.ndarray
    source_fps: float
    source_sample_rate: int
    source_index: np.ndarray
    source_frames: int

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def decode_clip(raw: RawClip, max_audio_shortfall: float = 0.1, min_frames: int = 1) -> DecodedClip:
    """Decode ``raw`` to 25 fps frames and 16 kHz mono audio (see the module docstring).

    ``max_audio_shortfall`` is the fraction of the video's duration the audio may miss (it is then
    zero-padded); the same fraction bounds how much longer than the video its audio may be before
    the video counts as truncated. Either way :data:`AUDIO_SLACK_S` is always allowed.

    Raises:
        ClipSkipped: for every kind of bad input, with a stable reason slug.
    """
    video_path = Path(raw.video)
    _check_nonempty(video_path, "video")
    src, times, fps, video_start = _decode_video(video_path)
    index = resample_index(times, fps, FPS)
    num_frames = len(index)
    if num_frames < min_frames:
        raise ClipSkipped(
            "too-short", f"{video_path.name}: {num_frames} frames at {FPS} fps, need {min_frames}"
        )
    frames = src[index] if len(src) != num_frames or np.any(index != np.arange(len(src))) else src

    if raw.audio is not None:
        audio_path = Path(raw.audio)
        _check_nonempty(audio_path, "audio")
        samples, rate = read_audio_file(audio_path)
        offset = 0.0
    else:
        samples, rate, audio_start = _decode_audio_stream(video_path)
        offset = audio_start - video_start
    wave = to_mono_16k(samples, rate)
    # Line the audio up with the first video frame (drop samples before it, or delay the audio).
    shift = round(offset * SAMPLE_RATE)
    if shift > 0:
        wave = np.concatenate([np.zeros(shift, np.float32), wave])
    elif shift < 0:
        wave = wave[-shift:]

    need = num_frames * SAMPLES_PER_FRAME
    have = len(wave)
    where = raw.audio.name if raw.audio is not None else f"{video_path.name}'s audio stream"
    slack = AUDIO_SLACK_S * SAMPLE_RATE
    if need - have > max(max_audio_shortfall * need, slack):
        raise ClipSkipped(
            "audio-too-short",
            f"{where} covers {have / SAMPLE_RATE:.2f} s of {need / SAMPLE_RATE:.2f} s of video",
        )
    if have - need > max(max_audio_shortfall * have, slack):
        raise ClipSkipped(
            "truncated-video",
            f"{video_path.name} has {need / SAMPLE_RATE:.2f} s of video but {where} has "
            f"{have / SAMPLE_RATE:.2f} s",
        )
    if have < need:
        wave = np.concatenate([wave, np.zeros(need - have, np.float32)])
    wave = np.clip(wave[:need], -1.0, 1.0).astype(np.float32, copy=False)
    return DecodedClip(
        frames=np.ascontiguousarray(frames),
        waveform=wave,
        source_fps=float(fps),
        source_sample_rate=int(rate),
        source_index=index,
        source_frames=len(src),
    )


def resample_index(times: np.ndarray, fps: float, target_fps: float = FPS) -> np.ndarray:
    """Source frame index for each output frame at ``target_fps`` (nearest presentation time).

    Args:
        times: (N,) presentation times of the source frames in seconds, increasing.
        fps: the source frame rate (sets the duration of the last frame).

    Returns:
        (T,) int64 with ``T = round(duration * target_fps)``, ``duration = span + 1 / fps``.
    """
    times = np.asarray(times, dtype=np.float64)
    n = len(times)
    duration = float(times[-1] - times[0]) + 1.0 / fps
    count = max(1, int(math.floor(duration * target_fps + 0.5)))
    if abs(fps - target_fps) < 1e-3 and abs(n - count) <= 1:
        # Already at the target rate: a single odd timestamp (MPEG-PS muxers produce them) must
        # not duplicate a frame, so keep the decoded frames as they are.
        return np.arange(n, dtype=np.int64)
    wanted = times[0] + np.arange(count) / target_fps
    right = np.clip(np.searchsorted(times, wanted, side="left"), 1, n - 1) if n > 1 else None
    if right is None:
        return np.zeros(count, dtype=np.int64)
    left = right - 1
    nearer_left = (wanted - times[left]) <= (times[right] - wanted)
    return np.where(nearer_left, left, right).astype(np.int64)


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """(N, C) or (N,) float audio at ``rate`` -> (M,) float32 mono at 16 kHz (polyphase)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if rate != SAMPLE_RATE and len(x):
        ratio = Fraction(SAMPLE_RATE, int(rate))
        x = resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)
    return x


def read_audio_file(path: Path) -> tuple[np.ndarray, int]:
    """(N, C) float32 samples and their rate from an audio file (soundfile, else PyAV).

    Public: ``prepare`` reads a clip's separate audio file with it (:func:`decode_clip`), and
    ``talking-faces generate`` reads its speech input with it, so both see the same samples;
    :func:`to_mono_16k` then brings them to 16 kHz mono. Formats libsndfile reads exactly (wav,
    flac, ogg, aiff) go through soundfile, anything else (mp3, m4a, a video's audio stream)
    through PyAV's first audio stream, starting at its first sample.

    Raises:
        ClipSkipped: ``unreadable-audio`` (the file cannot be decoded) or ``no-audio`` (no
            audio stream, or no samples).
    """
    if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
        import soundfile

        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, OSError, ValueError) as exc:  # LibsndfileError is a RuntimeError
            raise ClipSkipped("unreadable-audio", f"{path.name}: {_av_detail(exc)}") from exc
        if len(data) == 0:
            raise ClipSkipped("no-audio", f"{path.name} holds no samples")
        return data, int(rate)
    samples, rate, _ = _decode_audio_stream(path)
    return samples, rate


# ------------------------------------------------------------------------------------ helpers


def _check_nonempty(path: Path, what: str) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        slug = "unreadable-video" if what == "video" else "unreadable-audio"
        raise ClipSkipped(slug, f"{what} {path} cannot be read: {exc.strerror or exc}") from exc
    if size == 0:
        raise ClipSkipped("empty-file", f"{what} {path} is empty (0 bytes)")


def _av_detail(exc: BaseException) -> str:
    msg = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(msg).split())


def _decode_video(path: Path) -> tuple[np.ndarray, np.ndarray, float, float]:
    """All frames of the first video stream: (N,H,W,3) uint8, (N,) times, fps, first time."""
    frames: list[np.ndarray] = []
    times: list[float | None] = []
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ClipSkipped("unreadable-video", f"{path.name}: {_av_detail(exc)}") from exc
    with container:
        if not container.streams.video:
            raise ClipSkipped("unreadable-video", f"{path.name} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = int(stream.frames or 0)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        nominal_fps = float(rate) if rate else float(FPS)
        width, height = stream.codec_context.width, stream.codec_context.height
        error: BaseException | None = None
        try:
            for frame in container.decode(stream):
                if not frames:
                    width, height = frame.width, frame.height
                    if width * height * 3 * max(declared, 1) > MAX_DECODED_BYTES:
                        raise ClipSkipped(
                            "too-long",
                            f"{path.name}: {declared} frames of {width}x{height} do not fit in "
                            "memory at once; cut it into shorter clips",
                        )
                frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
                times.append(frame.time)
                if len(frames) * width * height * 3 > MAX_DECODED_BYTES:
                    raise ClipSkipped(
                        "too-long",
                        f"{path.name}: more than {len(frames)} frames of {width}x{height} do not "
                        "fit in memory at once; cut it into shorter clips",
                    )
        except (av.error.FFmpegError, OSError, ValueError, MemoryError) as exc:
            error = exc
    if not frames:
        detail = _av_detail(error) if error is not None else "no decodable video frames"
        raise ClipSkipped("unreadable-video", f"{path.name}: {detail}")
    if error is not None:
        raise ClipSkipped(
            "truncated-video",
            f"{path.name}: decoding stopped after {len(frames)} frames: {_av_detail(error)}",
        )
    n = len(frames)
    if declared and declared - n >= max(2, round(TRUNCATION_TOLERANCE * declared)):
        raise ClipSkipped(
            "truncated-video", f"{path.name}: {n} of its {declared} declared frames decode"
        )
    t = _frame_times(times, nominal_fps)
    fps = 1.0 / float(np.median(np.diff(t))) if n > 1 else nominal_fps
    return np.stack(frames), t, fps, float(t[0])


def _frame_times(times: list[float | None], nominal_fps: float) -> np.ndarray:
    """Presentation times, or evenly spaced ones when the container's are missing or broken."""
    if all(x is not None for x in times):
        t = np.asarray(times, dtype=np.float64)
        if len(t) == 1 or np.all(np.diff(t) > 0):
            return t
    start = times[0] if times[0] is not None else 0.0
    return start + np.arange(len(times), dtype=np.float64) / nominal_fps


def _decode_audio_stream(path: Path) -> tuple[np.ndarray, int, float]:
    """(N, C) float32 samples, rate and start time of a container's first audio stream."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ClipSkipped("unreadable-audio", f"{path.name}: {_av_detail(exc)}") from exc
    chunks: list[np.ndarray] = []
    start: float | None = None
    with container:
        if not container.streams.audio:
            raise ClipSkipped("no-audio", f"{path.name} has no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        resampler: av.AudioResampler | None = None
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    rate = frame.sample_rate
                    # planar float at the source rate and layout: a format change only
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
                if start is None and frame.time is not None:
                    start = float(frame.time)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray())
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            if not chunks:
                raise ClipSkipped("unreadable-audio", f"{path.name}: {_av_detail(exc)}") from exc
            # keep what decoded; the length check against the video decides
    if not chunks or rate <= 0:
        raise ClipSkipped("no-audio", f"{path.name}'s audio stream holds no samples")
    samples = np.concatenate(chunks, axis=1).T.astype(np.float32, copy=False)
    return samples, rate, start if start is not None else 0.0
