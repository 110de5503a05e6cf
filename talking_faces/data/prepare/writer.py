"""The writer of a prepared dataset: per-clip work files, LitData shards, manifest and pairs.

raw corpus -> readers -> clip.process_clip (ProcessedClip) -> **writer** -> prepared dataset
-> talking_faces.data (TalkingFaceDataModule)

The layout and the sample schema are in :mod:`talking_faces.data.format`, which the readers share.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from talking_faces.data.clips import ProcessedClip
from talking_faces.data.format import (  # noqa: F401  (the writer's public names)
    FORMAT_VERSION,
    SHARD_FORMAT,
    SILENCE_TOKENS,
    encode_jpeg,
    jpeg_offsets,
    pack_jpeg_frames,
    unpack_jpeg_frames,
)
from talking_faces.utils.io import atomic_path, sha256_json

#: LitData chunk size; several chunks per split let DataLoader workers and DDP ranks stream
#: different files
CHUNK_BYTES = "64MB"
#: stored audio features that a work file may lack (made by hand, or before they were added)
OPTIONAL_FEATURES: tuple[str, ...] = ("mfcc_davs", "mfcc_wavepad")


# ---------------------------------------------------------------------------- work folder


def clip_key(clip_id: str) -> str:
    """File-name-safe key of a clip id (the work file of ``clip_id`` is ``clips/<key>.npz``)."""
    return hashlib.sha1(clip_id.encode()).hexdigest()[:20]


def save_clip_file(path: Path, clip: ProcessedClip, jpeg_quality: int) -> None:
    """Write one finished clip to ``path`` (npz, no pickle) atomically."""
    words = [(int(s), int(e), str(w)) for s, e, w in clip.words if w not in SILENCE_TOKENS]
    info = {
        "clip_id": clip.clip_id,
        "speaker": clip.speaker,
        "word": clip.word,
        "split_hint": clip.split_hint,
        "num_frames": clip.num_frames,
        # frames whose landmarks the backend found (the rest were interpolated, fill_gaps)
        "frames_with_face": int(np.count_nonzero(clip.landmarks_valid)),
        "source_sha256": clip.source_sha256,
    }
    optional: dict[str, Any] = {
        key: np.ascontiguousarray(getattr(clip, key), dtype=np.float32)
        for key in OPTIONAL_FEATURES
        if getattr(clip, key) is not None
    }
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            info=np.array(json.dumps(info, sort_keys=True)),
            frames=np.frombuffer(pack_jpeg_frames(clip.frames, jpeg_quality), dtype=np.uint8),
            waveform=np.ascontiguousarray(clip.waveform, dtype=np.float32),
            mfcc=np.ascontiguousarray(clip.mfcc, dtype=np.float32),
            logmel=np.ascontiguousarray(clip.logmel, dtype=np.float32),
            landmarks=np.ascontiguousarray(clip.landmarks, dtype=np.float32),
            landmarks_valid=np.ascontiguousarray(clip.landmarks_valid, dtype=bool),
            word_frames=np.array([(s, e) for s, e, _ in words], dtype=np.int32).reshape(-1, 2),
            word_text=np.array([w for _, _, w in words], dtype=str),
            **optional,
        )


def read_clip_info(path: Path) -> dict[str, Any]:
    """The small ``info`` record of a work file (reads only that member)."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["info"]))


def read_clip_words(path: Path) -> list[str]:
    """The aligned words of a work file (reads only that member)."""
    with np.load(path, allow_pickle=False) as z:
        return [str(w) for w in z["word_text"]]


def load_clip_file(path: Path) -> dict[str, Any]:
    """Everything a work file holds: ``info`` (dict) plus its arrays."""
    with np.load(path, allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files if k != "info"}
        out["info"] = json.loads(str(z["info"]))
    return out


