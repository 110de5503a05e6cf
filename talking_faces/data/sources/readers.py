"""Layout readers: find the clips of a raw corpus on disk, before anything is decoded.

raw corpus -> **readers** (RawClip list + clips skipped up front) -> clip.process_clip -> writer

Three layouts:

* ``grid``: GRID as it is downloaded. Videos ``sN/<utt>.mpg`` (also ``.mpeg``/``.mp4``/``.mov``,
  and the ``video/sN`` or ``sN/video`` variants of some mirrors). Audio from ``<utt>.wav`` beside
  the video, else from a parallel audio tree (any ``.wav`` whose speaker folder and name match,
  e.g. ``audio/sN/<utt>.wav``, ``audio_50k/sN/<utt>.wav``), else from the video's own stream.
  Alignments ``align/sN/<utt>.align`` (also ``sN/align/<utt>.align``, ``alignments/sN/...``) in
  GRID units: 25 kHz samples, so value / 1000 is a frame index at 25 fps. Speaker s21 has no video
  in GRID: it simply yields no clips. A clip without an alignment is skipped
  (``missing-alignment``); an alignment whose words are not the sentence its utterance name encodes
  is skipped (``alignment-mismatch``): some mirrors file alignments under the wrong speaker. The
  other half of that check, the alignment's end against the clip's length, needs the decoded clip
  and happens in :func:`talking_faces.data.prepare.clip.process_clip`.
* ``lrw``: ``<WORD>/{train,val,test}/<WORD>_<5 digits>.mp4`` with a ``.txt`` beside it (``Text:``
  line, ``Duration: D seconds`` line for the centred word). The word comes from the folder, the
  split from its parent folder. LRW names no speakers, so each clip is its own identity
  (``speaker == clip_id``).
* ``folder``: any ``.mp4``/``.mov``/``.avi``/``.mkv``/``.mpg``/``.mpeg``/``.webm`` under the
  source; speaker = parent folder name, ``clip_id`` = relative path without suffix; audio from the
  video's own stream.

Every layout picks up a ``<stem>.landmarks.npz`` sidecar beside the video when there is one.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from talking_faces.data.clips import RawClip
from talking_faces.data.sources.grid import words_from_utterance
from talking_faces.errors import UserError
from talking_faces.names import FPS
from talking_faces.utils.io import TMP_PREFIX, sha256_file, sha256_json

LAYOUTS: tuple[str, ...] = ("grid", "lrw", "folder")

#: GRID alignment units per 25 fps video frame (units are samples at 25 kHz)
GRID_UNITS_PER_FRAME = 25000 // FPS
#: alignment tokens that are not words
GRID_SILENCES = frozenset({"sil", "sp"})

GRID_VIDEO_SUFFIXES = (".mpg", ".mpeg", ".mp4", ".mov")
LRW_SPLITS = ("train", "val", "test")
FOLDER_VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".mpg", ".mpeg", ".webm")
SIDECAR_SUFFIX = ".landmarks.npz"

_SPEAKER_DIR = re.compile(r"^s\d+$")
_LRW_NAME = re.compile(r"^(?P<word>[A-Z0-9']+)_\d{5}$")
_DURATION_LINE = re.compile(r"^\s*Duration\s*:\s*([0-9.eE+-]+)", re.IGNORECASE)

PreSkipped = tuple[str, str, str]  # (clip_id, reason slug, detail)


def read_layout(source: Path, layout: str) -> tuple[list[RawClip], list[PreSkipped]]:
    """Find every clip of ``layout`` under ``source``.

    Returns ``(clips, pre_skipped)``: the usable clips, and ``(clip_id, reason, detail)`` for clips
    found but unusable before decoding (``empty-file``, ``missing-alignment``,
    ``alignment-mismatch``, ``duplicate-clip``). Both are sorted by ``clip_id``.

    Raises:
        UserError: ``source`` is missing, ``layout`` is unknown, or no clip of that layout exists.
    """
    source = Path(source)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not source.is_dir():
        raise UserError(f"source folder {source} does not exist; pass the folder of raw clips")
    reader = {"grid": _read_grid, "lrw": _read_lrw, "folder": _read_folder}[layout]
    clips, skipped = reader(source)
    if not clips and not skipped:
        raise UserError(f"no {layout} clips found under {source}; expected {_EXPECTED[layout]}")
    clips.sort(key=lambda c: c.clip_id)
    skipped.sort()
    return clips, skipped


_EXPECTED = {
    "grid": "speaker folders sN/ with <utt>.mpg videos and align/sN/<utt>.align",
    "lrw": "<WORD>/{train,val,test}/<WORD>_00001.mp4 with .txt files beside them",
    "folder": "video files (" + ", ".join(FOLDER_VIDEO_SUFFIXES) + ") with an audio stream",
}


def source_sha256(raw: RawClip) -> str:
    """Content hash of a clip's source files.

    The video's own sha256 when the clip is the video alone; otherwise the sha256 of the canonical
    JSON ``{"video": ..., "audio": ..., "align": ..., "sidecar": ...}`` of per-file sha256s.
    """
    files = {"video": raw.video, "audio": raw.audio, "align": raw.align, "sidecar": raw.sidecar}
    present = {k: sha256_file(p) for k, p in files.items() if p is not None and Path(p).is_file()}
    if set(present) == {"video"}:
        return present["video"]
    return sha256_json(present)


# --------------------------------------------------------------------------------------- GRID


def read_grid_alignment(path: Path) -> list[tuple[int, int, str]]:
    """Parse a GRID ``.align`` file into ``(start, end, token)`` in GRID units (25 kHz samples).

    Raises ValueError on a malformed line.
    """
    rows = []
    for n, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise ValueError(f"{path}:{n}: expected 'start end word', got {line.strip()!r}")
        try:
            start, end = int(float(parts[0])), int(float(parts[1]))
        except ValueError as exc:
            raise ValueError(
                f"{path}:{n}: start and end must be numbers: {line.strip()!r}"
            ) from exc
        if end < start:
            raise ValueError(f"{path}:{n}: end {end} before start {start}")
        rows.append((start, end, parts[2].lower()))
    if not rows:
        raise ValueError(f"{path}: no alignment lines")
    return rows


def alignment_words(rows: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Words of a GRID alignment (``sil``/``sp`` dropped) as ``(start_frame, end_frame, word)``.

    Frames are 25 fps indices (GRID units / 1000, rounded); ``end_frame`` is exclusive.
    """
    return [
        (round(s / GRID_UNITS_PER_FRAME), round(e / GRID_UNITS_PER_FRAME), w)
        for s, e, w in rows
        if w not in GRID_SILENCES
    ]


