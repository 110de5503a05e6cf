"""``talking-faces prepare`` end to end: synthetic raw corpora -> prepared dataset -> batches.

Covers the three layouts, damaged inputs (skipped with reasons, never in a batch), an interrupted
run resumed without duplicates or gaps, refusal of changed settings, split protocols, and
reproducibility of manifest and pairs across worker counts. Corpora are tiny (64 px, 3 speakers).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from talking_faces.cli.main import main
from talking_faces.data import BATCH_KEYS, TalkingFaceDataModule

pytestmark = pytest.mark.slow

RAW_SIZE = 64
SIZE = 64


def synth(out: Path, layout: str, speakers: int = 3, clips: int = 3) -> Path:
    code = main(
        [
            "synth",
            str(out),
            "--layout",
            layout,
            "--speakers",
            str(speakers),
            "--clips",
            str(clips),
            "--size",
            str(RAW_SIZE),
            "--workers",
            "1",
        ]
    )
    assert code == 0
    return out


def prepare(source: Path, out: Path, layout: str, *extra: str) -> int:
    return main(
        [
            "prepare",
            str(source),
            str(out),
            "--layout",
            layout,
            "--landmarks",
            "sidecar",
            "--size",
            str(SIZE),
            "--workers",
            "1",
            *extra,
        ]
    )


def manifest(prep: Path) -> list[dict]:
    return [json.loads(x) for x in (prep / "manifest.jsonl").read_text().splitlines()]


def shard_clip_ids(prep: Path) -> list[str]:
    from litdata import StreamingDataset

    ids = []
    for split in ("train", "val", "test"):
        if (prep / "shards" / split).exists():
            ds = StreamingDataset(str(prep / "shards" / split))
            ids += [ds[i]["clip_id"] for i in range(len(ds))]
    return ids


def all_batches(prep: Path, **kw) -> list[dict]:
    dm = TalkingFaceDataModule(root=str(prep), **kw)
    out = []
    for stage in ("train", "val", "test"):
        if dm.prepared.shard_dir(dm.splits[stage]):
            out += list(getattr(dm, f"{stage}_dataloader")())
    return out


def check_contract(b: dict, t: int) -> None:
    bs = len(b["clip_id"])
    assert set(BATCH_KEYS) <= set(b)
    assert b["frames"].shape == (bs, t, 3, SIZE, SIZE) and b["frames"].dtype == torch.float32
    assert float(b["frames"].min()) >= 0.0 and float(b["frames"].max()) <= 1.0
    assert float(b["frames"].std()) > 0.01  # real pictures, not blanks
    assert b["identity"].shape == (bs, 3, SIZE, SIZE)
    assert b["audio"].shape == (bs, t, 28, 12) and torch.isfinite(b["audio"]).all()
    assert b["waveform"].shape == (bs, t * 640) and b["waveform"].abs().max() <= 1.0
    assert b["landmarks"].shape == (bs, t, 68, 2) and b["landmarks_valid"].dtype == torch.bool
    valid = b["landmarks"][b["landmarks_valid"]]
    assert valid.numel() > 0
    assert float(valid.min()) > -SIZE / 2 and float(valid.max()) < 1.5 * SIZE  # crop pixels
    for key in ("speaker", "word", "start"):
        assert b[key].dtype == torch.long and b[key].shape == (bs,)


@pytest.fixture(scope="module")
def grid_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth(tmp_path_factory.mktemp("grid") / "raw", "grid")


@pytest.fixture(scope="module")
def grid_raw_prepared(grid_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``grid_raw`` prepared by ``talking-faces prepare`` here (64 px, sidecar landmarks, one
    worker); conftest's ``prepared_grid`` is another corpus, prepared once per session."""
    out = tmp_path_factory.mktemp("grid_raw_prepared") / "prep"
    assert prepare(grid_raw, out, "grid") == 0
    return out


@pytest.fixture(scope="module")
def lrw_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth(tmp_path_factory.mktemp("lrw") / "raw", "lrw")


# ------------------------------------------------------------------------------ layouts


