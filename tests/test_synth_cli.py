"""``talking-faces synth``: the GRID and LRW layouts on disk, decodable at 25 fps with the right
frame counts, audio and alignments that cover the clip, deterministic output, one-line errors."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from talking_faces.cli.main import main
from talking_faces.data.synthetic import lexicon
from talking_faces.data.synthetic.face import MOUTH_INTERIOR, inner_lip_opening, speaker_style
from talking_faces.utils.io import TMP_PREFIX

SIZE = 128
FRAME = 1 / 25


@pytest.fixture(autouse=True, scope="module")
def _quiet() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TALKING_FACES_QUIET", "1")  # no progress bar in the captured stderr
        yield


def _synth(out: Path, *args: str) -> int:
    return main(["synth", str(out), *args])


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grid") / "corpus"
    sheet = root.parent / "sheet.png"
    args = ["--layout", "grid", "--speakers", "2", "--clips", "2", "--size", str(SIZE)]
    assert _synth(root, *args, "--workers", "2", "--preview", str(sheet)) == 0
    return root


@pytest.fixture(scope="module")
def lrw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lrw") / "corpus"
    args = ["--layout", "lrw", "--speakers", "3", "--clips", "3", "--size", str(SIZE)]
    assert _synth(root, *args, "--workers", "1") == 0
    return root


def _decode(path: Path) -> tuple[np.ndarray, float, int, float]:
    """Video frames (T, H, W, 3), average frame rate, audio sample rate, decoded audio seconds."""
    with av.open(str(path)) as c:
        rate = float(c.streams.video[0].average_rate)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        sr = c.streams.audio[0].rate
        samples = sum(f.samples for f in c.decode(audio=0))
    return frames, rate, sr, samples / sr


def _no_temporaries(root: Path) -> None:
    assert not [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)]


def _lip_pixels_match(frame: np.ndarray, lm: np.ndarray, speaker: int) -> None:
    """Decoded pixels between outer and inner lip landmarks are nearer the lip colour than the
    skin or the mouth interior (4:2:0 chroma at 128 px blurs thin lips, hence no tight bound)."""
    style = speaker_style(speaker)
    for outer, inner in ((51, 62), (57, 66)):
        x, y = np.round(0.5 * (lm[outer] + lm[inner])).astype(int)
        pixel = frame[y, x].astype(float)
        to_lip = np.linalg.norm(pixel - style.lip)
        assert to_lip < np.linalg.norm(pixel - style.skin), (pixel, style.lip)
        assert to_lip < np.linalg.norm(pixel - MOUTH_INTERIOR), (pixel, style.lip)


def test_grid_layout(grid: Path) -> None:
    videos = sorted(grid.glob("s*/*.mpg"))
    assert [p.parent.name for p in videos] == ["s1", "s1", "s2", "s2"]
    _no_temporaries(grid)
    for mpg in videos:
        name, spk = mpg.stem, mpg.parent.name
        words = lexicon.words_from_utterance(name)  # the name encodes a GRID sentence
        frames, rate, audio_rate, audio_seconds = _decode(mpg)
        assert frames.shape == (75, SIZE, SIZE, 3) and rate == 25
        assert audio_rate > 0 and abs(audio_seconds - 75 * FRAME) <= FRAME
        with av.open(str(mpg)) as c:
            assert c.streams.video[0].codec_context.name == "mpeg1video"
            assert c.streams.audio[0].codec_context.name == "mp2"
        with wave.open(str(mpg.with_suffix(".wav"))) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (25000, 1, 2)
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert len(pcm) == 75000  # 3 s, the same as the 75 frames
        rows = [line.split() for line in (grid / "align" / spk / f"{name}.align").open()]
        starts, ends = [int(r[0]) for r in rows], [int(r[1]) for r in rows]
        assert starts[0] == 0 and ends[-1] == len(pcm)  # covers the audio
        assert starts[1:] == ends[:-1] and all(e > s for s, e in zip(starts, ends, strict=True))
        assert rows[0][2] == rows[-1][2] == "sil"
        assert [r[2] for r in rows if r[2] not in ("sil", "sp")] == words
        side = np.load(mpg.with_name(f"{name}.landmarks.npz"))
        assert side["landmarks"].shape == (75, 68, 2) and side["landmarks"].dtype == np.float32
        assert side["valid"].all() and float(side["fps"]) == 25.0
        # the sidecar lands on the decoded video: lip colour under the lip landmarks
        speaker = int(side["speaker"])
        assert f"s{speaker}" == spk
        for t in (0, 37, 74):
            _lip_pixels_match(frames[t], side["landmarks"][t], speaker)
        # the mouth in the file follows the speech in the file
        energy = np.sqrt((pcm.astype(float).reshape(75, 1000) ** 2).mean(1))
        r = np.corrcoef(inner_lip_opening(side["landmarks"].astype(float)), energy)[0, 1]
        assert r > 0.5
    assert '"layout": "grid"' in (grid / "corpus.json").read_text()
    assert "landmarks.npz" in (grid / "README.txt").read_text()


def test_preview_contact_sheet(grid: Path) -> None:
    from PIL import Image

    sheet = grid.parent / "sheet.png"
    with Image.open(sheet) as img:
        width, height = img.size
        pixels = np.asarray(img.convert("RGB"))
    assert width == 2 * 2 * SIZE and height > 2 * SIZE  # 2 speakers x (closed, open), 2 rows
    assert sheet.stat().st_size < 300_000
    # the landmark row differs from the plain row
    assert np.abs(pixels[-SIZE:].astype(int) - pixels[-2 * SIZE : -SIZE]).mean() > 1


def test_lrw_layout(lrw: Path) -> None:
    videos = sorted(lrw.glob("*/*/*.mp4"))
    assert len(videos) == 9
    _no_temporaries(lrw)
    vocabulary = {w.upper() for w in lexicon.VOCABULARY}
    speakers_per_split: dict[str, set[int]] = {"train": set(), "val": set(), "test": set()}
    for mp4 in videos:
        word, split = mp4.parent.parent.name, mp4.parent.name
        assert word in vocabulary and split in speakers_per_split
        assert re.fullmatch(rf"{word}_\d{{5}}", mp4.stem)
        frames, rate, _, audio_seconds = _decode(mp4)
        assert frames.shape == (29, SIZE, SIZE, 3) and rate == 25
        assert abs(audio_seconds - 29 * FRAME) <= FRAME
        with av.open(str(mp4)) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert c.streams.audio[0].codec_context.name == "aac"
            a = c.streams.audio[0]
            assert abs(float(a.duration * a.time_base) - 29 * FRAME) <= FRAME
        text = mp4.with_suffix(".txt").read_text().splitlines()
        assert text[0] == f"Text: {word}"
        duration = [line for line in text if line.startswith("Duration:")]
        assert re.fullmatch(r"Duration: \d+\.\d\d seconds", duration[0])
        assert 0.05 < float(duration[0].split()[1]) < 1.16
        side = np.load(mp4.with_name(f"{mp4.stem}.landmarks.npz"))
        assert side["landmarks"].shape == (29, 68, 2)
        speakers_per_split[split].add(int(side["speaker"]))
        _lip_pixels_match(frames[14], side["landmarks"][14], int(side["speaker"]))
    assert all(s == {1, 2, 3} for s in speakers_per_split.values()), speakers_per_split


def test_same_seed_same_output(grid: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    args = ["--layout", "grid", "--speakers", "2", "--clips", "2", "--size", str(SIZE)]
    assert _synth(again, *args, "--workers", "1") == 0  # other worker count, same corpus
    first = sorted(p.relative_to(grid) for p in grid.rglob("*") if p.is_file())
    assert first == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in first:
        if rel.suffix in (".wav", ".align", ".npz"):
            assert (grid / rel).read_bytes() == (again / rel).read_bytes(), rel
        elif rel.suffix == ".mpg":
            np.testing.assert_array_equal(_decode(grid / rel)[0], _decode(again / rel)[0])
    other = tmp_path / "other"
    assert _synth(other, *args[:-2], "--size", "64", "--seed", "1", "--workers", "1") == 0
    assert sorted(p.name for p in other.glob("s1/*.wav")) != sorted(
        p.name for p in grid.glob("s1/*.wav")
    )


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


def test_bad_arguments_give_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "x")
    assert "--size" in _one_line_error(capsys, ["synth", out, "--layout", "grid", "--size", "100"])
    assert "--size" in _one_line_error(capsys, ["synth", out, "--layout", "grid", "--size", "48"])
    assert "--speakers" in _one_line_error(
        capsys, ["synth", out, "--layout", "grid", "--speakers", "0"]
    )
    assert "--clips" in _one_line_error(capsys, ["synth", out, "--layout", "lrw", "--clips", "0"])
    assert "layout" in _one_line_error(capsys, ["synth", out, "--layout", "voxceleb"])
    assert "png" in _one_line_error(
        capsys, ["synth", out, "--layout", "grid", "--preview", str(tmp_path / "a.jpg")]
    )
    assert not (tmp_path / "x").exists()


def test_non_empty_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    cmd = [sys.executable, "-m", "talking_faces", "synth", str(out), "--layout", "lrw"]
    tiny = ["--speakers", "1", "--clips", "1", "--size", "64", "--workers", "1"]
    proc = subprocess.run(cmd + tiny, capture_output=True, text=True)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "--overwrite" in err
    assert "Traceback" not in proc.stderr
    assert (out / "keep.txt").read_text() == "precious"
    assert main(["synth", str(out), "--layout", "lrw", *tiny, "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and len(list(out.glob("*/*/*.mp4"))) == 1


def test_disk_full_leaves_no_partial_clip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_savez = np.savez
    calls = {"n": 0}

    def savez_until_full(file, *args, **kwargs):  # the second clip's sidecar hits a full disk
        calls["n"] += 1
        if calls["n"] == 2:
            file.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez", savez_until_full)
    out = tmp_path / "full"
    argv = ["synth", str(out), "--layout", "grid", "--speakers", "1", "--clips", "3"]
    err = _one_line_error(capsys, [*argv, "--size", "64", "--workers", "1"])
    assert "disk full" in err
    _no_temporaries(out)
    # the first clip is complete, the failed one left nothing, the corpus is not marked done
    stems = {p.name.split(".")[0] for p in out.rglob("*") if p.is_file()}
    assert len(stems) == 1
    (stem,) = stems
    assert sorted(p.name for p in out.rglob(f"{stem}*")) == [
        f"{stem}.align",
        f"{stem}.landmarks.npz",
        f"{stem}.mpg",
        f"{stem}.wav",
    ]
    assert not (out / "corpus.json").exists()
