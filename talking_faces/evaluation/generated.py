"""Scoring videos made elsewhere: a folder of generated clips, one per test pair, as the frames
an evaluation scores (``talking-faces evaluate --generated DIR``).

folder (one entry per test pair, named by pair) -> **GeneratedFolder.match** (every scored pair's
entry found and hashed, before anything is scored) -> per batch, **GeneratedFolder.clips**
(decoded, frame count checked, resized to the dataset's crop size) -> the ``pred`` of
:class:`~talking_faces.evaluation.loop.BatchScorer`, in place of a method's or a baseline's ->
metric suite -> results JSON (``generated``: the folder, a sha256 over its files) + per-clip CSV
(each pair's file and its sha256)

Pair ``j`` of the scored pairs, whose audio clip is ``C``, is the entry named ``j``, ``jjjj`` (four
digits, zero-padded) or ``C`` with ``/`` replaced by ``_`` (``s1/bbaf2n`` -> ``s1_bbaf2n``); the
clip-id name is refused when two scored pairs share that audio clip. An entry is

- a video file (``.mp4 .mov .mkv .avi .webm``), decoded with PyAV (its first video stream, as
  RGB; an audio stream in it is ignored: LSE scores the dataset's waveform of the pair);
- a folder of PNG frames named by frame number (``0000.png``, ``0001.png``, ... consecutive);
- a ``.npy`` array ``T,H,W,3``: uint8, or float in [0, 1] (clamped, as a method's frames are),
  the one form that holds a method's frames without rounding them to 8 bits.

The frames must be square; frames of another size than the dataset's crops are resized to it
(bilinear, antialiased; the results count them). An entry holds the pair's ``T`` frames; one extra
frame at the end (an encoder's or a muxer's padding to the audio) is dropped and counted, any
other count is refused. docs/metrics.md ("Scoring videos made elsewhere") has the protocol.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from talking_faces.errors import UserError
from talking_faces.utils.io import sha256_file, sha256_json

#: file suffixes decoded as videos (PyAV)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
#: a float array of frames, lossless
ARRAY_SUFFIX = ".npy"
#: the frames of a frame folder
FRAME_SUFFIX = ".png"
#: what the results say about audio in the files
AUDIO_NOTE = "ignored: LSE scores the dataset's waveform of each pair"
#: how many missing names a message lists
SHOWN = 5
HINT = (
    "name each pair's file <pair index>.mp4, <4-digit pair index>.mp4 or <audio clip id with / "
    "as _>.mp4 (or .npy, or a folder of PNG frames; docs/metrics.md, Scoring videos made "
    "elsewhere)"
)


def pair_names(index: int, clip_id: str) -> tuple[str, ...]:
    """The entry names (without suffix) that stand for pair ``index`` with audio clip
    ``clip_id``.

    >>> pair_names(3, "s1/bbaf2n")
    ('3', '0003', 's1_bbaf2n')
    """
    return tuple(dict.fromkeys((str(index), f"{index:04d}", clip_id.replace("/", "_"))))


def entry_name(path: Path) -> str | None:
    """The name an entry of the folder goes by (None: not an entry: another kind of file)."""
    if path.is_dir():
        return path.name
    if path.suffix.lower() in (*VIDEO_SUFFIXES, ARRAY_SUFFIX):
        return path.stem
    return None


def list_entries(folder: Path) -> dict[str, Path]:
    """The folder's entries by name.

    Raises:
        UserError: two entries with one name (``0001.mp4`` and ``0001.npy``).
    """
    entries: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = entry_name(path)
        if name is None or name.startswith("."):
            continue
        if name in entries:
            raise UserError(
                f"{entries[name]} and {path} both stand for {name!r} in {folder}; keep one"
            )
        entries[name] = path
    return entries


def frame_files(folder: Path) -> list[Path]:
    """The PNG frames of a frame folder, in frame order.

    Raises:
        UserError: a PNG not named by its number, a gap in the numbers, no PNG at all.
    """
    frames = [p for p in folder.iterdir() if p.suffix.lower() == FRAME_SUFFIX]
    if not frames:
        raise UserError(f"{folder} holds no {FRAME_SUFFIX} frames; {HINT}")
    bad = [p.name for p in frames if not p.stem.isdigit()]
    if bad:
        raise UserError(f"{folder}: frame {bad[0]} is not named by its number (0000.png, ...)")
    frames.sort(key=lambda p: int(p.stem))
    numbers = [int(p.stem) for p in frames]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        gap = next(a + 1 for a, b in zip(numbers, numbers[1:], strict=False) if b != a + 1)
        raise UserError(f"{folder}: frame {gap} is missing (frames must be numbered without gaps)")
    return frames


def entry_sha256(path: Path) -> str:
    """sha256 of a file; of a frame folder, sha256 of its frames' ``[name, sha256]`` list."""
    if path.is_dir():
        return sha256_json([[p.name, sha256_file(p)] for p in frame_files(path)])
    return sha256_file(path)