def test_grid_end_to_end(grid_raw: Path, grid_raw_prepared: Path) -> None:
    from talking_faces.data.sources.readers import alignment_words, read_grid_alignment

    meta = json.loads((grid_raw_prepared / "meta.json").read_text())
    for key in ("version", "layout", "source", "size", "fps", "sample_rate", "landmarks"):
        assert key in meta
    assert meta["size"] == SIZE and meta["fps"] == 25 and meta["sample_rate"] == 16000
    assert meta["landmarks"]["backend"] == "sidecar"
    assert meta["protocol"] == "utterances" and meta["speakers"] == ["s1", "s2", "s3"]
    assert meta["counts"]["ok"] == 9 and meta["counts"]["skipped"] == 0
    rows = manifest(grid_raw_prepared)
    assert len(rows) == 9 and all(r["status"] == "ok" for r in rows)
    assert all(r["frames"] == 75 for r in rows)  # 3 s at 25 fps
    for spk in ("s1", "s2", "s3"):  # utterances: per speaker one train, one val, one test
        assert sorted(r["split"] for r in rows if r["speaker"] == spk) == ["test", "train", "val"]
    assert sorted(shard_clip_ids(grid_raw_prepared)) == sorted(r["clip_id"] for r in rows)
    assert not (grid_raw_prepared / ".work").exists()

    dm = TalkingFaceDataModule(root=str(grid_raw_prepared), batch_size=2)
    b = next(iter(dm.train_dataloader()))
    check_contract(b, 5)
    # the word of a window is the aligned word at its centre frame
    for i, cid in enumerate(b["clip_id"]):
        spk, utt = cid.split("/")
        words = alignment_words(read_grid_alignment(grid_raw / "align" / spk / f"{utt}.align"))
        centre = int(b["start"][i]) + 2
        expect = next((w for s, e, w in words if s <= centre < e), None)
        assert int(b["word"][i]) == (meta["words"].index(expect) if expect else -1)
        assert dm.speakers[int(b["speaker"][i])] == spk
    whole = TalkingFaceDataModule(str(grid_raw_prepared), num_frames="clip", batch_size=1)
    for b in whole.val_dataloader():
        check_contract(b, int(b["frames"].shape[1]))
        row = next(r for r in rows if r["clip_id"] == b["clip_id"][0])
        assert b["frames"].shape[1] == row["frames"] and int(b["start"][0]) == 0