class WorkDir:
    """``OUT/.work``: the resumable state of an unfinished ``prepare``.

    A clip is finished when its work file exists (processed) or ``status.jsonl`` has a row for it
    (skipped). ``status.jsonl`` is appended one flushed line at a time; a torn last line from a
    killed run is ignored, so that clip is simply redone.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.clips = self.root / "clips"
        self.status = self.root / "status.jsonl"
        self.config = self.root / "config.json"

    def create(self, config: dict[str, Any]) -> None:
        self.clips.mkdir(parents=True, exist_ok=True)
        if not self.config.exists():
            with atomic_path(self.config) as tmp:
                tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    def read_config(self) -> dict[str, Any] | None:
        if not self.config.exists():
            return None
        return json.loads(self.config.read_text())

    def clip_path(self, clip_id: str) -> Path:
        return self.clips / f"{clip_key(clip_id)}.npz"

    def skipped(self) -> dict[str, dict[str, Any]]:
        """clip_id -> status row of every clip recorded as skipped."""
        rows: dict[str, dict[str, Any]] = {}
        if not self.status.exists():
            return rows
        for line in self.status.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "clip_id" in row:
                rows[row["clip_id"]] = row
        return rows

    def record_skip(
        self, clip_id: str, reason: str, detail: str, source_sha256: str | None
    ) -> None:
        row = {
            "clip_id": clip_id,
            "reason": reason,
            "detail": detail,
            "source_sha256": source_sha256,
        }
        # A torn last line (killed mid-write) must not glue onto this row.
        prefix = ""
        if self.status.exists() and self.status.stat().st_size > 0:
            with open(self.status, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    prefix = "\n"
        with open(self.status, "a") as f:
            f.write(prefix + json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


# ---------------------------------------------------------------------------- shards


def shard_sample(
    clip: dict[str, Any], index: int, speaker_index: dict[str, int], word_index: dict[str, int]
) -> dict[str, Any]:
    """The shard sample of a loaded work file (see the module docstring for the fields)."""
    info = clip["info"]
    words = np.array(
        [
            (int(s), int(e), word_index[str(w)])
            for (s, e), w in zip(clip["word_frames"], clip["word_text"], strict=True)
        ],
        dtype=np.int32,
    ).reshape(-1, 3)
    return {
        "clip_id": str(info["clip_id"]),
        "index": int(index),
        "speaker": int(speaker_index.get(info["speaker"], -1)),
        "word": int(word_index[info["word"]]) if info.get("word") else -1,
        "num_frames": int(info["num_frames"]),
        "frames": clip["frames"].tobytes(),
        "waveform": clip["waveform"],
        "mfcc": clip["mfcc"],
        "logmel": clip["logmel"],
        "landmarks": clip["landmarks"],
        "landmarks_valid": clip["landmarks_valid"],
        "words": words,
        # features newer than the first prepared datasets: in every sample of a dataset
        # prepared since they were added (LitData needs one set of keys per dataset)
        **{k: clip[k] for k in OPTIONAL_FEATURES if k in clip},
    }


def write_shards(dest: Path, samples: Iterable[dict[str, Any]]) -> int:
    """Write ``samples`` in order as one LitData dataset in folder ``dest``; return the count.

    Nothing is written for zero samples (the reader treats a missing split folder as empty).
    """
    from litdata.streaming.writer import BinaryWriter

    writer: BinaryWriter | None = None
    n = 0
    for sample in samples:
        if writer is None:
            dest.mkdir(parents=True, exist_ok=True)
            writer = BinaryWriter(str(dest), chunk_bytes=CHUNK_BYTES)
        writer.add_item(n, sample)
        n += 1
    if writer is not None:
        writer.done()
        writer.merge(num_workers=1)
    return n


# ---------------------------------------------------------------------------- manifest, pairs


def write_manifest(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``manifest.jsonl`` (one JSON object per line, sorted keys) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_manifest_text(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def make_pairs(test_rows: Sequence[dict[str, Any]], seed: int) -> dict[str, Any]:
    """The fixed evaluation pairs of the test split.

    For every ok test clip (in clip_id order): a ``same-clip`` pair (identity and audio from that
    clip), then, when its speaker has another ok test clip, a ``cross-clip`` pair whose identity
    clip is one of those, drawn with ``numpy.random.default_rng(seed)``. ``sha256`` is
    :func:`~talking_faces.utils.io.sha256_json` of the pair list.
    """
    rows = sorted((r for r in test_rows if r["status"] == "ok"), key=lambda r: r["clip_id"])
    by_speaker: dict[str, list[str]] = {}
    for r in rows:
        by_speaker.setdefault(r["speaker"], []).append(r["clip_id"])
    rng = np.random.default_rng(seed)
    pairs: list[dict[str, str]] = []
    for r in rows:
        cid = r["clip_id"]
        pairs.append({"identity": cid, "audio": cid, "kind": "same-clip"})
        others = [c for c in by_speaker[r["speaker"]] if c != cid]
        if others:
            pairs.append(
                {
                    "identity": others[int(rng.integers(len(others)))],
                    "audio": cid,
                    "kind": "cross-clip",
                }
            )
    return {"split": "test", "seed": seed, "pairs": pairs, "sha256": sha256_json(pairs)}