def check_grid_alignment(utt: str, rows: list[tuple[int, int, str]]) -> str | None:
    """Why an alignment does not belong to utterance ``utt`` (None when its words match)."""
    try:
        expected = words_from_utterance(utt)
    except ValueError:
        return None  # not a GRID-grammar name (a user's own corpus): nothing to check against
    words = [w for _, _, w in rows if w not in GRID_SILENCES]
    if words != expected:
        return f"alignment says {' '.join(words)!r} but {utt!r} is {' '.join(expected)!r}"
    return None


def _speaker_of(path: Path, root: Path) -> str | None:
    """The nearest ancestor folder of ``path`` (below ``root``) named like a GRID speaker."""
    for parent in path.relative_to(root).parents:
        if parent.name and _SPEAKER_DIR.match(parent.name):
            return parent.name
    return None


def _files(root: Path, suffixes: Iterable[str]) -> list[Path]:
    suffixes = tuple(s.lower() for s in suffixes)
    out = []
    for p in root.rglob("*"):
        if p.name.startswith((".", TMP_PREFIX)) or p.suffix.lower() not in suffixes:
            continue
        if p.is_file():
            out.append(p)
    return sorted(out)


def _index_by_speaker(root: Path, suffix: str) -> dict[tuple[str, str], list[Path]]:
    index: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for p in _files(root, (suffix,)):
        spk = _speaker_of(p, root)
        if spk is not None:
            index[(spk, p.stem)].append(p)
    return index


def _pick(candidates: list[Path], speaker: str) -> Path:
    """Prefer a file whose folder is the speaker's own (``sN/x`` over ``sN/align/x``)."""
    return sorted(candidates, key=lambda p: (p.parent.name != speaker, len(p.parts), str(p)))[0]