def entry_codec(path: Path) -> str:
    """What an entry's frames were stored as: ``png`` (a frame folder), ``npy`` (an array, no
    codec), or a video file's ``<file extension>/<video codec>/<pixel format>`` as PyAV reads it
    (``mp4/h264/yuv420p``): the leaderboard's LSE and LMD move with the codec."""
    if path.is_dir():
        return "png"
    if path.suffix.lower() == ".npy":
        return "npy"
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fmt = stream.codec_context.pix_fmt or "?"
            return f"{path.suffix.lower().lstrip('.')}/{stream.codec_context.name}/{fmt}"
    except (av.error.FFmpegError, IndexError):
        return "unknown"


# ----------------------------------------------------------------------------- decoding
def read_video(path: Path) -> np.ndarray:
    """The first video stream of ``path`` as ``T,H,W,3`` uint8 RGB (audio ignored)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"{path} has no video stream; {HINT}")
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except av.error.FFmpegError as exc:
        raise UserError(f"cannot decode {path} ({exc}); give a video PyAV reads") from None
    if not frames:
        raise UserError(f"{path} holds no video frames")
    return np.stack(frames)


def read_frame_folder(folder: Path) -> np.ndarray:
    """A frame folder's PNGs as ``T,H,W,3`` uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    out = []
    for p in frame_files(folder):
        try:
            with Image.open(p) as img:
                out.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"cannot read frame {p} ({type(exc).__name__})") from None
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise UserError(f"{folder}: its frames are not all one size ({sorted(shapes)})")
    return np.stack(out)


