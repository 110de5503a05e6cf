"""Writes the built-in synthetic corpus in GRID's or LRW's on-disk layout.

Place in the data flow: this is the first arrow for the synthetic data. ``talking-faces synth``
(:mod:`talking_faces.cli.synth`) calls :func:`write_corpus`; the result is read by
``prepare`` exactly like the real datasets, plus one ground-truth landmark sidecar per clip.

One clip is made in three independent parts, each from its own seeded generator:

* speech: the words are spoken by the speaker's voice (:mod:`.speech`), giving the waveform and
  its phone and word alignment;
* mouth: the phones give the coarticulated mouth track at the frame centres (:mod:`.visemes`);
* motion: blinks, head drift and expression from a generator that never sees the speech
  (:mod:`.motion`).

The face renderer (:mod:`.face`) draws every frame from the speaker's style, the mouth and the
motion, and returns the 68 landmarks it drew from.

GRID layout::

    sN/<utt>.mpg                MPEG-1 video, 25 fps, 75 frames, with an MP2 audio stream (32 kHz)
    sN/<utt>.wav                16-bit mono PCM at 25 kHz
    sN/<utt>.landmarks.npz      ground-truth landmarks (see below)
    align/sN/<utt>.align        "start end word" lines in 25 kHz samples, sil first and last

LRW layout::

    <WORD>/{train,val,test}/<WORD>_<5 digits>.mp4           H.264 + AAC (48 kHz), 29 frames, 25 fps
    <WORD>/{train,val,test}/<WORD>_<5 digits>.txt           "Text: WORD", "Duration: D seconds"
    <WORD>/{train,val,test}/<WORD>_<5 digits>.landmarks.npz

Sidecar ``<stem>.landmarks.npz`` (``np.savez``, no pickle): ``landmarks`` float32 (T, 68, 2), x and
y in pixels of the written video (iBUG 68 order, pixel centres at integers); ``valid`` bool (T,);
``fps`` float32 scalar 25; ``speaker`` int32 scalar (the synthetic speaker, 1-based).

Every file of a clip is written under a temporary name and all are renamed together once the
clip is complete, the video last; ``corpus.json`` and ``README.txt`` at the root are written when
every clip is done.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import shutil
import traceback
import wave
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import av
import numpy as np

from talking_faces import __version__
from talking_faces.data.synthetic import lexicon, speech, visemes
from talking_faces.data.synthetic.face import FaceRenderer, FaceState, speaker_style
from talking_faces.data.synthetic.motion import ClipMotion, random_motion
from talking_faces.errors import UserError
from talking_faces.names import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from talking_faces.utils.io import (
    atomic_path,
    remove_stale_temporaries,
    write_json_atomic,
    write_text_atomic,
)
from talking_faces.utils.progress import progress

LAYOUTS: tuple[str, ...] = ("grid", "lrw")
GRID_FRAMES = 75
GRID_SECONDS = GRID_FRAMES / FPS
# GRID ships its audio at 25 kHz (and 50 kHz); its .align units are 25 kHz samples.
GRID_WAV_RATE = 25000
MPG_AUDIO_RATE = 32000
LRW_FRAMES = 29
LRW_AUDIO_RATE = 48000  # AAC frames are 1024 samples; at 48 kHz the padded tail stays under 1 frame
LRW_SPLITS: tuple[str, ...] = ("train", "val", "test")
LRW_CONTEXT_WORDS = (2, 3)  # words of context on each side of the target word (inclusive range)
MIN_SIZE = 64

# Independent random streams of one clip; the motion stream never sees the speech.
_PLAN, _SPEECH, _MOTION = 1, 2, 3


@dataclass(frozen=True)
class ClipSpec:
    """What one clip is, decided before anything is rendered.

    ``stem`` is the clip's path below the corpus root without extension (``s1/bbaf2n`` or
    ``ABOUT/train/ABOUT_00001``). ``words`` are all words spoken; for LRW ``target`` indexes the
    centred word in ``words`` (else None) and ``split`` is its folder.
    """

    layout: str
    speaker: int
    index: int
    seed: int
    words: tuple[str, ...]
    stem: str
    target: int | None = None
    split: str | None = None

    @property
    def num_frames(self) -> int:
        return GRID_FRAMES if self.layout == "grid" else LRW_FRAMES


@dataclass
class Clip:
    """A rendered clip, everything in memory.

    frames uint8 (T, H, W, 3); landmarks float32 (T, 68, 2) in frame pixels; waveform float32
    (T * 640,) at 16 kHz under exactly the T frames; word_times ``(word, start, end)`` in seconds
    from the clip start, contiguous over the clip, ``sil`` first and last (GRID) or the words
    overlapping the window (LRW, clipped to it); ``target_duration`` the centred word's length
    (LRW) or None.
    """

    spec: ClipSpec
    frames: np.ndarray
    landmarks: np.ndarray
    waveform: np.ndarray
    word_times: list[tuple[str, float, float]]
    mouth: visemes.MouthTrack
    motion: ClipMotion
    target_duration: float | None = None


# --------------------------------------------------------------------------------------------
# Planning


def _lrw_split_labels(n: int, rng: np.random.Generator) -> list[str]:
    """About 80/10/10 over one speaker's ``n`` clips, val and test each at least one from n >= 3."""
    if n == 1:
        labels = ["train"]
    elif n == 2:
        labels = ["train", "test"]
    else:
        k = max(1, round(0.1 * n))
        labels = ["train"] * (n - 2 * k) + ["val"] * k + ["test"] * k
    return [labels[i] for i in rng.permutation(n)]


