"""Reading prepared data: shard format, windows, identity frames, audio alignment, splits, DDP.

Most tests build a prepared dataset from clips made here with known content (frame t of clip k is
a flat colour encoding t and k; feature row r holds r), through the real writer
(``pipeline.write_dataset``), so every value a batch carries can be checked exactly. The end-to-end
path from a raw corpus is in ``tests/test_prepare.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from talking_faces.data import BATCH_KEYS, TalkingFaceDataModule, collate_batch
from talking_faces.data.clips import ProcessedClip, RawClip
from talking_faces.data.dataset import (
    ClipWindowDataset,
    PreparedDataset,
    WindowConfig,
    audio_windows,
    decode_frames,
    word_at,
)
from talking_faces.data.prepare import writer as W
from talking_faces.data.prepare.pipeline import PrepareOptions, write_dataset
from talking_faces.data.prepare.splits import SplitItem, assign_splits
from talking_faces.errors import UserError
from talking_faces.utils.io import sha256_json

SIZE = 32
N_MELS = 8


def _level(t: int) -> int:
    return 8 + 16 * t


def make_clip(
    clip_id: str,
    speaker: str,
    k: int,
    num_frames: int = 12,
    word: str | None = None,
    split_hint: str | None = None,
    words: list[tuple[int, int, str]] | None = None,
) -> ProcessedClip:
    """Frame t: R = 8 + 16 t, G = 20 + 10 k; waveform[i] = (i + k) * 1e-5; mfcc[r, c] = r + c/100;
    logmel[r, c] = 10 r + c; landmarks[t] = t + k; landmarks_valid[t] = t % 5 != 3."""
    t = num_frames
    frames = np.zeros((t, SIZE, SIZE, 3), np.uint8)
    frames[..., 0] = np.array([_level(i) for i in range(t)], np.uint8)[:, None, None]
    frames[..., 1] = 20 + 10 * k
    frames[..., 2] = 128
    rows = np.arange(4 * t, dtype=np.float32)
    return ProcessedClip(
        clip_id=clip_id,
        speaker=speaker,
        word=word,
        split_hint=split_hint,
        frames=frames,
        waveform=((np.arange(t * 640) + k) * 1e-5).astype(np.float32),
        mfcc=rows[:, None] + np.arange(13, dtype=np.float32)[None] / 100,
        logmel=rows[:, None] * 10 + np.arange(N_MELS, dtype=np.float32)[None],
        landmarks=np.broadcast_to((np.arange(t) + k)[:, None, None], (t, 68, 2)).astype(np.float32),
        landmarks_valid=np.arange(t) % 5 != 3,
        source_sha256=f"{k:064x}",
        words=words or [],
    )


def build(
    root: Path,
    clips: list[ProcessedClip],
    layout: str = "grid",
    protocol: str | None = None,
    skipped: list[tuple[str, str, str]] = (),
) -> Path:
    """Write a prepared dataset of ``clips`` with the real writer; return its folder."""
    out = root / "prep"
    work = W.WorkDir(out / ".work")
    config = {
        "features": {"audio": {"n_mels": N_MELS, "hop": 160}},
        "landmarks": {"backend": "test"},
    }
    work.create(config)
    items: list = []
    for c in clips:
        W.save_clip_file(work.clip_path(c.clip_id), c, 90)
        raw = RawClip(c.clip_id, c.speaker, Path("x.mp4"), word=c.word, split_hint=c.split_hint)
        items.append((c.clip_id, raw))
    items += [(cid, (reason, detail)) for cid, reason, detail in skipped]
    items.sort(key=lambda kv: kv[0])
    protocol = protocol or {"grid": "utterances", "lrw": "lrw", "folder": "by-speaker"}[layout]
    opts = PrepareOptions(source=root, out=out, layout=layout, size=SIZE, protocol=protocol)
    write_dataset(opts, protocol, {**config, "source": str(root)}, items, work)
    return out


GRID_WORDS = [(2, 5, "bin"), (5, 7, "blue"), (8, 11, "at")]


@pytest.fixture(scope="module")
def written_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, ProcessedClip]]:
    """A GRID-layout dataset written by the real writer (``build``) from made-up clips whose
    pixels encode frame index and clip number, not by ``prepare`` (conftest's ``prepared_grid``
    is that): 3 speakers x 4 clips and one skipped clip; with the clips by id."""
    root = tmp_path_factory.mktemp("grid")
    clips = [
        make_clip(f"s{s}/c{i}", f"s{s}", k=4 * (s - 1) + i, words=GRID_WORDS)
        for s in (1, 2, 3)
        for i in range(4)
    ]
    prep = build(root, clips, skipped=[("s1/zz", "missing-alignment", "no zz.align")])
    return prep, {c.clip_id: c for c in clips}


def frame_index(img: torch.Tensor) -> int:
    """Frame index encoded in the red level of a decoded uint8 (3, H, W) or float frame."""
    r = img[0].float().mean().item()
    if img.dtype != torch.uint8:
        r *= 255
    return round((r - 8) / 16)


def clip_number(img: torch.Tensor) -> int:
    g = img[1].float().mean().item()
    if img.dtype != torch.uint8:
        g *= 255
    return round((g - 20) / 10)


# ------------------------------------------------------------------------------ format


def test_packed_frames_round_trip_and_match_litdata_jpeg_array() -> None:
    from litdata.streaming.serializers import JPEGArraySerializer

    clip = make_clip("a", "s1", 0, num_frames=6)
    blob = W.pack_jpeg_frames(clip.frames, 90)
    off = W.jpeg_offsets(blob)
    assert len(off) == 7 and off[-1] == len(blob)
    assert all(j[:2] == b"\xff\xd8" for j in W.unpack_jpeg_frames(blob))
    ours = decode_frames(blob, [0, 3, 5])
    assert ours.shape == (3, 3, SIZE, SIZE) and ours.dtype == torch.uint8
    assert [frame_index(f) for f in ours] == [0, 3, 5]
    # the packing is LitData's JpegArray layout: its deserializer reads our blob
    theirs = JPEGArraySerializer().deserialize(blob)
    assert len(theirs) == 6
    assert torch.equal(torch.as_tensor(theirs[3]).reshape(ours[1].shape), ours[1])
    with pytest.raises(ValueError):
        W.jpeg_offsets(blob[:-3])


def test_audio_windows_are_centred_on_frame_centre_rows() -> None:
    feats = np.arange(40, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)  # 10 frames
    w = audio_windows(feats, np.array([0, 5, 9]), window=8, pad="edge")
    assert w.shape == (3, 8, 2)
    # frame 5: centre row 22, rows [18, 26)
    assert w[1, :, 0].tolist() == list(range(18, 26))
    # frame 0: rows [-2, 6) -> edge repeats row 0
    assert w[0, :, 0].tolist() == [0, 0, 0, 1, 2, 3, 4, 5]
    # frame 9: rows [34, 42) -> edge repeats row 39
    assert w[2, :, 0].tolist() == [34, 35, 36, 37, 38, 39, 39, 39]
    z = audio_windows(feats + 1, np.array([0, 9]), window=8, pad="zero")
    assert z[0, :, 0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]
    assert z[1, :, 0].tolist() == [35, 36, 37, 38, 39, 40, 0, 0]
    odd = audio_windows(feats, np.array([5]), window=5, pad="edge")
    assert odd[0, :, 0].tolist() == [20, 21, 22, 23, 24]


def test_word_at_uses_alignment_then_clip_word() -> None:
    words = np.array([[2, 5, 7], [5, 7, 3]], np.int32)
    assert [word_at(words, f, 11) for f in (1, 2, 4, 5, 6, 7)] == [-1, 7, 7, 3, 3, -1]
    assert word_at(np.zeros((0, 3), np.int32), 4, 11) == 11


def test_collate_batch_types_and_length_mismatch() -> None:
    s = {
        "frames": torch.full((2, 3, 4, 4), 255, dtype=torch.uint8),
        "identity": torch.zeros((3, 4, 4), dtype=torch.uint8),
        "speaker": 1,
        "clip_id": "a",
    }
    b = collate_batch([s, s])
    assert b["frames"].dtype == torch.float32 and b["frames"].max() == 1.0
    assert b["speaker"].dtype == torch.long and b["clip_id"] == ["a", "a"]
    short = dict(s, frames=s["frames"][:1])
    with pytest.raises(ValueError, match="batch_size=1"):
        collate_batch([s, short])


# ------------------------------------------------------------------------------ splits


def test_utterance_split_is_seeded_per_speaker_and_order_free() -> None:
    items = [SplitItem(f"s{s}/u{i:02d}", f"s{s}") for s in (1, 2) for i in range(20)]
    a = assign_splits(items, "grid", "utterances", seed=0)
    b = assign_splits(list(reversed(items)), "grid", "utterances", seed=0)
    c = assign_splits(items, "grid", "utterances", seed=1)
    assert a == b and a != c
    for s in ("s1", "s2"):
        mine = [v for k, v in a.items() if k.startswith(s + "/")]
        assert (mine.count("train"), mine.count("val"), mine.count("test")) == (16, 2, 2)
    small = assign_splits([SplitItem(f"s1/u{i}", "s1") for i in range(3)], "grid", "utterances")
    assert sorted(small.values()) == ["test", "train", "val"]


def test_speaker_protocols() -> None:
    items = [SplitItem(f"s{s}/u{i}", f"s{s}") for s in (1, 2, 3, 20, 22, 29) for i in range(5)]
    unseen = assign_splits(items, "grid", "unseen-speakers", seed=0)
    test_speakers = {k.split("/")[0] for k, v in unseen.items() if v == "test"}
    assert test_speakers == {"s1", "s2", "s20", "s22"}
    assert {unseen[f"s3/u{i}"] for i in range(5)} | {unseen[f"s29/u{i}"] for i in range(5)} == {
        "train",
        "val",
    }
    s29 = assign_splits(items, "grid", "s29", seed=0)
    assert {k for k, v in s29.items() if v == "test"} == {f"s29/u{i}" for i in range(5)}
    with pytest.raises(UserError, match="s29"):
        assign_splits([SplitItem("s1/a", "s1"), SplitItem("s1/b", "s1")], "grid", "s29")
    with pytest.raises(UserError, match="every speaker"):
        assign_splits([SplitItem("s1/a", "s1"), SplitItem("s2/b", "s2")], "grid", "unseen-speakers")
    by_spk = assign_splits(
        [SplitItem(f"p{s}/c{i}", f"p{s}") for s in range(3) for i in range(2)],
        "folder",
        "by-speaker",
    )
    for s in range(3):  # a speaker's clips share a split
        assert by_spk[f"p{s}/c0"] == by_spk[f"p{s}/c1"]
    assert sorted(set(by_spk.values())) == ["test", "train", "val"]
    with pytest.raises(UserError, match="by-clip"):
        assign_splits([SplitItem("p0/c", "p0"), SplitItem("p1/c", "p1")], "folder", "by-speaker")
    with pytest.raises(UserError, match="does not apply"):
        assign_splits(items, "grid", "lrw")
    lrw = [
        SplitItem(f"W/{h}/W_0000{i}", f"W/{h}/W_0000{i}", h) for i, h in enumerate(["train", "val"])
    ]
    assert assign_splits(lrw, "lrw") == {"W/train/W_00000": "train", "W/val/W_00001": "val"}


def test_pairs_are_seeded_same_speaker_and_hashed() -> None:
    rows = [
        {"clip_id": f"s{s}/c{i}", "speaker": f"s{s}", "status": "ok"}
        for s in (1, 2)
        for i in range(3)
    ] + [{"clip_id": "s3/only", "speaker": "s3", "status": "ok"}]
    p = W.make_pairs(rows, seed=0)
    assert p == W.make_pairs(list(reversed(rows)), seed=0)
    assert p["sha256"] == sha256_json(p["pairs"])
    same = [x for x in p["pairs"] if x["kind"] == "same-clip"]
    cross = [x for x in p["pairs"] if x["kind"] == "cross-clip"]
    assert len(same) == 7 and len(cross) == 6  # s3/only has no other clip
    for x in cross:
        assert x["identity"] != x["audio"] and x["identity"][:2] == x["audio"][:2]


# ------------------------------------------------------------------------------ writer output


def test_prepared_files_and_shard_order(
    written_grid: tuple[Path, dict[str, ProcessedClip]],
) -> None:
    prep, clips = written_grid
    assert not (prep / ".work").exists()
    meta = json.loads((prep / "meta.json").read_text())
    assert meta["speakers"] == ["s1", "s2", "s3"]
    assert {"bin", "blue", "at"} <= set(meta["words"])
    assert meta["counts"] == {"ok": 12, "skipped": 1, "by_reason": {"missing-alignment": 1}}
    rows = [json.loads(x) for x in (prep / "manifest.jsonl").read_text().splitlines()]
    assert [r["clip_id"] for r in rows] == sorted(r["clip_id"] for r in rows)
    assert len(rows) == 13
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert skipped == [
        {
            "clip_id": "s1/zz",
            "detail": "no zz.align",
            "frames": 0,
            "index": None,
            "reason": "missing-alignment",
            "source_sha256": None,
            "speaker": "s1",
            "split": skipped[0]["split"],
            "status": "skipped",
            "word": None,
        }
    ]
    from litdata import StreamingDataset

    for split in ("train", "val", "test"):
        ok = sorted(
            (r for r in rows if r["split"] == split and r["status"] == "ok"),
            key=lambda r: r["index"],
        )
        assert [r["index"] for r in ok] == list(range(len(ok))) and ok
        ds = StreamingDataset(str(prep / "shards" / split))
        assert [ds[i]["clip_id"] for i in range(len(ds))] == [r["clip_id"] for r in ok]
        sample = ds[0]
        src = clips[sample["clip_id"]]
        assert sample["speaker"] == meta["speakers"].index(src.speaker)
        np.testing.assert_array_equal(sample["mfcc"], src.mfcc)
        np.testing.assert_array_equal(sample["landmarks_valid"], src.landmarks_valid)
        assert sample["words"].tolist() == [
            [s, e, meta["words"].index(w)] for s, e, w in GRID_WORDS
        ]
    pairs = json.loads((prep / "pairs.json").read_text())
    assert pairs["sha256"] == sha256_json(pairs["pairs"]) == meta["pairs_sha256"]
    assert {p["audio"] for p in pairs["pairs"]} == {
        r["clip_id"] for r in rows if r["split"] == "test" and r["status"] == "ok"
    }


# ------------------------------------------------------------------------------ batches


def check_batch(
    b: dict, t: int, w: int, f: int, clips: dict[str, ProcessedClip], audio_feature: str = "mfcc"
) -> None:
    bs = len(b["clip_id"])
    assert set(BATCH_KEYS) <= set(b)
    assert b["frames"].shape == (bs, t, 3, SIZE, SIZE) and b["frames"].dtype == torch.float32
    assert b["identity"].shape == (bs, 3, SIZE, SIZE) and b["identity"].dtype == torch.float32
    assert b["frames"].min() >= 0 and b["frames"].max() <= 1
    assert b["audio"].shape == (bs, t, w, f) and b["audio"].dtype == torch.float32
    assert b["waveform"].shape == (bs, t * 640) and b["waveform"].dtype == torch.float32
    assert b["landmarks"].shape == (bs, t, 68, 2) and b["landmarks_valid"].dtype == torch.bool
    for key in ("speaker", "word", "start"):
        assert b[key].shape == (bs,) and b[key].dtype == torch.long
    for i, cid in enumerate(b["clip_id"]):
        src, start = clips[cid], int(b["start"][i])
        window = list(range(start, start + t))
        assert [frame_index(x) for x in b["frames"][i]] == window
        assert {clip_number(x) for x in b["frames"][i]} == {int(src.source_sha256, 16)}
        rows = np.clip(
            4 * np.array(window)[:, None] + 2 - w // 2 + np.arange(w)[None],
            0,
            4 * src.num_frames - 1,
        )
        feats = src.mfcc[:, 1:] if audio_feature == "mfcc" else src.logmel
        np.testing.assert_array_equal(b["audio"][i].numpy(), feats[rows])
        np.testing.assert_array_equal(
            b["waveform"][i].numpy(), src.waveform[start * 640 : (start + t) * 640]
        )
        np.testing.assert_array_equal(b["landmarks"][i].numpy(), src.landmarks[start : start + t])
        np.testing.assert_array_equal(
            b["landmarks_valid"][i].numpy(), src.landmarks_valid[start : start + t]
        )


def test_batches_follow_the_contract(written_grid: tuple[Path, dict[str, ProcessedClip]]) -> None:
    prep, clips = written_grid
    dm = TalkingFaceDataModule(root=str(prep), num_frames=5, batch_size=4)
    dm.setup("fit")
    meta = dm.meta
    seen = []
    for b in dm.train_dataloader():
        check_batch(b, 5, 28, 12, clips)
        for i, cid in enumerate(b["clip_id"]):
            start = int(b["start"][i])
            ident = frame_index(b["identity"][i])
            assert clip_number(b["identity"][i]) == clip_number(b["frames"][i, 0])
            assert not start <= ident < start + 5  # identity frame lies outside the window
            centre = start + 2
            expect = next((w for s, e, w in GRID_WORDS if s <= centre < e), None)
            assert int(b["word"][i]) == (meta["words"].index(expect) if expect else -1)
            assert int(b["speaker"][i]) == meta["speakers"].index(clips[cid].speaker)
        seen += b["clip_id"]
    train_ids = {r["clip_id"] for r in dm.prepared.rows("train")}
    assert sorted(seen) == sorted(train_ids)
    logmel = TalkingFaceDataModule(
        str(prep), num_frames=3, batch_size=2, audio_feature="logmel", audio_window=6
    )
    check_batch(next(iter(logmel.val_dataloader())), 3, 6, N_MELS, clips, audio_feature="logmel")
    assert logmel.audio_dim == N_MELS and dm.audio_dim == 12


def test_eval_windows_are_fixed_and_train_windows_are_seeded(
    written_grid: tuple[Path, dict[str, ProcessedClip]],
) -> None:
    prep, _ = written_grid

    def starts(loader) -> dict[str, tuple[int, int]]:
        return {
            cid: (int(s), frame_index(i))
            for b in loader
            for cid, s, i in zip(b["clip_id"], b["start"], b["identity"], strict=True)
        }

    a = TalkingFaceDataModule(str(prep), num_frames=4, batch_size=3, seed=5)
    b = TalkingFaceDataModule(str(prep), num_frames=4, batch_size=2, seed=5)
    va, vb = starts(a.val_dataloader()), starts(b.val_dataloader())
    assert va == vb and {s for s, _ in va.values()} == {(12 - 4) // 2}
    assert starts(a.test_dataloader()) == starts(b.test_dataloader())
    la, lb = a.train_dataloader(), b.train_dataloader()
    epochs_a = [starts(la) for _ in range(3)]
    epochs_b = [starts(lb) for _ in range(3)]
    assert epochs_a == epochs_b  # same seed, other batch size: same windows per epoch
    assert epochs_a[0] != epochs_a[1]  # new windows every epoch
    c = TalkingFaceDataModule(str(prep), num_frames=4, batch_size=3, seed=6)
    assert starts(c.train_dataloader()) != epochs_a[0]


def test_identity_modes_and_whole_clips(
    written_grid: tuple[Path, dict[str, ProcessedClip]],
) -> None:
    prep, clips = written_grid
    first = TalkingFaceDataModule(str(prep), num_frames=5, identity="first", batch_size=16)
    b = next(iter(first.train_dataloader()))
    assert all(frame_index(x) == 0 for x in b["identity"])
    other = TalkingFaceDataModule(str(prep), num_frames=5, identity="other-clip", batch_size=16)
    b = next(iter(other.train_dataloader()))
    for i, cid in enumerate(b["clip_id"]):
        k = clip_number(b["identity"][i])
        src = next(c for c in clips.values() if int(c.source_sha256, 16) == k)
        assert src.clip_id != cid and src.speaker == clips[cid].speaker
    whole = TalkingFaceDataModule(str(prep), num_frames="clip", batch_size=2)
    for b in whole.train_dataloader():
        check_batch(b, 12, 28, 12, clips)
        assert b["start"].tolist() == [0] * len(b["clip_id"])
        for i, cid in enumerate(b["clip_id"]):  # no frame outside the window: another clip's
            k = clip_number(b["identity"][i])
            src = next(c for c in clips.values() if int(c.source_sha256, 16) == k)
            assert src.clip_id != cid and src.speaker == clips[cid].speaker
    for b in whole.val_dataloader():  # one val clip per speaker: frame 0 of the clip itself
        for i in range(len(b["clip_id"])):
            assert clip_number(b["identity"][i]) == clip_number(b["frames"][i, 0])
            assert frame_index(b["identity"][i]) == 0
    with pytest.raises(UserError, match="longer than every clip"):
        TalkingFaceDataModule(str(prep), num_frames=13).train_dataloader()
    with pytest.raises(UserError, match="identity"):
        TalkingFaceDataModule(str(prep), identity="nearest")


def test_short_clips_are_left_out_of_long_windows(tmp_path: Path) -> None:
    clips = [make_clip(f"s1/c{i}", "s1", k=i, num_frames=6 if i % 2 else 12) for i in range(6)]
    prep = build(tmp_path, clips)
    dm = TalkingFaceDataModule(str(prep), num_frames=8, batch_size=8)
    ds = dm.dataset("train")
    rows = dm.prepared.rows("train")
    assert sorted(ds.excluded) == sorted(r["clip_id"] for r in rows if r["frames"] < 8)
    got = [cid for b in dm.train_dataloader() for cid in b["clip_id"]]
    assert sorted(got) == sorted(r["clip_id"] for r in rows if r["frames"] >= 8)


def test_worker_processes_give_the_same_eval_batches(
    written_grid: tuple[Path, dict[str, ProcessedClip]],
) -> None:
    prep, clips = written_grid

    def collect(workers: int) -> dict[str, torch.Tensor]:
        dm = TalkingFaceDataModule(str(prep), num_frames=5, batch_size=2, num_workers=workers)
        out = {}
        for b in dm.val_dataloader():
            check_batch(b, 5, 28, 12, clips)
            out.update({cid: b["frames"][i] for i, cid in enumerate(b["clip_id"])})
        return out

    zero, one = collect(0), collect(1)
    assert zero.keys() == one.keys()
    assert all(torch.equal(zero[k], one[k]) for k in zero)


def test_ranks_read_disjoint_parts(written_grid: tuple[Path, dict[str, ProcessedClip]]) -> None:
    from litdata.utilities.env import _DistributedEnv

    prep, _ = written_grid
    prepared = PreparedDataset.load(prep)
    all_ids = {r["clip_id"] for r in prepared.rows("train")}
    for world in (2, 3):
        parts = []
        for rank in range(world):
            ds = ClipWindowDataset(prepared, "train", WindowConfig(num_frames=3), train=True)
            ds.distributed_env = _DistributedEnv(world, rank, 1)
            ds.drop_last = False
            parts.append([s["clip_id"] for s in ds])
        flat = [c for p in parts for c in p]
        assert len(flat) == len(set(flat)) == len(all_ids) and set(flat) == all_ids
        assert all(parts)


def test_test_pairs_dataset(tmp_path: Path) -> None:
    made = [
        make_clip(f"s{s}/c{i}", f"s{s}", k=3 * (s - 1) + i) for s in (1, 2, 3) for i in range(3)
    ]
    clips = {c.clip_id: c for c in made}
    prep = build(tmp_path, made, protocol="unseen-speakers")  # s1, s2 test; s3 train + val
    dm = TalkingFaceDataModule(str(prep))
    pairs = dm.test_pairs()
    saved = json.loads((prep / "pairs.json").read_text())
    assert len(pairs) == len(saved["pairs"]) and pairs.sha256 == saved["sha256"]
    kinds = set()
    for i in range(len(pairs)):
        item = pairs[i]
        pair = saved["pairs"][i]
        src = clips[pair["audio"]]
        assert item["clip_id"] == pair["audio"] and item["identity_clip_id"] == pair["identity"]
        assert item["frames"].shape == (12, 3, SIZE, SIZE)
        assert [frame_index(x) for x in item["frames"]] == list(range(12))
        assert frame_index(item["identity"]) == 0
        assert clip_number(item["identity"]) == int(clips[pair["identity"]].source_sha256, 16)
        assert item["audio"].shape == (12, 28, 12)
        np.testing.assert_array_equal(item["waveform"].numpy(), src.waveform)
        kinds.add(item["kind"])
    assert kinds == {"same-clip", "cross-clip"}
    batch = collate_batch([pairs[0]])
    assert batch["frames"].dtype == torch.float32 and batch["kind"] == [saved["pairs"][0]["kind"]]


def test_lrw_clip_word_and_unnamed_speakers(tmp_path: Path) -> None:
    clips = []
    for k, (word, split) in enumerate(
        [
            ("ABOUT", "train"),
            ("ABOUT", "val"),
            ("ABOUT", "test"),
            ("HOUSE", "train"),
            ("HOUSE", "test"),
        ]
    ):
        cid = f"{word}/{split}/{word}_{k:05d}"
        clips.append(make_clip(cid, cid, k=k, num_frames=8, word=word, split_hint=split))
    prep = build(tmp_path, clips, layout="lrw")
    dm = TalkingFaceDataModule(str(prep), num_frames=5, batch_size=4)
    assert dm.meta["speakers"] == [] and dm.words == ["ABOUT", "HOUSE"]
    b = next(iter(dm.train_dataloader()))
    for i, cid in enumerate(b["clip_id"]):
        assert int(b["word"][i]) == dm.words.index(cid.split("/")[0])
        assert int(b["speaker"][i]) == -1
    pairs = json.loads((prep / "pairs.json").read_text())["pairs"]
    assert {p["kind"] for p in pairs} == {"same-clip"}


def test_missing_meta_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a complete prepared dataset"):
        TalkingFaceDataModule(str(tmp_path)).setup("fit")