def test_lrw_end_to_end(lrw_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "prep"
    assert prepare(lrw_raw, out, "lrw") == 0
    rows = manifest(out)
    assert len(rows) == 9 and all(r["status"] == "ok" and r["frames"] == 29 for r in rows)
    assert all(r["split"] == r["clip_id"].split("/")[1] for r in rows)  # LRW's own folders
    dm = TalkingFaceDataModule(root=str(out), batch_size=4)
    for b in all_batches(out, batch_size=4):
        check_contract(b, 5)
        for i, cid in enumerate(b["clip_id"]):
            assert dm.words[int(b["word"][i])] == cid.split("/")[0]
    pairs = json.loads((out / "pairs.json").read_text())
    assert {p["audio"] for p in pairs["pairs"]} == {
        r["clip_id"] for r in rows if r["split"] == "test"
    }


def test_folder_of_mp4s_with_a_fake_video(lrw_raw: Path, tmp_path: Path, capsys) -> None:
    corpus = json.loads((lrw_raw / "corpus.json").read_text())
    folder = tmp_path / "videos"
    for clip in corpus["clips"]:
        dest = folder / f"person{clip['speaker']}"
        dest.mkdir(parents=True, exist_ok=True)
        name = clip["stem"].split("/")[-1]
        src = lrw_raw / clip["stem"]
        shutil.copy(src.with_suffix(".mp4"), dest / f"{name}.mp4")
        sidecar = src.parent / f"{name}.landmarks.npz"
        shutil.copy(sidecar, dest / sidecar.name)
    (folder / "person1" / "x.mp4").write_text("this is not a video\n")
    out = tmp_path / "prep"
    capsys.readouterr()
    assert prepare(folder, out, "folder") == 0
    printed = capsys.readouterr().out
    rows = manifest(out)
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert [r["clip_id"] for r in skipped] == ["person1/x"] and skipped[0]["reason"]
    assert "person1/x" in printed and skipped[0]["reason"] in printed
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 9
    by_speaker = {}
    for r in rows:
        by_speaker.setdefault(r["speaker"], set()).add(r["split"])
    assert sorted(len(s) for s in by_speaker.values()) == [1, 1, 1]  # by-speaker split
    assert sorted(s.pop() for s in by_speaker.values()) == ["test", "train", "val"]
    seen = set()
    for b in all_batches(out, batch_size=3):
        check_contract(b, 5)
        seen.update(b["clip_id"])
    assert seen == {r["clip_id"] for r in ok}


# ------------------------------------------------------------------------------ bad input


def test_damaged_inputs_are_skipped_with_reasons(grid_raw: Path, tmp_path: Path, capsys) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(grid_raw, raw)
    videos = sorted(raw.glob("s*/*.mpg"))
    truncated, empty_wav, no_align = videos[0], videos[3], videos[6]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    empty_wav.with_suffix(".wav").write_bytes(b"")
    (raw / "align" / no_align.parent.name / f"{no_align.stem}.align").unlink()
    damaged = {f"{v.parent.name}/{v.stem}" for v in (truncated, empty_wav, no_align)}

    out = tmp_path / "prep"
    capsys.readouterr()
    assert prepare(raw, out, "grid") == 0
    printed = capsys.readouterr().out
    rows = {r["clip_id"]: r for r in manifest(out)}
    assert len(rows) == 9
    skipped = {cid for cid, r in rows.items() if r["status"] == "skipped"}
    assert skipped == damaged
    cid = lambda v: f"{v.parent.name}/{v.stem}"  # noqa: E731
    assert rows[cid(empty_wav)]["reason"] == "empty-file"
    assert rows[cid(no_align)]["reason"] == "missing-alignment"
    assert rows[cid(truncated)]["reason"] and rows[cid(truncated)]["detail"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"]["skipped"] == 3 and sum(meta["counts"]["by_reason"].values()) == 3
    for c in damaged:  # the summary names every skipped clip with its reason
        assert f"{c}: {rows[c]['reason']}" in printed
    assert "skipped 3" in printed
    assert not damaged & set(shard_clip_ids(out))
    for b in all_batches(out, batch_size=2, identity="other-clip"):
        assert not damaged & set(b["clip_id"])
    pairs = json.loads((out / "pairs.json").read_text())["pairs"]
    assert not damaged & ({p["audio"] for p in pairs} | {p["identity"] for p in pairs})


# ------------------------------------------------------------------------------ resumability


def test_interrupted_prepare_resumes_without_duplicates(
    grid_raw: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "prep"
    env = dict(os.environ, TALKING_FACES_QUIET="1")
    cmd = [sys.executable, "-m", "talking_faces", "prepare", str(grid_raw), str(out)]
    cmd += ["--layout", "grid", "--size", str(SIZE), "--workers", "2"]
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    clips_dir = out / ".work" / "clips"

    def finished_clips() -> int:  # not the temporaries of writes in flight
        return sum(not p.name.startswith(".tmp-") for p in clips_dir.glob("*.npz"))

    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if finished_clips() >= 3:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    finished = finished_clips()
    assert 3 <= finished < 9 and not (out / "meta.json").exists()

    capsys.readouterr()
    assert prepare(grid_raw, out, "grid", "--workers", "2") == 0
    printed = capsys.readouterr().out
    assert f"processed {9 - finished} clips" in printed  # finished clips were not redone
    rows = manifest(out)
    ids = [r["clip_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 9 and all(r["status"] == "ok" for r in rows)
    in_shards = shard_clip_ids(out)
    assert len(in_shards) == len(set(in_shards)) and set(in_shards) == set(ids)
    assert not (out / ".work").exists() and not list(out.rglob(".tmp-*"))

    capsys.readouterr()
    assert prepare(grid_raw, out, "grid", "--workers", "2") == 0
    assert "already complete" in capsys.readouterr().out


def test_changed_settings_are_refused(grid_raw: Path, grid_raw_prepared: Path, capsys) -> None:
    before = (grid_raw_prepared / "meta.json").read_bytes()
    capsys.readouterr()
    assert prepare(grid_raw, grid_raw_prepared, "grid", "--jpeg-quality", "80") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")
    assert "jpeg_quality" in err and "--overwrite" in err
    assert (grid_raw_prepared / "meta.json").read_bytes() == before
    assert prepare(grid_raw, grid_raw_prepared, "grid", "--split-protocol", "lrw") == 2
    assert "does not apply" in capsys.readouterr().err


def test_bad_arguments_are_one_line_errors(grid_raw: Path, tmp_path: Path, capsys) -> None:
    assert prepare(tmp_path / "missing", tmp_path / "out", "grid") == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert prepare(tmp_path / "empty", tmp_path / "out", "lrw") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert prepare(grid_raw, other, "grid", "--overwrite") == 2
    assert "refusing to delete" in capsys.readouterr().err
    assert (other / "notes.txt").exists()  # never deletes a folder that is not a dataset
    # a protocol that does not fit the corpus fails before any clip is processed
    assert prepare(grid_raw, tmp_path / "s29", "grid", "--split-protocol", "s29") == 2
    assert "needs speaker s29" in capsys.readouterr().err
    assert not (tmp_path / "s29").exists()


# ------------------------------------------------------------------------------ protocols


def test_unseen_speakers_and_reproducible_pairs(grid_raw: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert prepare(grid_raw, a, "grid", "--split-protocol", "unseen-speakers") == 0
    assert (
        prepare(grid_raw, b, "grid", "--split-protocol", "unseen-speakers", "--workers", "2") == 0
    )
    rows = manifest(a)
    assert {r["speaker"] for r in rows if r["split"] == "test"} == {"s1", "s2"}
    assert {r["split"] for r in rows if r["speaker"] == "s3"} == {"train", "val"}
    pairs = json.loads((a / "pairs.json").read_text())
    from talking_faces.utils.io import sha256_json

    assert pairs["sha256"] == sha256_json(pairs["pairs"])
    kinds = [p["kind"] for p in pairs["pairs"]]
    assert kinds.count("same-clip") == 6 and kinds.count("cross-clip") == 6
    # the same inputs give the same manifest, pairs and shard bytes whatever the worker count
    assert (a / "manifest.jsonl").read_bytes() == (b / "manifest.jsonl").read_bytes()
    assert (a / "pairs.json").read_bytes() == (b / "pairs.json").read_bytes()
    for chunk in sorted((a / "shards").rglob("chunk-*.bin")):
        assert chunk.read_bytes() == (b / chunk.relative_to(a)).read_bytes()
    dm = TalkingFaceDataModule(root=str(a))
    tp = dm.test_pairs()
    assert tp.sha256 == pairs["sha256"] and len(tp) == 12
    item = tp[0]
    assert item["frames"].shape == (75, 3, SIZE, SIZE) and item["audio"].shape == (75, 28, 12)


@pytest.mark.timeout(240)
def test_parallel_prepare_after_this_process_decoded_video(grid_raw: Path, tmp_path: Path) -> None:
    """A process that has decoded video (PyAV, FFmpeg's frame threads), such as a notebook that
    looked at a clip or a test worker that prepared in-process, then prepares with workers: forked
    workers hung in their first decode (av 18.1); the pool's workers must not inherit that."""
    from talking_faces.data.prepare.video import _decode_video

    clip = next(grid_raw.rglob("*.mpg"))
    assert _decode_video(clip)[0].shape[0] > 0
    out = tmp_path / "prep"
    assert prepare(grid_raw, out, "grid", "--workers", "2") == 0
    assert all(r["status"] in ("ok", "skipped") for r in manifest(out))
    assert len(shard_clip_ids(out)) > 0