def plan_corpus(layout: str, speakers: int, clips: int, seed: int = 0) -> list[ClipSpec]:
    """Every clip of the corpus, in speaker then clip order; deterministic in its arguments.

    GRID: ``clips`` distinct random sentences per speaker, named by
    :func:`~talking_faces.data.synthetic.lexicon.utterance_name`. LRW: per clip a target word from
    :data:`~talking_faces.data.synthetic.lexicon.VOCABULARY` with 2-3 context words on each side;
    splits about 80/10/10 per speaker; ``<WORD>_<5 digits>`` numbered per word and split.
    """
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    specs: list[ClipSpec] = []
    if layout == "grid":
        for spk in range(1, speakers + 1):
            rng = np.random.default_rng([seed, spk, _PLAN])
            used: set[str] = set()
            for i in range(clips):
                words = lexicon.random_sentence(rng)
                while lexicon.utterance_name(words) in used:
                    words = lexicon.random_sentence(rng)
                name = lexicon.utterance_name(words)
                used.add(name)
                specs.append(ClipSpec("grid", spk, i, seed, tuple(words), f"s{spk}/{name}"))
        return specs

    vocab = lexicon.VOCABULARY
    drafts = []
    for spk in range(1, speakers + 1):
        rng = np.random.default_rng([seed, spk, _PLAN])
        splits = _lrw_split_labels(clips, rng)
        for i in range(clips):
            before = int(rng.integers(LRW_CONTEXT_WORDS[0], LRW_CONTEXT_WORDS[1] + 1))
            after = int(rng.integers(LRW_CONTEXT_WORDS[0], LRW_CONTEXT_WORDS[1] + 1))
            words = [vocab[int(j)] for j in rng.integers(len(vocab), size=before + 1 + after)]
            drafts.append((spk, i, tuple(words), before, splits[i]))
    numbers: Counter[tuple[str, str]] = Counter()
    for spk, i, spoken, target, split in drafts:
        word = spoken[target].upper()
        numbers[(word, split)] += 1
        stem = f"{word}/{split}/{word}_{numbers[(word, split)]:05d}"
        specs.append(ClipSpec("lrw", spk, i, seed, spoken, stem, target, split))
    return specs


# --------------------------------------------------------------------------------------------
# Rendering


@lru_cache(maxsize=64)
def _renderer(speaker: int, seed: int, size: int) -> FaceRenderer:
    return FaceRenderer(speaker_style(speaker, seed), size)