def _read_grid(source: Path) -> tuple[list[RawClip], list[PreSkipped]]:
    wavs = _index_by_speaker(source, ".wav")
    aligns = _index_by_speaker(source, ".align")
    clips: list[RawClip] = []
    skipped: list[PreSkipped] = []
    seen: dict[str, Path] = {}
    for video in _files(source, GRID_VIDEO_SUFFIXES):
        speaker = _speaker_of(video, source)
        if speaker is None:
            continue
        utt = video.stem
        clip_id = f"{speaker}/{utt}"
        if clip_id in seen:
            skipped.append((clip_id, "duplicate-clip", f"{video} duplicates {seen[clip_id]}"))
            continue
        seen[clip_id] = video
        if video.stat().st_size == 0:
            skipped.append((clip_id, "empty-file", f"{video} is empty (0 bytes)"))
            continue
        beside = video.with_suffix(".wav")
        audio = beside if beside.is_file() else None
        if audio is None and wavs.get((speaker, utt)):
            audio = _pick(wavs[(speaker, utt)], speaker)
        if audio is not None and audio.stat().st_size == 0:
            skipped.append((clip_id, "empty-file", f"audio {audio} is empty (0 bytes)"))
            continue
        if not aligns.get((speaker, utt)):
            skipped.append((clip_id, "missing-alignment", f"no {utt}.align for speaker {speaker}"))
            continue
        align = _pick(aligns[(speaker, utt)], speaker)
        try:
            problem = check_grid_alignment(utt, read_grid_alignment(align))
        except (ValueError, OSError) as exc:
            problem = f"unreadable alignment: {exc}"
        if problem is not None:
            skipped.append((clip_id, "alignment-mismatch", f"{align}: {problem}"))
            continue
        clips.append(
            RawClip(
                clip_id=clip_id,
                speaker=speaker,
                video=video,
                audio=audio,
                align=align,
                sidecar=_sidecar(video),
            )
        )
    return clips, skipped


# ---------------------------------------------------------------------------------------- LRW


def read_lrw_duration(txt: Path) -> float | None:
    """The ``Duration: D seconds`` value of an LRW metadata file (None when absent)."""
    try:
        lines = txt.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        m = _DURATION_LINE.match(line)
        if m:
            try:
                return float(m.group(1))
            except ValueError:
                return None
    return None


def _read_lrw(source: Path) -> tuple[list[RawClip], list[PreSkipped]]:
    clips: list[RawClip] = []
    skipped: list[PreSkipped] = []
    for video in _files(source, (".mp4",)):
        split, word_dir = video.parent.name, video.parent.parent.name
        m = _LRW_NAME.match(video.stem)
        if split not in LRW_SPLITS or m is None or m.group("word") != word_dir:
            continue
        clip_id = f"{word_dir}/{split}/{video.stem}"
        if video.stat().st_size == 0:
            skipped.append((clip_id, "empty-file", f"{video} is empty (0 bytes)"))
            continue
        txt = video.with_suffix(".txt")
        clips.append(
            RawClip(
                clip_id=clip_id,
                speaker=clip_id,
                video=video,
                sidecar=_sidecar(video),
                word=word_dir,
                split_hint=split,
                word_duration=read_lrw_duration(txt) if txt.is_file() else None,
            )
        )
    return clips, skipped


# ------------------------------------------------------------------------------------- folder


def _read_folder(source: Path) -> tuple[list[RawClip], list[PreSkipped]]:
    clips: list[RawClip] = []
    skipped: list[PreSkipped] = []
    for video in _files(source, FOLDER_VIDEO_SUFFIXES):
        rel = video.relative_to(source).with_suffix("")
        clip_id = rel.as_posix()
        speaker = video.parent.name if video.parent != source else source.name
        if video.stat().st_size == 0:
            skipped.append((clip_id, "empty-file", f"{video} is empty (0 bytes)"))
            continue
        clips.append(
            RawClip(clip_id=clip_id, speaker=speaker, video=video, sidecar=_sidecar(video))
        )
    if len({c.clip_id for c in clips}) < len(
        clips
    ):  # a.mp4 and a.mov in one folder: keep the first by path, skip the others
        kept: dict[str, RawClip] = {}
        for c in sorted(clips, key=lambda c: str(c.video)):
            if c.clip_id in kept:
                skipped.append(
                    (c.clip_id, "duplicate-clip", f"{c.video} duplicates {kept[c.clip_id].video}")
                )
            else:
                kept[c.clip_id] = c
        clips = list(kept.values())
    return clips, skipped


def _sidecar(video: Path) -> Path | None:
    p = video.with_name(video.stem + SIDECAR_SUFFIX)
    return p if p.is_file() else None
