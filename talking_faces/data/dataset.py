"""Reading a prepared dataset: windows of clips for training and validation, fixed pairs for test.

prepared dataset (meta.json, manifest.jsonl, pairs.json, shards/<split>/) -> **dataset**
(ClipWindowDataset, TestPairDataset) -> batch.collate_batch -> Batch

:class:`ClipWindowDataset` is a ``litdata.StreamingDataset`` over ``shards/<split>`` (local path
or any URL LitData streams from, e.g. ``s3://``). LitData splits the samples among DDP ranks and
DataLoader workers (each rank, and each worker, reads a disjoint part). One sample per clip per
epoch: a window of T frames, cut as follows.

Windows
    training: a random start, drawn from ``numpy.random.default_rng([seed, epoch, i])`` where
    ``i`` is the clip's index in its split, so the window of a clip in an epoch does not depend
    on the number of workers or ranks; evaluation: the centred window ``start = (T_clip - T) // 2``
    (identical in every run); identity ``first-frame``: start 0 in both. ``num_frames="clip"``
    takes the whole clip (start 0). Clips shorter than T are left out of the split (the number
    left out is in ``excluded``).

Identity frame (``identity=``)
    ``random``: a frame of the same clip outside the window (uniform over those frames); when the
    window covers the whole clip, the ``other-clip`` rule applies. ``first``: frame 0 of the same
    clip. ``other-clip``: a random frame of another clip of the same speaker in the same split;
    when the speaker has no other clip there (always for LRW, whose clips name no speaker), a
    frame outside the window of the same clip, else frame 0. Evaluation draws use a generator
    without the epoch, so they are fixed too. ``first-frame``: frame 0 of the same clip, and every
    window (training and evaluation) starts at frame 0, so the identity is the window's own first
    frame: ldm's paper setup (the authors condition on x0 and predict frames 1..T-1; the model
    switch is ``model.first_frame_given``). The test pairs give the same for a same-clip pair
    (frame 0 of the clip, the whole clip from frame 0).

Audio windows (``audio_feature``, ``audio_window`` W, ``audio_pad``, ``drop_c0``)
    features are stored at 100 Hz, 4 rows per 25 fps frame; frame t's 40 ms are rows 4t..4t+3
    and its centre is row 4t+2. The window of frame t is rows ``[4t+2 - W//2, 4t+2 - W//2 + W)``
    of the clip's features (W = 28 rows = 280 ms by default, the span used by the GRID-era
    models); rows outside the clip are the edge row (``edge``) or zeros (``zero``). ``mfcc``
    has 13 coefficients with c0 the log energy; ``drop_c0`` leaves 12. ``logmel`` has n_mels.
    ``mfcc_davs`` is the davs authors' MATLAB MFCC (13, c0 the DCT's term 0; ``drop_c0`` leaves
    their 12): with W = 20 frame t's window is rows 4t-8 .. 4t+11, the authors' ``t.bin``
    (``savemfcc.m``: ``mfccs(:, 4*l-7 : 4*l+12)``). ``zero_waveform`` (``mfcc`` only) is the ldm
    authors' padding: the window is cut from ``mfcc_wavepad``, the MFCC of the waveform with
    1,965 zeros on each side, rows ``[4t+14 - W//2, 4t+14 - W//2 + W)`` of it, so that with W = 28
    frame t's window is their ``mfcc[4t : 4t+28, 1:]`` (``data_loader.py``); it starts 45 samples
    before the ``edge`` window, and past the clip holds MFCC frames of those zeros instead of
    repeated rows (for W > 28 rows beyond the padding repeat its first or last row, a silent
    frame: the same values). ``mfcc_davs`` and ``mfcc_wavepad`` exist in datasets prepared since
    they were added (:func:`check_audio_feature`: otherwise a one-line error that names the
    ``prepare`` command to rerun).

Word
    GRID: the aligned word spoken at the window's centre frame ``start + T // 2`` (-1 in silence);
    LRW: the clip's word; -1 when the source has neither.

Waveform
    samples ``[640 * start, 640 * (start + T))`` of the clip's 16 kHz audio.

:class:`TestPairDataset` serves the fixed pairs of ``pairs.json`` (same-clip and cross-clip) for
evaluation: the identity frame is frame 0 of the identity clip, and audio, waveform, real frames
and landmarks are those of the whole audio clip, whatever the run's ``identity`` mode (under
``first-frame`` a same-clip pair is then exactly a training window of the whole clip).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from litdata import StreamingDataset
from torchvision.io import decode_jpeg

from talking_faces.config.choices import AudioFeature, AudioPad
from talking_faces.data import storage
from talking_faces.data.format import WAVEPAD_ROWS, jpeg_offsets
from talking_faces.data.silence import silence_mask, vad_silence_mask
from talking_faces.errors import UserError
from talking_faces.names import (
    FEATURES_PER_FRAME,
    MANIFEST_FILE,
    META_FILE,
    PAIRS_FILE,
    SAMPLES_PER_FRAME,
)

IDENTITY_MODES: tuple[str, ...] = ("random", "first", "other-clip", "first-frame")
AUDIO_FEATURES: tuple[str, ...] = AudioFeature.names()
AUDIO_PADS: tuple[str, ...] = AudioPad.names()
#: shard keys every prepared dataset has; the other audio features only datasets prepared since
#: they were added (their parameters are then in meta.json's ``audio``)
BASE_FEATURES: tuple[str, ...] = ("mfcc", "logmel")


# ---------------------------------------------------------------------------- prepared folder


def is_remote(root: str | Path) -> bool:
    """Whether ``root`` is a URL (``s3://...``) rather than a local folder."""
    return storage.is_remote(root)


def join_root(root: str | Path, *parts: str) -> str:
    """``root/part/...`` for a local path or a URL."""
    return storage.join(root, *parts)


def read_root_text(root: str | Path, name: str) -> str:
    """Text of file ``name`` of a prepared dataset (a local folder, or a URL read with the
    client LitData streams the shards with: see :mod:`talking_faces.data.storage`)."""
    path = join_root(root, name)
    try:
        if is_remote(root):
            return storage.read_text(path)
        return Path(path).read_text()
    except FileNotFoundError as exc:
        hint = (
            f"; prepare did not finish there ({META_FILE} is written last): rerun "
            "talking-faces prepare"
            if name == META_FILE
            else ""
        )
        raise UserError(
            f"{path} not found: {root} is not a complete prepared dataset{hint}"
        ) from exc


#: meta.json fields that say where and when a dataset was prepared, not what it holds
#: (``config_sha256``: the config is in the identity itself; in datasets prepared before it was
#: made of the settings alone it also hashed the ``source`` path)
VOLATILE_META: tuple[str, ...] = ("created", "source", "config_sha256")


@dataclass
class PreparedDataset:
    """The small files of a prepared dataset: meta, manifest rows and test pairs."""

    root: str
    meta: dict[str, Any]
    manifest: list[dict[str, Any]]
    pairs: dict[str, Any]

    @classmethod
    def load(cls, root: str | Path) -> PreparedDataset:
        root = str(root)
        meta = json.loads(read_root_text(root, META_FILE))
        manifest = [json.loads(x) for x in read_root_text(root, MANIFEST_FILE).splitlines() if x]
        pairs = json.loads(read_root_text(root, PAIRS_FILE))
        return cls(root=root, meta=meta, manifest=manifest, pairs=pairs)

    def identity_sha256(self) -> str:
        """sha256 of what the data is, not where or when it was made: ``meta.json`` without
        its ``created`` time, ``source`` path and ``config_sha256``, and every manifest row
        (clip, split, status, source sha256). Two preparations of the same raw clips with the
        same settings have the same identity wherever they ran; results compare only within one
        identity."""
        from talking_faces.utils.io import sha256_json

        meta = {k: v for k, v in self.meta.items() if k not in VOLATILE_META}
        if isinstance(meta.get("config"), dict):
            meta["config"] = {k: v for k, v in meta["config"].items() if k not in VOLATILE_META}
        rows = sorted(
            (r["clip_id"], r.get("split"), r["status"], r.get("source_sha256"))
            for r in self.manifest
        )
        return sha256_json({"meta": meta, "clips": rows})

    def rows(self, split: str) -> list[dict[str, Any]]:
        """Ok rows of ``split`` in shard order (row ``"index"`` = position in the shards)."""
        rows = [r for r in self.manifest if r["status"] == "ok" and r["split"] == split]
        return sorted(rows, key=lambda r: r["index"])

    def shard_dir(self, split: str) -> str | None:
        rel = self.meta.get("shards", {}).get(split)
        return join_root(self.root, *rel.split("/")) if rel else None


# ---------------------------------------------------------------------------- pure helpers


def audio_windows(features: np.ndarray, frames: np.ndarray, window: int, pad: str) -> np.ndarray:
    """Per-frame windows of 100 Hz features.

    Args:
        features: (N, F) rows at 100 Hz (N = 4 * clip frames).
        frames: (T,) frame indices in the clip.
        window: W rows per window, centred on row ``4t + 2``.
        pad: ``edge`` (repeat the first/last row), ``zero``, or ``zero_waveform``: ``features``
            are then ``mfcc_wavepad`` rows (N = 4 * clip frames + 24) and the window of frame t
            is its rows ``4t + 14 - W//2 ...`` (module docstring).

    Returns:
        (T, W, F) float32.
    """
    n = features.shape[0]
    first = FEATURES_PER_FRAME * frames + FEATURES_PER_FRAME // 2 - window // 2
    if pad == "zero_waveform":
        first = first + WAVEPAD_ROWS
    rows = first[:, None] + np.arange(window)[None, :]
    out = features[np.clip(rows, 0, n - 1)]
    if pad == "zero":
        out = out * ((rows >= 0) & (rows < n))[..., None]
    return np.ascontiguousarray(out, dtype=np.float32)


def word_at(words: np.ndarray, frame: int, clip_word: int) -> int:
    """Word index spoken at ``frame`` from an (n, 3) alignment ``(start, end excl., word)``;
    the clip's word when there is no alignment; -1 in silence."""
    if words.shape[0] == 0:
        return int(clip_word)
    hit = np.nonzero((words[:, 0] <= frame) & (frame < words[:, 1]))[0]
    return int(words[hit[0], 2]) if hit.size else -1


def decode_frames(blob: bytes | memoryview, indices: list[int]) -> torch.Tensor:
    """Decode frames ``indices`` of a packed JPEG blob to ``(n, 3, H, W) uint8``."""
    off = jpeg_offsets(blob)
    buf = np.frombuffer(blob, dtype=np.uint8)
    data = [torch.from_numpy(buf[off[i] : off[i + 1]].copy()) for i in indices]
    return torch.stack(decode_jpeg(data))


def feature_key(audio_feature: str, audio_pad: str = "edge") -> str:
    """The shard key the windows of ``audio_feature`` under ``audio_pad`` are cut from."""
    return "mfcc_wavepad" if audio_pad == "zero_waveform" else str(audio_feature)


def select_features(
    raw: dict[str, Any], audio_feature: str, drop_c0: bool, audio_pad: str = "edge"
) -> np.ndarray:
    """The (N, F) rows that :func:`audio_windows` cuts: the stored feature (``mfcc_wavepad``
    under ``zero_waveform``), without column 0 for the MFCCs when ``drop_c0``."""
    key = feature_key(audio_feature, audio_pad)
    feats = np.asarray(raw[key])
    return feats[:, 1:] if drop_c0 and key != "logmel" else feats


def check_audio_feature(prepared: PreparedDataset, config: WindowConfig) -> None:
    """Raise a one-line UserError when ``prepared`` lacks the stored feature ``config`` reads
    (a dataset prepared before that feature was added), naming the command that remakes it."""
    key = feature_key(config.audio_feature, config.audio_pad)
    meta = prepared.meta
    if key in BASE_FEATURES or key in (meta.get("audio") or {}):
        return
    backend = (meta.get("landmarks") or {}).get("backend")
    options = f" --layout {meta.get('layout', 'LAYOUT')} --size {meta.get('size', 'SIZE')}"
    options += f" --landmarks {backend}" if backend else ""
    raise UserError(
        f"{prepared.root} has no {key!r} audio feature, which data.audio_feature="
        f"{config.audio_feature} with data.audio_pad={config.audio_pad} reads (the dataset was "
        f"prepared before it was added); re-prepare it: talking-faces prepare "
        f"{meta.get('source', 'SOURCE')} {prepared.root}{options} --overwrite"
    )


# ---------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowConfig:
    """How a clip becomes a sample (see the module docstring)."""

    num_frames: int | str = 5
    identity: str = "random"
    audio_feature: str = "mfcc"
    audio_window: int = 28
    audio_pad: str = "edge"
    drop_c0: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.num_frames, str) and self.num_frames.isdigit():  # "5" from a CLI/YAML
            object.__setattr__(self, "num_frames", int(self.num_frames))
        if not (
            self.num_frames == "clip" or (isinstance(self.num_frames, int) and self.num_frames >= 1)
        ):
            raise UserError(f"num_frames must be a positive int or 'clip', got {self.num_frames!r}")
        if self.identity not in IDENTITY_MODES:
            raise UserError(
                f"identity must be one of {', '.join(IDENTITY_MODES)}, got {self.identity!r}"
            )
        if self.audio_feature not in AUDIO_FEATURES:
            raise UserError(
                f"audio_feature must be one of {', '.join(AUDIO_FEATURES)}, "
                f"got {self.audio_feature!r}"
            )
        if self.audio_pad not in AUDIO_PADS:
            raise UserError(
                f"audio_pad must be one of {', '.join(AUDIO_PADS)}, got {self.audio_pad!r}"
            )
        if not isinstance(self.audio_window, int) or self.audio_window < 1:
            raise UserError(f"audio_window must be a positive int, got {self.audio_window!r}")
        if self.audio_pad == "zero_waveform" and self.audio_feature != "mfcc":
            raise UserError(
                "audio_pad zero_waveform (the ldm authors' zero-padded waveform before their "
                f"MFCC) needs audio_feature mfcc, got {self.audio_feature!r}"
            )