def _word_entries(word_times: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    return [w for w in word_times if w[0] not in ("sil", "sp")]


def render_clip(spec: ClipSpec, size: int) -> Clip:
    """Speak, animate and draw one clip (see the module docstring): a :class:`Clip`."""
    voice = speech.speaker_voice(spec.speaker, spec.seed)
    speech_rng = np.random.default_rng([spec.seed, spec.speaker, spec.index, _SPEECH])
    motion_rng = np.random.default_rng([spec.seed, spec.speaker, spec.index, _MOTION])
    t = spec.num_frames
    n = t * SAMPLES_PER_FRAME
    target_duration = None
    if spec.layout == "grid":
        utt = speech.synthesize(spec.words, voice, speech_rng, total_duration=GRID_SECONDS)
        waveform = utt.waveform
        start = 0.0
        phones = utt.phones
        word_times = list(utt.word_times)
    else:
        utt = speech.synthesize(spec.words, voice, speech_rng)
        assert spec.target is not None
        _, w0, w1 = _word_entries(utt.word_times)[spec.target]
        target_duration = w1 - w0
        waveform, start, phones, word_times = _lrw_window(utt, 0.5 * (w0 + w1), n, speech_rng)
    times = start + (np.arange(t) + 0.5) / FPS
    mouth = visemes.mouth_track(phones, times)
    motion = random_motion(t, motion_rng, FPS)
    frames, landmarks = _draw_frames(_renderer(spec.speaker, spec.seed, size), mouth, motion)
    assert len(waveform) == n, (len(waveform), n)
    return Clip(
        spec=spec,
        frames=frames,
        landmarks=landmarks,
        waveform=np.asarray(waveform, dtype=np.float32),
        word_times=word_times,
        mouth=mouth,
        motion=motion,
        target_duration=target_duration,
    )


def _lrw_window(
    utt: speech.Utterance, centre: float, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, float, list[speech.Phone], list[tuple[str, float, float]]]:
    """The ``n`` samples of ``utt`` centred on ``centre`` seconds (an LRW clip's target word):
    ``(waveform, start in seconds, phones shifted onto the padded waveform, word times
    relative to the window, clipped to it)``."""
    sr = SAMPLE_RATE
    # Window of T frames centred on the target word, on the 16 kHz sample grid. When the
    # context is too short to fill it, pad with noise as quiet as the utterance's own
    # leading/trailing silence (digital zeros would be a tell-tale step).
    first = round(centre * sr) - n // 2
    pad_front = max(0, -first)
    pad_back = max(0, first + n - len(utt.waveform))
    edge = sr // 10
    floor_front = float(np.sqrt(np.mean(utt.waveform[:edge] ** 2)))
    floor_back = float(np.sqrt(np.mean(utt.waveform[-edge:] ** 2)))
    waveform = np.concatenate(
        [
            floor_front * rng.standard_normal(pad_front),
            utt.waveform,
            floor_back * rng.standard_normal(pad_back),
        ]
    ).astype(np.float32)
    shift = pad_front / sr
    phones = [speech.Phone(p.symbol, p.start + shift, p.end + shift, p.word) for p in utt.phones]
    first += pad_front
    waveform = waveform[first : first + n]
    start = first / sr
    end = start + n / sr
    word_times = []
    for w, a, b in utt.word_times:
        a, b = max(a + shift, start) - start, min(b + shift, end) - start
        if b > a:
            word_times.append((w, a, b))
    return waveform, start, phones, word_times


def _draw_frames(
    renderer: FaceRenderer, mouth: visemes.MouthTrack, motion: ClipMotion
) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of the mouth track and the motion: ``(frames (T, H, W, 3) uint8,
    landmarks (T, 68, 2) float32)``."""
    t, size = len(motion.blink), renderer.size
    frames = np.empty((t, size, size, 3), dtype=np.uint8)
    landmarks = np.empty((t, 68, 2), dtype=np.float32)
    for i in range(t):
        state = FaceState(
            jaw_open=float(mouth.jaw_open[i]),
            lip_width=float(mouth.lip_width[i]),
            lip_round=float(mouth.lip_round[i]),
            closure=float(mouth.closure[i]),
            blink=float(motion.blink[i]),
            brow_raise=float(motion.brow_raise[i]),
            smile=float(motion.smile[i]),
            gaze=(float(motion.gaze[i, 0]), float(motion.gaze[i, 1])),
            tx=float(motion.tx[i]),
            ty=float(motion.ty[i]),
            rotation=float(motion.rotation[i]),
            scale=float(motion.scale[i]),
        )
        frames[i], landmarks[i] = renderer.render(state)
    return frames, landmarks


# --------------------------------------------------------------------------------------------
# Encoding


def _pcm16(wave_f32: np.ndarray) -> np.ndarray:
    return np.round(np.clip(wave_f32, -1.0, 1.0) * 32767.0).astype(np.int16)


#: FFmpeg CPU flags every x86-64 CPU has (MMX, MMXEXT, SSE, SSE2, CMOV). FFmpeg's native AAC
#: encoder gives other bytes with its AVX2/FMA3 float kernels than with its SSE ones; with these
#: flags forced while a clip is encoded, every x86-64 CPU runs the same kernels.
_FFMPEG_BASELINE_FLAGS = 0x1 | 0x2 | 0x8 | 0x10 | 0x1000


@lru_cache(maxsize=1)
def _libavutil() -> Any:
    """PyAV's libavutil (for ``av_force_cpu_flags``), or None where it cannot be found."""
    import ctypes
    import glob

    folder = Path(av.__file__).resolve().parent
    for pattern in ("../av.libs/libavutil*.so*", "../av/.dylibs/libavutil*.dylib"):
        found = sorted(glob.glob(str(folder / pattern)))
        if found:
            try:
                return ctypes.CDLL(found[0])
            except OSError:
                return None
    return None


@contextlib.contextmanager
def _ffmpeg_baseline_cpu() -> Any:
    """Encode with FFmpeg's baseline x86-64 kernels (see :data:`_FFMPEG_BASELINE_FLAGS`)."""
    import platform

    lib = _libavutil() if platform.machine().lower() in ("x86_64", "amd64") else None
    if lib is None:
        yield
        return
    lib.av_force_cpu_flags(_FFMPEG_BASELINE_FLAGS)
    try:
        yield
    finally:
        lib.av_force_cpu_flags(-1)  # back to detection


def _encode_av(
    path: Path,
    frames: np.ndarray,
    audio: np.ndarray,
    audio_rate: int,
    container: str,
    video_codec: str,
    audio_codec: str,
) -> None:
    """Mux ``frames`` (T, H, W, 3) uint8 at 25 fps and mono ``audio`` (float32) into ``path``."""
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w", format=container) as out:
        if video_codec == "libx264":
            # One thread: clips are encoded in parallel already, and x264 stays deterministic.
            v = out.add_stream(
                video_codec,
                rate=FPS,
                options={"crf": "18", "preset": "fast", "threads": "1"},
            )
        else:
            v = out.add_stream(video_codec, rate=FPS)
            v.bit_rate = int(2_000_000 * (width * height) / (256 * 256))
            v.codec_context.qmax = 6  # caps the quantiser: clean frames even on busy frames
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.codec_context.thread_count = 1
        a = out.add_stream(audio_codec, rate=audio_rate, layout="mono")
        a.bit_rate = 96000 if audio_codec == "aac" else 128000
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode():  # flush delayed frames: every frame must be in the file
            out.mux(packet)
        fmt = a.codec_context.format.name
        if fmt == "s16":
            samples = _pcm16(audio)[None]
        else:  # aac: planar float
            samples = np.clip(audio, -1.0, 1.0).astype(np.float32)[None]
        aframe = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
        aframe.sample_rate = audio_rate
        aframe.pts = 0
        aframe.time_base = Fraction(1, audio_rate)
        for packet in a.encode(aframe):
            out.mux(packet)
        for packet in a.encode():
            out.mux(packet)


def _write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def _write_sidecar(path: Path, landmarks: np.ndarray, speaker: int) -> None:
    with open(path, "wb") as f:
        np.savez(
            f,
            landmarks=landmarks.astype(np.float32),
            valid=np.ones(len(landmarks), dtype=bool),
            fps=np.float32(FPS),
            speaker=np.int32(speaker),
        )


def grid_align_lines(word_times: list[tuple[str, float, float]]) -> list[str]:
    """``start end word`` lines in GRID units (25 kHz samples; value / 1000 = frame at 25 fps)."""
    lines = []
    for word, a, b in word_times:
        lines.append(f"{round(a * GRID_WAV_RATE)} {round(b * GRID_WAV_RATE)} {word}")
    return lines


def clip_paths(spec: ClipSpec, root: Path) -> dict[str, Path]:
    """The files of one clip under ``root``, by role (video, audio, align, text, landmarks)."""
    stem = root / spec.stem
    paths = {"landmarks": stem.with_name(stem.name + ".landmarks.npz")}
    if spec.layout == "grid":
        spk_dir, name = spec.stem.split("/")
        paths["video"] = stem.with_name(stem.name + ".mpg")
        paths["audio"] = stem.with_name(stem.name + ".wav")
        paths["align"] = root / "align" / spk_dir / f"{name}.align"
    else:
        paths["video"] = stem.with_name(stem.name + ".mp4")
        paths["text"] = stem.with_name(stem.name + ".txt")
    return paths


def write_clip(clip: Clip, root: Path) -> list[Path]:
    """Write one clip's files under ``root``, all or none; returns the written paths."""
    spec = clip.spec
    paths = clip_paths(spec, root)
    with contextlib.ExitStack() as stack:
        # Entered first, renamed last: a clip whose video exists is complete.
        tmp_video = stack.enter_context(atomic_path(paths["video"]))
        tmp_marks = stack.enter_context(atomic_path(paths["landmarks"], suffix=".npz"))
        _write_sidecar(tmp_marks, clip.landmarks, spec.speaker)
        if spec.layout == "grid":
            wav25 = speech.resample(clip.waveform, SAMPLE_RATE, GRID_WAV_RATE)
            _write_wav(
                stack.enter_context(atomic_path(paths["audio"])), _pcm16(wav25), GRID_WAV_RATE
            )
            text = "\n".join(grid_align_lines(clip.word_times)) + "\n"
            stack.enter_context(atomic_path(paths["align"])).write_text(text)
            audio = speech.resample(clip.waveform, SAMPLE_RATE, MPG_AUDIO_RATE)
            with _ffmpeg_baseline_cpu():
                _encode_av(
                    tmp_video, clip.frames, audio, MPG_AUDIO_RATE, "mpeg", "mpeg1video", "mp2"
                )
        else:
            assert clip.target_duration is not None
            word = spec.words[spec.target or 0].upper()
            text = f"Text: {word}\nDuration: {clip.target_duration:.2f} seconds\n"
            stack.enter_context(atomic_path(paths["text"])).write_text(text)
            audio = speech.resample(clip.waveform, SAMPLE_RATE, LRW_AUDIO_RATE)
            with _ffmpeg_baseline_cpu():
                _encode_av(tmp_video, clip.frames, audio, LRW_AUDIO_RATE, "mp4", "libx264", "aac")
    return list(paths.values())


# --------------------------------------------------------------------------------------------
# The whole corpus


def _disk_full(exc: OSError, where: Path) -> UserError:
    return UserError(f"disk full while writing the corpus in {where}; free space and run again")


def _make_clip(job: tuple[ClipSpec, int, str]) -> str:
    """Pool worker: render and write one clip; returns its stem. Errors cross as UserError or
    RuntimeError with the worker's traceback in the message (both pickle)."""
    spec, size, root = job
    try:
        write_clip(render_clip(spec, size), Path(root))
    except UserError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _disk_full(exc, Path(root)) from None
        raise RuntimeError(f"while making {spec.stem}:\n{traceback.format_exc()}") from None
    except Exception:
        raise RuntimeError(f"while making {spec.stem}:\n{traceback.format_exc()}") from None
    return spec.stem


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder; choose a folder path")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(
                f"output folder {out} is not empty; choose a new folder or pass --overwrite "
                "to replace its contents"
            )
        resolved = out.resolve()
        cwd = Path.cwd().resolve()
        if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
            raise UserError(f"refusing to clear {out}; give a dedicated output folder")
        if resolved == cwd or resolved in cwd.parents:
            raise UserError(
                f"refusing to clear {out}: it contains the current folder; give a dedicated folder"
            )
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def check_arguments(
    layout: str, speakers: int, clips: int, size: int, seed: int, workers: int
) -> None:
    """Raise :class:`UserError` for arguments :func:`write_corpus` cannot use."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if speakers < 1:
        raise UserError(f"--speakers must be at least 1, got {speakers}")
    if clips < 1:
        raise UserError(f"--clips must be at least 1, got {clips}")
    if size < MIN_SIZE or size % 16:
        raise UserError(f"--size must be a multiple of 16 and at least {MIN_SIZE}, got {size}")
    if seed < 0:
        raise UserError(f"--seed must be non-negative, got {seed}")
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    sentences = int(np.prod([len(words) for words in lexicon.GRID_GRAMMAR.values()]))
    if layout == "grid" and clips > sentences:
        raise UserError(
            f"--clips {clips} is more than the {sentences} distinct GRID sentences per speaker"
        )


_SIDECAR_DOC = {
    "file": "<clip stem>.landmarks.npz (numpy .npz, no pickle)",
    "landmarks": "float32 (T, 68, 2): x, y in pixels of the written video, pixel centres at "
    "integers, iBUG 68 order (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, "
    "inner lips 60-67)",
    "valid": "bool (T,): all true (ground truth)",
    "fps": "float32 scalar: 25",
    "speaker": "int32 scalar: synthetic speaker number (1-based)",
}


def _readme(meta: dict[str, Any]) -> str:
    if meta["layout"] == "grid":
        layout = (
            "sN/<utt>.mpg             MPEG-1 video, 25 fps, 75 frames, MP2 audio stream (32 kHz)\n"
            "sN/<utt>.wav             16-bit mono PCM, 25 kHz, 3 s\n"
            "sN/<utt>.landmarks.npz   ground-truth landmarks\n"
            "align/sN/<utt>.align     'start end word' lines, 25 kHz samples (value/1000 = frame)\n"
            "<utt> encodes the GRID sentence, e.g. bbaf2n = 'bin blue at f two now'.\n"
        )
    else:
        layout = (
            "<WORD>/<split>/<WORD>_NNNNN.mp4            H.264 + AAC (48 kHz), 29 frames, 25 fps\n"
            "<WORD>/<split>/<WORD>_NNNNN.txt            'Text: WORD' and 'Duration: D seconds'\n"
            "<WORD>/<split>/<WORD>_NNNNN.landmarks.npz  ground-truth landmarks\n"
            "The target word is centred in 1.16 s of context speech; splits train/val/test.\n"
        )
    sidecar = "\n".join(f"  {k}: {v}" for k, v in _SIDECAR_DOC.items())
    return (
        f"Synthetic talking-face corpus (talking_faces {meta['version']}), "
        f"{meta['layout']} layout\n"
        f"made by: {meta['command']}\n"
        f"{meta['speakers']} speakers x {meta['clips_per_speaker']} clips, {meta['size']} px, "
        f"seed {meta['seed']}\n\n{layout}\nLandmark sidecar:\n{sidecar}\n\n"
        "corpus.json lists every clip (stem, speaker, words, split). Frames and audio are "
        "deterministic in the seed and arguments.\n"
    )


def write_corpus(
    out: str | os.PathLike[str],
    layout: str,
    speakers: int = 4,
    clips: int = 10,
    size: int = 256,
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the synthetic corpus to ``out`` and return its description (also in corpus.json).

    ``workers`` processes render clips in parallel (default: every available core). Raises
    :class:`UserError` for bad arguments, a non-empty ``out`` without ``overwrite``, or a full
    disk; no partial clip is left behind in any case.
    """
    workers = available_cores() if workers is None else int(workers)
    check_arguments(layout, speakers, clips, size, seed, workers)
    root = Path(out)
    specs = plan_corpus(layout, speakers, clips, seed)
    try:
        _prepare_output(root, overwrite)
        _run_jobs(specs, size, root, min(workers, len(specs)))
        meta = {
            "version": __version__,
            "command": (
                f"talking-faces synth {out} --layout {layout} --speakers {speakers} "
                f"--clips {clips} --size {size} --seed {seed}"
            ),
            "layout": layout,
            "speakers": speakers,
            "clips_per_speaker": clips,
            "num_clips": len(specs),
            "size": size,
            "seed": seed,
            "fps": FPS,
            "frames_per_clip": specs[0].num_frames,
            "audio": (
                {"wav_rate": GRID_WAV_RATE, "mpg_audio": f"mp2 {MPG_AUDIO_RATE} Hz"}
                if layout == "grid"
                else {"mp4_audio": f"aac {LRW_AUDIO_RATE} Hz"}
            ),
            "sidecar": _SIDECAR_DOC,
            "clips": [
                {
                    "stem": s.stem,
                    "speaker": s.speaker,
                    "words": list(s.words),
                    "target": s.target,
                    "split": s.split,
                }
                for s in specs
            ],
        }
        write_text_atomic(root / "README.txt", _readme(meta))
        write_json_atomic(root / "corpus.json", meta)
    except BaseException as exc:
        if root.is_dir():
            _remove_incomplete_clips(specs, root)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise _disk_full(exc, root) from None
        raise
    return meta


def _remove_incomplete_clips(specs: list[ClipSpec], root: Path) -> None:
    """After a failure: drop temporaries, and the files of any clip whose video (renamed last)
    is missing, e.g. a worker stopped between renames."""
    remove_stale_temporaries(root)
    for spec in specs:
        paths = clip_paths(spec, root)
        if not paths["video"].exists():
            for p in paths.values():
                p.unlink(missing_ok=True)


def _run_jobs(specs: list[ClipSpec], size: int, root: Path, workers: int) -> None:
    jobs = [(s, size, str(root)) for s in specs]
    bar = progress(total=len(jobs), desc=f"synth {specs[0].layout}", unit="clip")
    try:
        if workers <= 1:
            for job in jobs:
                _make_clip(job)
                bar.update(1)
            return
        # spawn: workers start clean (no inherited threads or locks from the caller)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers) as pool:
            for _ in pool.imap_unordered(_make_clip, jobs, chunksize=1):
                bar.update(1)
    finally:
        bar.close()
