"""The per-clip half of ``prepare``: layout readers, decoding, landmarks over time, alignment,
audio features and ``process_clip``, on small videos written here with PyAV and on the synthetic
corpus."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from talking_faces.cli.main import main
from talking_faces.data.clips import ClipSkipped, RawClip
from talking_faces.data.prepare import align, audio, landmarks
from talking_faces.data.prepare.clip import ClipConfig, feature_params, process_clip
from talking_faces.data.prepare.video import decode_clip
from talking_faces.data.sources.readers import read_grid_alignment, read_layout, source_sha256
from talking_faces.data.synthetic.lexicon import words_from_utterance
from talking_faces.errors import UserError
from talking_faces.utils.io import sha256_file

# ----------------------------------------------------------------------------- file makers


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: int = 25,
    audio_samples: np.ndarray | None = None,
    rate: int = 16000,
) -> Path:
    """Encode (T, H, W, 3) uint8 frames (and (N, C) float audio) with PyAV.

    ``.mpg``: MPEG-1 video + MP2 audio in MPEG-PS (GRID); anything else: H.264 + AAC in MP4.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mpeg = path.suffix == ".mpg"
    with av.open(str(path), "w", format="mpeg" if mpeg else "mp4") as out:
        vs = out.add_stream("mpeg1video" if mpeg else "libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if not mpeg:
            vs.options = {"crf": "1"}
        else:
            vs.bit_rate = 4_000_000
        astream = None
        if audio_samples is not None:
            astream = out.add_stream("mp2" if mpeg else "aac", rate=rate)
            astream.layout = "mono" if audio_samples.shape[1] == 1 else "stereo"
        vs.time_base = Fraction(1, fps)
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if astream is not None:
            fmt = astream.codec_context.format
            size = astream.codec_context.frame_size or 1024
            for start in range(0, len(audio_samples), size):
                chunk = audio_samples[start : start + size]
                if fmt.name.startswith("s16"):
                    data = (chunk * 32767).astype(np.int16)
                else:
                    data = chunk.astype(np.float32)
                data = data.T if fmt.is_planar else data.reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(data), format=fmt.name, layout=astream.layout.name
                )
                frame.sample_rate, frame.pts = rate, start
                for pkt in astream.encode(frame):
                    out.mux(pkt)
            for pkt in astream.encode():
                out.mux(pkt)
    return path


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    x = (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def plain_frames(n: int, size: int = 64) -> np.ndarray:
    """Frames whose mean brightness encodes their index (20 + 6 i), under a moving texture.

    The texture keeps every encoded frame large enough that MPEG-PS stores one timestamp per frame.
    """
    ys, xs = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        texture = 12 * np.sign(np.sin((xs + 3 * i) / 2.0) * np.sin((ys + 2 * i) / 2.0))
        out[i] = np.clip(20 + 6 * i % 230 + texture, 0, 255)[..., None]
    return out


def write_align(path: Path, words: list[str], end_units: int = 75000) -> Path:
    """A GRID .align: sil, the words evenly spread, sil; units of 25 kHz samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    edges = np.linspace(10000, end_units - 10000, len(words) + 1).astype(int)
    lines = [f"0 {edges[0]} sil"]
    lines += [f"{a} {b} {w}" for a, b, w in zip(edges[:-1], edges[1:], words, strict=True)]
    lines.append(f"{edges[-1]} {end_units} sil")
    path.write_text("\n".join(lines) + "\n")
    return path


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


# ---------------------------------------------------------------------------------- readers


def test_grid_reader_handles_the_layout_quirks(tmp_path: Path) -> None:
    root = tmp_path / "grid"
    frames = plain_frames(10)
    # s1/bbaf2n: wav beside the video (25 kHz), alignment under align/s1
    write_video(root / "s1" / "bbaf2n.mpg", frames)
    soundfile.write(root / "s1" / "bbaf2n.wav", tone(0.4, 25000)[:, 0], 25000, subtype="PCM_16")
    write_align(root / "align" / "s1" / "bbaf2n.align", words_from_utterance("bbaf2n"))
    # s1/lgbz5a: audio in a parallel tree at 50 kHz, alignment in the sN/align variant
    write_video(root / "s1" / "lgbz5a.mpg", frames)
    (root / "audio" / "s1").mkdir(parents=True)
    soundfile.write(root / "audio/s1/lgbz5a.wav", tone(0.4, 50000, 1000.0)[:, 0], 50000)
    write_align(root / "s1" / "align" / "lgbz5a.align", words_from_utterance("lgbz5a"))
    # s1/pwai3p: no alignment anywhere
    write_video(root / "s1" / "pwai3p.mpg", frames)
    # s2/sbwo1s: a mirror filed another utterance's alignment under this name
    write_video(root / "s2" / "sbwo1s.mpg", frames)
    write_align(root / "align" / "s2" / "sbwo1s.align", words_from_utterance("lgbz5a"))
    # s2/bbbz9n: zero-length video
    (root / "s2" / "bbbz9n.mpg").touch()
    write_align(root / "align" / "s2" / "bbbz9n.align", words_from_utterance("bbbz9n"))
    # s21: audio and alignments but no video, as in GRID
    (root / "audio" / "s21").mkdir(parents=True)
    soundfile.write(root / "audio" / "s21" / "bbaf2n.wav", tone(0.4, 25000)[:, 0], 25000)
    write_align(root / "align" / "s21" / "bbaf2n.align", words_from_utterance("bbaf2n"))

    clips, skipped = read_layout(root, "grid")

    assert [c.clip_id for c in clips] == ["s1/bbaf2n", "s1/lgbz5a"]
    a, b = clips
    assert a.audio == root / "s1" / "bbaf2n.wav" and b.audio == root / "audio/s1/lgbz5a.wav"
    assert a.align == root / "align/s1/bbaf2n.align"
    assert b.align == root / "s1/align/lgbz5a.align"
    assert a.speaker == "s1" and a.word is None and a.sidecar is None
    assert [(cid, reason) for cid, reason, _ in skipped] == [
        ("s1/pwai3p", "missing-alignment"),
        ("s2/bbbz9n", "empty-file"),
        ("s2/sbwo1s", "alignment-mismatch"),
    ]
    mismatch = skipped[2][2]
    assert "lay green by z five again" in mismatch and "set blue with o one soon" in mismatch

    # both audio rates end up as 16 kHz under the 10 frames, with their tone intact
    for clip, freq in ((a, 440.0), (b, 1000.0)):
        dec = decode_clip(clip)
        assert dec.frames.shape == (10, 64, 64, 3)
        assert dec.waveform.shape == (10 * 640,) and dec.waveform.dtype == np.float32
        assert abs(dominant_frequency(dec.waveform, 16000) - freq) < 30
    assert decode_clip(b).source_sample_rate == 50000


def test_grid_words_come_from_the_alignment_and_must_fit_the_clip(tmp_path: Path) -> None:
    root = tmp_path / "grid"
    write_video(root / "s3" / "bbaf2n.mpg", plain_frames(75), audio_samples=tone(3.0, 16000))
    write_align(root / "align" / "s3" / "bbaf2n.align", words_from_utterance("bbaf2n"))
    write_video(root / "s4" / "bbaf2n.mpg", plain_frames(60), audio_samples=tone(2.4, 16000))
    # the s3 alignment (3 s) filed under s4, whose clip is 2.4 s: names agree, lengths do not
    write_align(root / "align" / "s4" / "bbaf2n.align", words_from_utterance("bbaf2n"))
    clips, skipped = read_layout(root, "grid")
    assert not skipped and len(clips) == 2
    rows = read_grid_alignment(clips[0].align)
    assert rows[0][2] == "sil" and rows[-1] == (65000, 75000, "sil")
    assert clips[0].audio is None  # no wav anywhere: the video's own stream is used
    with pytest.raises(ClipSkipped) as exc:
        process_clip(clips[1], ClipConfig())
    assert exc.value.reason == "alignment-mismatch" and "has 60 frames" in exc.value.detail


def test_lrw_reader(tmp_path: Path) -> None:
    root = tmp_path / "lipread_mp4"
    for word, split, n in (("ABOUT", "train", 1), ("ABOUT", "val", 2), ("WORLD", "test", 3)):
        video = write_video(root / word / split / f"{word}_{n:05d}.mp4", plain_frames(5, 32))
        video.with_suffix(".txt").write_text(f"Text: {word}\nConf: 7\n\nDuration: 0.{n}8 seconds\n")
    write_video(root / "ABOUT" / "train" / "WORLD_00009.mp4", plain_frames(5, 32))  # wrong word
    write_video(root / "ABOUT" / "extra" / "ABOUT_00004.mp4", plain_frames(5, 32))  # no split
    (root / "ABOUT" / "test").mkdir()
    (root / "ABOUT" / "test" / "ABOUT_00005.mp4").touch()
    clips, skipped = read_layout(root, "lrw")
    assert [c.clip_id for c in clips] == [
        "ABOUT/train/ABOUT_00001",
        "ABOUT/val/ABOUT_00002",
        "WORLD/test/WORLD_00003",
    ]
    assert [c.word for c in clips] == ["ABOUT", "ABOUT", "WORLD"]
    assert [c.split_hint for c in clips] == ["train", "val", "test"]
    assert [c.word_duration for c in clips] == [0.18, 0.28, 0.38]
    assert all(c.speaker == c.clip_id and c.audio is None for c in clips)
    assert skipped == [("ABOUT/test/ABOUT_00005", "empty-file", skipped[0][2])]


def test_folder_reader(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    write_video(root / "alice" / "talk1.mp4", plain_frames(5, 32))
    write_video(root / "bob" / "day2" / "talk.mp4", plain_frames(5, 32))
    write_video(root / "intro.mp4", plain_frames(5, 32))
    (root / "alice" / "notes.txt").write_text("not a video")
    (root / "bob" / "empty.mov").touch()
    clips, skipped = read_layout(root, "folder")
    assert [(c.clip_id, c.speaker) for c in clips] == [
        ("alice/talk1", "alice"),
        ("bob/day2/talk", "day2"),
        ("intro", "mine"),
    ]
    assert [(cid, reason) for cid, reason, _ in skipped] == [("bob/empty", "empty-file")]
    assert source_sha256(clips[0]) == sha256_file(clips[0].video)


def test_reader_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=str(tmp_path / "nope")):
        read_layout(tmp_path / "nope", "grid")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as exc:
        read_layout(tmp_path / "empty", "lrw")
    assert "no lrw clips" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(UserError, match="unknown layout"):
        read_layout(tmp_path / "empty", "voxceleb")


# ---------------------------------------------------------------------------------- decoding


def test_30fps_stereo_44k_becomes_25fps_16k_mono(tmp_path: Path) -> None:
    frames = plain_frames(36)  # 1.2 s at 30 fps
    video = write_video(
        tmp_path / "a.mp4", frames, fps=30, audio_samples=tone(1.2, 44100, 500.0, 2), rate=44100
    )
    dec = decode_clip(RawClip("a", "x", video))
    assert dec.frames.shape == (30, 64, 64, 3)
    assert dec.source_fps == pytest.approx(30.0, rel=1e-3) and dec.source_frames == 36
    # nearest source frame by time: output k at k / 25 s shows source round(1.2 k)
    expected = np.floor(np.arange(30) * 1.2 + 0.5 - 1e-9).astype(int)
    np.testing.assert_array_equal(dec.source_index, expected)
    brightness = dec.frames.reshape(30, -1).mean(axis=1)
    np.testing.assert_allclose(brightness, 20 + 6 * expected, atol=2.5)
    assert dec.source_sample_rate == 44100
    assert dec.waveform.shape == (30 * 640,)
    assert abs(dominant_frequency(dec.waveform, 16000) - 500.0) < 20
    # the audio fills the clip: no zero padding beyond a few ms at the end
    voiced = np.flatnonzero(np.abs(dec.waveform) > 0.05)
    assert voiced[-1] > 30 * 640 - 200 and voiced[0] < 200
    assert np.abs(dec.waveform).max() == pytest.approx(0.4, abs=0.05)


def test_damaged_inputs_are_skipped_with_reasons(tmp_path: Path) -> None:
    frames = plain_frames(50)
    good_mp4 = write_video(tmp_path / "good.mp4", frames, audio_samples=tone(2.0, 16000))
    good_mpg = write_video(tmp_path / "good.mpg", frames)
    wav = tmp_path / "good.wav"
    soundfile.write(wav, tone(2.0, 25000)[:, 0], 25000)
    assert decode_clip(RawClip("ok", "x", good_mp4)).waveform.shape == (50 * 640,)
    assert decode_clip(RawClip("ok", "x", good_mpg, audio=wav)).frames.shape[0] == 50

    truncated = tmp_path / "truncated.mpg"
    truncated.write_bytes(good_mpg.read_bytes()[: good_mpg.stat().st_size // 2])
    cut_mp4 = tmp_path / "cut.mp4"
    cut_mp4.write_bytes(good_mp4.read_bytes()[: good_mp4.stat().st_size // 2])
    empty_wav = tmp_path / "empty.wav"
    empty_wav.touch()
    text = tmp_path / "notes.mp4"
    text.write_text("this is a text file, not a video\n" * 20)
    zero = tmp_path / "zero.mp4"
    zero.touch()
    silent = write_video(tmp_path / "silent.mp4", frames)
    short_wav = tmp_path / "short.wav"
    soundfile.write(short_wav, tone(1.0, 16000)[:, 0], 16000)
    header_only = tmp_path / "header.wav"
    soundfile.write(header_only, np.zeros(0, np.float32), 16000)
    tiny = write_video(tmp_path / "tiny.mp4", plain_frames(2), audio_samples=tone(0.08, 16000))

    cases = {
        "truncated-video": RawClip("t", "x", truncated, audio=wav),
        "unreadable-video": RawClip("c", "x", cut_mp4),
        "empty-file": RawClip("e", "x", good_mpg, audio=empty_wav),
        "no-audio": RawClip("n", "x", silent),
        "audio-too-short": RawClip("s", "x", good_mpg, audio=short_wav),
    }
    for reason, raw in cases.items():
        with pytest.raises(ClipSkipped) as exc:
            decode_clip(raw)
        assert exc.value.reason == reason, (reason, exc.value)
        assert exc.value.detail
    for raw, reason in (
        (RawClip("txt", "x", text), "unreadable-video"),
        (RawClip("z", "x", zero), "empty-file"),
        (RawClip("h", "x", good_mpg, audio=header_only), "no-audio"),
        (RawClip("m", "x", tmp_path / "missing.mp4"), "unreadable-video"),
    ):
        with pytest.raises(ClipSkipped) as exc:
            decode_clip(raw)
        assert exc.value.reason == reason, (reason, exc.value)
    with pytest.raises(ClipSkipped) as exc:
        decode_clip(RawClip("tiny", "x", tiny), min_frames=5)
    assert exc.value.reason == "too-short"


# ------------------------------------------------------------------------------ audio features


def test_mfcc_is_python_speech_features() -> None:
    from python_speech_features import mfcc as psf_mfcc

    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(np.arange(16000) * 0.05) + 0.05 * rng.standard_normal(16000)).astype(
        np.float32
    )
    ours = audio.mfcc(wave)
    # the library's own defaults on int16-scale samples, as syncnet_python calls it
    ref = psf_mfcc(wave.astype(np.float64) * 32768.0, 16000)
    assert ours.shape == ref.shape == (99, 13)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("num_frames", [1, 29, 75])
def test_features_have_four_rows_per_frame(num_frames: int) -> None:
    wave = np.zeros(num_frames * 640, np.float32)
    # a 20 ms burst centred on video frame t: the log-mel energy peaks at row 4t + 2
    t = num_frames // 2
    centre = t * 640 + 320
    wave[centre - 160 : centre + 160] = tone(0.02, 16000, 2000.0)[:, 0]
    mf, lm = audio.features_for_frames(wave, num_frames)
    assert mf.shape == (4 * num_frames, 13) and lm.shape == (4 * num_frames, 80)
    assert mf.dtype == lm.dtype == np.float32 and np.isfinite(mf).all() and np.isfinite(lm).all()
    assert int(np.argmax(lm.max(axis=1))) == 4 * t + 2
    assert int(np.argmax(mf[:, 0])) in (4 * t, 4 * t + 1, 4 * t + 2)  # log energy of the burst


# ------------------------------------------------------------------------- landmarks over time


def test_fill_gaps_and_smooth() -> None:
    t = np.arange(20, dtype=np.float32)
    lm = np.repeat(np.stack([t, 2 * t], -1)[:, None, :], 68, axis=1)
    valid = np.ones(20, bool)
    valid[[0, 1]] = False  # at the start: held
    valid[5:8] = False  # short inner gap: linear
    valid[10:17] = False  # 7 frames: too long for max_gap 5
    broken = lm.copy()
    broken[~valid] = 1e6
    filled, ok = landmarks.fill_gaps(broken, valid, max_gap=5)
    np.testing.assert_allclose(filled[5:8], lm[5:8], atol=1e-4)
    np.testing.assert_allclose(filled[:2], np.broadcast_to(lm[2], (2, 68, 2)))
    assert ok[:10].all() and not ok[10:17].any() and ok[17:].all()
    assert landmarks.longest_gap(ok) == (10, 17)
    # smoothing gives the invalid frames (garbage here) no weight at all
    smoothed = landmarks.smooth(filled, ok, 1.5)
    clean = filled.copy()
    clean[~ok] = lm[~ok]
    np.testing.assert_allclose(smoothed[ok], landmarks.smooth(clean, ok, 1.5)[ok], atol=1e-4)
    jitter = lm + np.random.default_rng(0).normal(0, 1, lm.shape).astype(np.float32)
    all_ok = np.ones(20, bool)
    err_before = np.abs(jitter - lm)[3:-3].mean()
    err_after = np.abs(landmarks.smooth(jitter, all_ok, 1.5) - lm)[3:-3].mean()
    assert err_after < 0.6 * err_before


# --------------------------------------------------------------------------------- alignment


def _disc(img: np.ndarray, centre: np.ndarray, radius: float, colour: tuple[int, ...]) -> None:
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    img[(xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 <= radius**2] = colour


def test_similarity_transform_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (10, 2))
    angle, scale, shift = 0.4, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = align.similarity_transform(src, src @ rot.T + shift)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)
    mirrored = src * [-1, 1]  # no reflection: the best proper similarity has det > 0
    assert np.linalg.det(align.similarity_transform(src, mirrored)[:, :2]) > 0


def test_align_clip_puts_a_moving_mouth_on_the_template() -> None:
    size, num = 128, 12
    template = align.template_points(200).astype(np.float64)
    frames = np.full((num, 256, 256, 3), 90, np.uint8)
    lms = np.empty((num, 68, 2), np.float32)
    for k in range(num):  # the face rotates, scales and moves: a known similarity per frame
        angle, scale = 0.25 * np.sin(k / 2.0), 0.9 + 0.04 * k
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shift = np.array([20 + 3 * k, 30 - 2 * k])
        lms[k] = template @ rot.T + shift
        for c, colour in zip(
            align.stable_points(lms[k]), [(0, 0, 255), (0, 255, 0), (255, 0, 0)], strict=True
        ):
            _disc(frames[k], c, 7 * scale, colour)
    crops, crop_lm = align.align_clip(frames, lms, np.ones(num, bool), size, sigma=0.0)
    assert crops.shape == (num, size, size, 3) and crops.dtype == np.uint8
    target = align.template_mouth_centre(size)
    np.testing.assert_allclose(
        align.mouth_centre(crop_lm), np.broadcast_to(target, (num, 2)), atol=0.05
    )
    np.testing.assert_allclose(
        crop_lm, np.broadcast_to(align.template_points(size), crop_lm.shape), atol=0.05
    )
    for crop in crops:  # the pixels moved too: the red disc sits on the template's mouth
        red = (crop[..., 0] > 160) & (crop[..., 1] < 80) & (crop[..., 2] < 80)
        ys, xs = np.nonzero(red)
        assert len(xs) > 20
        assert np.hypot(xs.mean() - target[0], ys.mean() - target[1]) < 1.0
    pts = align.template_points(size)
    assert pts.min() > 0.1 * size and pts.max() < 0.9 * size  # brows and chin inside the crop


# -------------------------------------------------------------------- the synthetic corpus


@pytest.fixture(scope="module")
def synth_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "grid"
    args = ["synth", str(out), "--layout", "grid", "--speakers", "2", "--clips", "2"]
    assert main([*args, "--size", "256"]) == 0
    return out


def test_synthetic_corpus_is_aligned_within_3px(synth_grid: Path) -> None:
    clips, skipped = read_layout(synth_grid, "grid")
    assert len(clips) == 4 and not skipped
    target = align.template_mouth_centre(128)
    motion = []
    for raw in clips:
        clip = process_clip(raw, ClipConfig(size=128, landmarks="sidecar"))
        err = np.linalg.norm(align.mouth_centre(clip.landmarks) - target, axis=1)
        assert err.max() < 3.0, (raw.clip_id, err.max())
        src = np.load(raw.sidecar)["landmarks"]
        motion.append(np.ptp(align.mouth_centre(src), axis=0).max())
    assert max(motion) > 5.0  # the heads did move in the source frames


def test_process_clip_end_to_end(synth_grid: Path) -> None:
    raw = read_layout(synth_grid, "grid")[0][0]
    cfg = ClipConfig(size=96)
    clip = process_clip(raw, cfg)
    t = clip.num_frames
    assert t == 75 and clip.frames.shape == (75, 96, 96, 3) and clip.frames.dtype == np.uint8
    assert clip.waveform.shape == (75 * 640,) and clip.waveform.dtype == np.float32
    assert clip.mfcc.shape == (300, 13) and clip.logmel.shape == (300, 80)
    assert clip.landmarks.shape == (75, 68, 2) and clip.landmarks.dtype == np.float32
    assert clip.landmarks_valid.shape == (75,) and clip.landmarks_valid.all()
    assert (clip.landmarks > 0).all() and (clip.landmarks < 96).all()
    assert clip.speaker == raw.speaker and clip.word is None
    utt = raw.clip_id.split("/")[1]
    assert [w for _, _, w in clip.words] == words_from_utterance(utt)
    assert all(0 <= s < e <= t for s, e, _ in clip.words)
    assert clip.source_sha256 == source_sha256(raw) != sha256_file(raw.video)
    # the lips are where the landmarks say: lip pixels differ from the skin under the nose
    mouth = align.mouth_centre(clip.landmarks[0]).round().astype(int)
    nose = clip.landmarks[0, 30].round().astype(int)
    lip, skin = clip.frames[0, mouth[1], mouth[0]], clip.frames[0, nose[1] + 4, nose[0]]
    assert np.abs(lip.astype(int) - skin.astype(int)).sum() > 40
    params = feature_params(cfg)
    assert json.loads(json.dumps(params)) == params
    assert params["audio"]["mfcc"]["numcep"] == 13 and params["fps"] == 25
    assert len(params["template"]["points"]) == 68 and params["size"] == 96


def test_corpus_with_damaged_files_skips_exactly_those(synth_grid: Path, tmp_path: Path) -> None:
    root = tmp_path / "grid"
    shutil.copytree(synth_grid, root)
    videos = sorted(root.glob("s*/*.mpg"))
    truncated, empty_wav, no_align, fake = videos
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    empty_wav.with_suffix(".wav").write_bytes(b"")
    (root / "align" / no_align.parent.name / f"{no_align.stem}.align").unlink()
    fake.unlink()
    fake.with_suffix(".mp4").write_text("not a video\n")
    # one more clean clip so something survives
    extra = root / "s2" / "bbaf2n.mpg"
    shutil.copy(truncated.with_suffix(".wav"), extra.with_suffix(".wav"))
    write_video(extra, plain_frames(75, 64))
    write_align(root / "align" / "s2" / "bbaf2n.align", words_from_utterance("bbaf2n"))
    np.savez(
        extra.with_name("bbaf2n.landmarks.npz"),
        landmarks=np.load(fake.with_name(fake.stem + ".landmarks.npz"))["landmarks"] / 4,
        valid=np.ones(75, bool),
        fps=np.float32(25),
    )

    clips, pre = read_layout(root, "grid")
    reasons = {cid: reason for cid, reason, _ in pre}
    for raw in clips:
        try:
            process_clip(raw, ClipConfig())
        except ClipSkipped as exc:
            reasons[raw.clip_id] = exc.reason
    cid = lambda p: f"{p.parent.name}/{p.stem}"  # noqa: E731
    assert reasons == {
        cid(truncated): "truncated-video",
        cid(empty_wav): "empty-file",
        cid(no_align): "missing-alignment",
        cid(fake): "unreadable-video",
    }


def test_sidecar_problems_are_reasons(synth_grid: Path, tmp_path: Path) -> None:
    raw = read_layout(synth_grid, "grid")[0][0]
    cfg = ClipConfig()
    no_sidecar = RawClip(raw.clip_id, raw.speaker, raw.video, audio=raw.audio, align=raw.align)
    with pytest.raises(ClipSkipped, match="no-sidecar"):
        process_clip(no_sidecar, cfg)
    data = dict(np.load(raw.sidecar))
    for name, invalid, reason in (
        ("gap", slice(30, 38), "face-gap"),
        ("none", slice(None), "no-face"),
        ("short", slice(40, 44), None),
    ):
        valid = data["valid"].copy()
        valid[invalid] = False
        side = tmp_path / f"{name}.landmarks.npz"
        np.savez(side, landmarks=data["landmarks"], valid=valid, fps=data["fps"])
        clip_raw = RawClip(raw.clip_id, raw.speaker, raw.video, raw.audio, raw.align, side)
        if reason is None:  # 4 missing frames are interpolated, and stay marked invalid
            clip = process_clip(clip_raw, cfg)
            assert not clip.landmarks_valid[40:44].any() and clip.landmarks_valid[:40].all()
            assert np.isfinite(clip.landmarks).all()
            continue
        with pytest.raises(ClipSkipped) as exc:
            process_clip(clip_raw, cfg)
        assert exc.value.reason == reason


def test_sidecar_follows_the_frame_resampling(tmp_path: Path) -> None:
    video = write_video(
        tmp_path / "v.mp4", plain_frames(36), fps=30, audio_samples=tone(1.2, 16000)
    )
    lm = np.zeros((36, 68, 2), np.float32)
    lm[:, :, 0] = np.arange(36)[:, None]  # x encodes the source frame
    np.savez(
        tmp_path / "v.landmarks.npz", landmarks=lm, valid=np.ones(36, bool), fps=np.float32(30)
    )
    raw = RawClip("v", "x", video, sidecar=tmp_path / "v.landmarks.npz")
    dec = decode_clip(raw)
    out, valid = landmarks.SidecarLandmarks()(dec.frames, raw, dec.source_index)
    assert out.shape == (30, 68, 2) and valid.all()
    np.testing.assert_array_equal(out[:, 0, 0], dec.source_index)
    # without the index, the sidecar's own fps gives the same frames
    out2, _ = landmarks.SidecarLandmarks()(dec.frames, raw)
    np.testing.assert_array_equal(out2[:, 0, 0], dec.source_index)