class ClipWindowDataset(StreamingDataset):
    """One window per clip of one split, streamed from ``shards/<split>`` (see module docstring).

    Yields sample dicts: ``frames`` (T, 3, H, W) uint8, ``identity`` (3, H, W) uint8, ``audio``
    (T, W, F) float32, ``waveform`` (T*640,) float32, ``landmarks`` (T, 68, 2) float32,
    ``landmarks_valid`` (T,) bool, ``speaker``, ``word``, ``start`` int, ``clip_id`` str.
    """

    def __init__(
        self,
        prepared: PreparedDataset,
        split: str,
        config: WindowConfig,
        train: bool,
        shuffle: bool | None = None,
        cache_dir: str | None = None,
    ) -> None:
        input_dir = prepared.shard_dir(split)
        if input_dir is None:
            raise UserError(
                f"split {split!r} of {prepared.root} has no clips "
                f"(splits: {prepared.meta.get('splits')}); choose another split"
            )
        check_audio_feature(prepared, config)
        super().__init__(
            input_dir=input_dir,
            cache_dir=cache_dir,
            shuffle=train if shuffle is None else shuffle,
            seed=config.seed,
            # one record at a time: LitData's default decodes windows of up to 256 records,
            # most of which a shuffled worker then does not use (measured 3x slower here)
            batch_decode=0,
        )
        self.split = split
        self.config = config
        self.train = train
        self._input_dir_url = input_dir
        self._cache_dir_arg = cache_dir
        # speaker index -> shard indices of its clips (what "other-clip" draws from); kept small
        # because every DataLoader worker gets a copy each epoch
        speaker_index = {s: i for i, s in enumerate(prepared.meta["speakers"])}
        by_speaker: dict[int, list[int]] = {}
        for r in prepared.rows(split):
            if r["speaker"] in speaker_index:
                by_speaker.setdefault(speaker_index[r["speaker"]], []).append(int(r["index"]))
        self.same_speaker: dict[int, np.ndarray] = {
            k: np.asarray(v, dtype=np.int64) for k, v in by_speaker.items()
        }
        self._lookup: StreamingDataset | None = None
        self.excluded: list[str] = []

    def window_length(self, clip_frames: int) -> int:
        return clip_frames if self.config.num_frames == "clip" else int(self.config.num_frames)

    # -- random access to other clips (identity "other-clip"); one plain reader per process
    def _other_raw(self, index: int) -> dict[str, Any]:
        if self._lookup is None:
            self._lookup = StreamingDataset(
                self._input_dir_url, cache_dir=self._cache_dir_arg, batch_decode=0
            )
        return StreamingDataset.__getitem__(self._lookup, index)

    def __getitem__(self, index: Any) -> dict[str, Any]:
        raw = super().__getitem__(index)
        return self.make_sample(raw)

    def _rng(self, clip_index: int) -> np.random.Generator:
        if self.train:
            return np.random.default_rng([self.config.seed, int(self.current_epoch), clip_index])
        return np.random.default_rng([self.config.seed, 1 << 20, clip_index])

    def make_sample(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The sample of one shard record (a whole clip), per the window rules."""
        cfg = self.config
        clip_id = str(raw["clip_id"])
        clip_index = int(raw["index"])
        t_clip = int(raw["num_frames"])
        t = self.window_length(t_clip)
        if t > t_clip:
            raise ValueError(f"clip {clip_id} has {t_clip} frames, fewer than num_frames={t}")
        rng = self._rng(clip_index)
        if cfg.identity == "first-frame":  # the window begins with the identity frame
            start = 0
        elif self.train:
            start = int(rng.integers(0, t_clip - t + 1))
        else:
            start = (t_clip - t) // 2
        window = list(range(start, start + t))

        identity_raw, identity_frame = self._identity(raw, rng, start, t, t_clip)
        if identity_raw is None:
            decoded = decode_frames(raw["frames"], [*window, identity_frame])
            frames, identity = decoded[:t], decoded[t]
        else:
            frames = decode_frames(raw["frames"], window)
            identity = decode_frames(identity_raw["frames"], [identity_frame])[0]

        feats = select_features(raw, cfg.audio_feature, cfg.drop_c0, cfg.audio_pad)
        audio = audio_windows(feats, np.asarray(window), cfg.audio_window, cfg.audio_pad)
        wave = np.asarray(raw["waveform"])[
            start * SAMPLES_PER_FRAME : (start + t) * SAMPLES_PER_FRAME
        ]
        words = np.asarray(raw["words"]).reshape(-1, 3)
        return {
            "frames": frames,
            "identity": identity,
            "audio": torch.from_numpy(audio),
            "waveform": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
            "landmarks": torch.from_numpy(
                np.array(raw["landmarks"][start : start + t], np.float32)
            ),
            "landmarks_valid": torch.from_numpy(
                np.array(raw["landmarks_valid"][start : start + t], bool)
            ),
            "speaker": int(raw["speaker"]),
            "word": word_at(words, start + t // 2, int(raw["word"])),
            "clip_id": clip_id,
            "start": start,
        }

    def _identity(
        self,
        raw: dict[str, Any],
        rng: np.random.Generator,
        start: int,
        t: int,
        t_clip: int,
    ) -> tuple[dict[str, Any] | None, int]:
        """``(other clip's record or None for this clip, frame index)`` of the identity frame."""
        mode = self.config.identity
        if mode in ("first", "first-frame"):
            return None, 0
        outside = t_clip - t
        if mode == "other-clip" or outside == 0:
            same = self.same_speaker.get(int(raw["speaker"]))
            others = same[same != int(raw["index"])] if same is not None else []
            if len(others):
                other = self._other_raw(int(others[int(rng.integers(len(others)))]))
                return other, int(rng.integers(int(other["num_frames"])))
        if outside > 0:
            k = int(rng.integers(outside))
            return None, k if k < start else k + t
        return None, 0


# ---------------------------------------------------------------------------- whole clips


def clip_items(
    prepared: PreparedDataset, split: str, config: WindowConfig, cache_dir: str | None = None
):
    """Every ok clip of ``split`` whole, in shard order: ``frames`` (T, 3, H, W) uint8,
    ``audio`` (T, W, F) float32 windows, ``words`` (T,) long (the word spoken at each frame, -1
    in silence; LRW: the clip's word), ``speaker`` int, ``clip_id`` str, ``waveform`` (T*640,).

    For evaluations that look at every frame (a method's word accuracy and retrieval over all
    windows of the test clips, probes on frozen codes), where the window datasets give one
    window per clip.
    """
    check_audio_feature(prepared, config)
    input_dir = prepared.shard_dir(split)
    if input_dir is None:
        return
    ds = StreamingDataset(input_dir, cache_dir=cache_dir, batch_decode=0)
    for i in range(len(ds)):
        raw = ds[i]
        t = int(raw["num_frames"])
        feats = select_features(raw, config.audio_feature, config.drop_c0, config.audio_pad)
        aligned = np.asarray(raw["words"]).reshape(-1, 3)
        yield {
            "clip_id": str(raw["clip_id"]),
            "speaker": int(raw["speaker"]),
            "frames": decode_frames(raw["frames"], list(range(t))),
            "audio": torch.from_numpy(
                audio_windows(feats, np.arange(t), config.audio_window, config.audio_pad)
            ),
            "words": torch.tensor([word_at(aligned, f, int(raw["word"])) for f in range(t)]),
            "waveform": torch.from_numpy(np.array(raw["waveform"], np.float32)),
        }


# ---------------------------------------------------------------------------- test pairs


class TestPairDataset(torch.utils.data.Dataset):
    """The fixed evaluation pairs of a prepared dataset (``pairs.json``), one item per pair.

    Item: ``identity`` (3, H, W) uint8 = frame 0 of the identity clip; for the whole audio clip
    (T frames): ``frames`` (T, 3, H, W) uint8 real frames, ``audio`` (T, W, F), ``waveform``
    (T*640,), ``landmarks`` (T, 68, 2), ``landmarks_valid`` (T,), ``silence`` (T,) bool (the
    frames in a pause of at least 300 ms: by the audio clip's word alignment where the layout has
    them, GRID and the synthetic corpus, :func:`talking_faces.data.silence.silence_mask`; else,
    LRW and a folder of videos, by webrtcvad on its waveform,
    :func:`talking_faces.data.silence.vad_silence_mask`), ``silence_known`` (True: every layout
    has a silence mask) and ``silence_source`` (``alignments`` | ``vad``); ``speaker`` and
    ``word`` of the audio clip (word: the clip's word, -1 for GRID), ``start`` 0, ``clip_id`` =
    the audio clip, ``identity_clip_id``, ``kind`` (``same-clip`` | ``cross-clip``). Use
    ``batch_size=1`` unless all clips have the same length. ``sha256`` is the pair list's hash
    from ``pairs.json``.
    """

    __test__ = False  # a dataset, not a pytest test class (its name starts with "Test")

    def __init__(
        self, prepared: PreparedDataset, config: WindowConfig, cache_dir: str | None = None
    ) -> None:
        check_audio_feature(prepared, config)
        self.split = prepared.pairs.get("split", "test")
        self.pairs: list[dict[str, str]] = list(prepared.pairs["pairs"])
        self.sha256: str = prepared.pairs["sha256"]
        self.config = config
        self._index = {r["clip_id"]: int(r["index"]) for r in prepared.rows(self.split)}
        self._input_dir = prepared.shard_dir(self.split)
        self._cache_dir = cache_dir
        self._ds: StreamingDataset | None = None
        #: where the items' silences come from: only GRID's layout (and the synthetic corpus,
        #: written as GRID) has word alignments; LRW's and a folder's clips go through webrtcvad
        self.silence_source = "alignments" if prepared.meta.get("layout") == "grid" else "vad"
        #: every item has a silence mask (kept for the evaluation loop and older callers)
        self.silence_known = True

    def __len__(self) -> int:
        return len(self.pairs)

    def _raw(self, clip_id: str) -> dict[str, Any]:
        if self._ds is None:
            self._ds = StreamingDataset(self._input_dir, cache_dir=self._cache_dir, batch_decode=0)
        return self._ds[self._index[clip_id]]

    def _silence(self, raw: dict[str, Any], t: int) -> np.ndarray:
        if self.silence_source == "vad":
            return vad_silence_mask(np.asarray(raw["waveform"], np.float32), t)
        return silence_mask(np.asarray(raw["words"]).reshape(-1, 3)[:, :2].astype(np.int64), t)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pair = self.pairs[i]
        raw = self._raw(pair["audio"])
        ident = raw if pair["identity"] == pair["audio"] else self._raw(pair["identity"])
        t = int(raw["num_frames"])
        feats = select_features(
            raw, self.config.audio_feature, self.config.drop_c0, self.config.audio_pad
        )
        audio = audio_windows(feats, np.arange(t), self.config.audio_window, self.config.audio_pad)
        return {
            "frames": decode_frames(raw["frames"], list(range(t))),
            "identity": decode_frames(ident["frames"], [0])[0],
            "audio": torch.from_numpy(audio),
            "waveform": torch.from_numpy(np.array(raw["waveform"], np.float32)),
            "landmarks": torch.from_numpy(np.array(raw["landmarks"], np.float32)),
            "landmarks_valid": torch.from_numpy(np.array(raw["landmarks_valid"], bool)),
            "silence": torch.from_numpy(self._silence(raw, t)),
            "silence_known": self.silence_known,
            "silence_source": self.silence_source,
            "speaker": int(raw["speaker"]),
            "word": int(raw["word"]),
            "clip_id": pair["audio"],
            "start": 0,
            "identity_clip_id": pair["identity"],
            "kind": pair["kind"],
        }