def read_array(path: Path) -> np.ndarray:
    """A ``.npy`` of ``T,H,W,3`` uint8 or float frames (float clamped to [0, 1])."""
    try:
        frames = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} as a .npy array ({exc})".splitlines()[0]) from None
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise UserError(f"{path}: expected frames T,H,W,3, got an array of shape {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise UserError(f"{path}: frames must be uint8 or float in [0, 1], not {frames.dtype}")
    return np.clip(frames, 0.0, 1.0)


def read_entry(path: Path) -> np.ndarray:
    """An entry's frames, ``T,H,W,3`` (uint8, or float in [0, 1] from a ``.npy``)."""
    if path.is_dir():
        return read_frame_folder(path)
    if path.suffix.lower() == ARRAY_SUFFIX:
        return read_array(path)
    return read_video(path)


def to_frames(frames: np.ndarray) -> Tensor:
    """``T,H,W,3`` uint8 or float -> ``T,3,H,W`` float32 in [0, 1], uint8 converted exactly as
    the dataset's real frames are (:func:`talking_faces.data.batch.collate_batch`)."""
    # contiguous in T,3,H,W as the dataset's frames are: a channels-last view would take other
    # convolution kernels in the experts and move their outputs in the last bits
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()
    if x.dtype == torch.uint8:
        return x.to(torch.float32).mul_(1.0 / 255.0)
    return x.to(torch.float32)


def fit_to_crop(frames: Tensor, size: int) -> Tensor:
    """``T,3,H,W`` square frames resized to ``size`` px (bilinear, antialiased) unless they are
    that size already."""
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    resized = torch.nn.functional.interpolate(
        frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return resized.clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------- the folder
@dataclass
class GeneratedFolder:
    """The folder's entry of every scored pair (:meth:`match`), decoded batch by batch
    (:meth:`clips`); what each pair's file was, for its per-clip row (:meth:`row`)."""

    folder: Path
    #: the scored pairs' audio clip ids, in pair order
    clip_ids: list[str]
    #: each scored pair's entry, in pair order
    paths: list[Path]
    #: the dataset's crop size (frames of another size are resized to it)
    size: int
    #: entries of the folder that stand for no scored pair (e.g. pairs past ``--limit``)
    unused: int = 0
    #: per pair decoded so far: ``{"generated_file", "generated_sha256", ...}`` (:meth:`row`)
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def match(
        cls, folder: str | os.PathLike[str], pairs: Sequence[dict[str, str]], size: int
    ) -> GeneratedFolder:
        """Find the entry of each of the scored ``pairs`` (``pairs.json`` entries, in order).

        Raises:
            UserError: not a folder; a pair with no entry (how many, the first few names); a
                pair with two; one name standing for two pairs.
        """
        root = Path(folder)
        if not root.is_dir():
            raise UserError(f"--generated {root} is not a folder; {HINT}")
        entries = list_entries(root)
        clip_ids = [str(p["audio"]) for p in pairs]
        claimed: dict[str, int] = {}
        paths: list[Path | None] = []
        for j, clip in enumerate(clip_ids):
            found = [n for n in pair_names(j, clip) if n in entries]
            if len(found) > 1:
                raise UserError(
                    f"pair {j} ({clip}) has two files in {root}: {entries[found[0]].name} and "
                    f"{entries[found[1]].name}; keep one"
                )
            for name in found:
                if name in claimed:
                    raise UserError(
                        f"{entries[name]} stands for pairs {claimed[name]} and {j} (audio clip "
                        f"{clip}); name the files by pair index (0000.mp4, 0001.mp4, ...)"
                    )
                claimed[name] = j
            paths.append(entries[found[0]] if found else None)
        missing = [j for j, p in enumerate(paths) if p is None]
        if missing:
            shown = ", ".join(f"{j:04d} ({clip_ids[j]})" for j in missing[:SHOWN])
            more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
            raise UserError(
                f"{len(missing)} of {len(clip_ids)} test pairs have no file in {root}: "
                f"{shown}{more}; {HINT}"
            )
        found_paths = [p for p in paths if p is not None]
        return cls(root, clip_ids, found_paths, int(size), len(entries) - len(claimed))

    def clips(self, indices: list[int], num_frames: int) -> Tensor:
        """Pairs ``indices`` (all ``num_frames`` long) as ``B,T,3,H,W`` float32 in [0, 1] at
        the crop size, on the CPU.

        Raises:
            UserError: an unreadable entry, frames that are not square, a frame count other
                than ``num_frames`` (or one more).
        """
        return torch.stack([self._clip(j, num_frames) for j in indices])

    def _clip(self, j: int, t: int) -> Tensor:
        path = self.paths[j]
        frames = read_entry(path)
        n, h, w = frames.shape[:3]
        if n not in (t, t + 1):
            raise UserError(
                f"{path}: {n} frames, but pair {j} ({self.clip_ids[j]}) has {t}; give one "
                f"frame per frame of its audio clip ({t} at 25 fps; one extra at the end is "
                "dropped)"
            )
        if h != w:
            raise UserError(
                f"{path}: frames are {w}x{h}, not square; give the face crops alone "
                f"({self.size}x{self.size}, the dataset's crop size, or any square size)"
            )
        self.rows[j] = {
            "generated_file": path.name,
            "generated_sha256": entry_sha256(path),
            "generated_size": f"{w}x{h}",
            "generated_trimmed": int(n == t + 1),
            "generated_codec": entry_codec(path),
        }
        return fit_to_crop(to_frames(frames[:t]), self.size)

    def row(self, j: int) -> dict[str, Any]:
        """The per-clip CSV columns of pair ``j`` (decoded by :meth:`clips`): its file, the
        file's sha256 (a frame folder's: over its frames), the frames' size, whether a last
        frame was dropped, how its frames were stored (:func:`entry_codec`)."""
        return dict(self.rows[j])

    def record(self, per_clip: list[dict[str, Any]]) -> dict[str, Any]:
        """The results' ``generated`` entry, from every process's per-clip rows: the folder,
        the sha256 over the scored files (of their ``[name, sha256]`` list, in pair order, as
        the per-clip CSV lists them), their formats and codecs, how many were resized and
        trimmed."""
        crop = f"{self.size}x{self.size}"
        resized = collections.Counter(
            r["generated_size"] for r in per_clip if r["generated_size"] != crop
        )
        formats = collections.Counter(
            "png frames" if p.is_dir() else p.suffix.lower().lstrip(".") for p in self.paths
        )
        codecs = collections.Counter(str(r["generated_codec"]) for r in per_clip)
        return {
            "path": str(self.folder),
            "sha256": sha256_json([[r["generated_file"], r["generated_sha256"]] for r in per_clip]),
            "files": len(per_clip),
            "unused_entries": self.unused,
            "formats": dict(sorted(formats.items())),
            "codecs": dict(sorted(codecs.items())),
            "resized": {
                "count": sum(resized.values()),
                "from": dict(sorted(resized.items())),
                "to": crop,
                "how": "bilinear, antialiased",
            },
            "trimmed_last_frame": sum(int(r["generated_trimmed"]) for r in per_clip),
            "audio": AUDIO_NOTE,
        }


__all__ = [
    "AUDIO_NOTE",
    "GeneratedFolder",
    "entry_codec",
    "entry_sha256",
    "fit_to_crop",
    "list_entries",
    "pair_names",
    "read_entry",
    "to_frames",
]
