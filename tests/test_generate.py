"""``talking-faces generate``: a face photo and speech to an mp4, with a tiny ldm checkpoint.

The photo is a full (unaligned) frame of a synthetic clip, its landmarks the clip's sidecar file
(or face-alignment's FAN with weight files of the real architectures, see fan_weights.py); the
speech is several synthetic clips' audio joined to 15 s, as wav and as mp3. The outputs are decoded
with PyAV: frame count, size and audio duration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch
from fan_weights import write_fan_hubs
from PIL import Image
from scipy.signal import resample_poly

from talking_faces.cli.main import main
from talking_faces.errors import UserError
from talking_faces.inference.generate import GenerateRequest, face_crop, generate, load_method

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    str(ROOT / "experiments" / "base.yaml"),
    str(ROOT / "experiments" / "data" / "synthetic.yaml"),
    str(ROOT / "experiments" / "model" / "ldm_tiny.yaml"),
]
FPS = 25
#: the photo is this frame of its clip (the sidecar's frame index too)
FRAME = 10

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@dataclass
class Photo:
    png: Path
    sidecar: Path
    clip_id: str


@dataclass
class Video:
    frames: np.ndarray  # T,H,W,3 uint8
    audio_seconds: float  # the audio stream's duration


def decode(path: Path) -> Video:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        seconds = float(stream.duration * stream.time_base)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return Video(frames, seconds)


@pytest.fixture(scope="module")
def ckpt(prepared_grid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ldm trained for 3 steps on the prepared synthetic corpus."""
    out = tmp_path_factory.mktemp("generate_runs")
    args = [
        "fit",
        *CONFIGS,
        f"data.root={prepared_grid}",
        f"out={out}",
        "name=ldm",
        "data.num_workers=0",
        "data.batch_size=2",
        "data.num_frames=4",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
    ]
    assert main(args) == 0
    return out / "ldm" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def photo(
    prepared_grid: Path, synthetic_grid_raw: Path, tmp_path_factory: pytest.TempPathFactory
) -> Photo:
    """Frame FRAME of the first test pair's clip, as decoded from its raw video (128 px, the
    whole face and background: not aligned)."""
    clip_id = json.loads((prepared_grid / "pairs.json").read_text())["pairs"][0]["audio"]
    video = synthetic_grid_raw / f"{clip_id}.mpg"
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == FRAME:
                image = frame.to_ndarray(format="rgb24")
                break
    png = tmp_path_factory.mktemp("photo") / "face.png"
    Image.fromarray(image).save(png)
    return Photo(png, video.with_name(f"{video.stem}.landmarks.npz"), clip_id)


@pytest.fixture(scope="module")
def speech(synthetic_grid_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Five synthetic clips' speech joined (15 s) as a 25 kHz wav and a 44.1 kHz stereo mp3,
    and one clip's (3 s) as a wav."""
    folder = tmp_path_factory.mktemp("speech")
    parts = [soundfile.read(p, dtype="float32") for p in sorted(synthetic_grid_raw.rglob("*.wav"))]
    rate = parts[0][1]
    wave = np.concatenate([p[0] for p in parts[:5]])
    soundfile.write(folder / "long.wav", wave, rate)
    soundfile.write(folder / "short.wav", parts[0][0], rate)
    stereo = np.stack([resample_poly(wave, 44100, rate)] * 2).astype(np.float32)
    with av.open(str(folder / "long.mp3"), "w") as container:
        stream = container.add_stream("libmp3lame", rate=44100)
        stream.layout = "stereo"
        for start in range(0, stereo.shape[1], 4410):
            chunk = np.ascontiguousarray(stereo[:, start : start + 4410])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 44100, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return {
        "wav": folder / "long.wav",
        "mp3": folder / "long.mp3",
        "short": folder / "short.wav",
        "seconds": len(wave) / rate,
        "short_seconds": len(parts[0][0]) / rate,
    }


def args_for(ckpt: Path, photo: Photo, audio: Path, out: Path, *extra: str) -> list[str]:
    return [
        "generate",
        str(ckpt),
        "--image",
        str(photo.png),
        "--landmarks",
        str(photo.sidecar),
        "--landmarks-frame",
        str(FRAME),
        "--audio",
        str(audio),
        "--out",
        str(out),
        *extra,
    ]


def assert_matches_audio(video: Video, seconds: float, width: int = 64) -> None:
    assert abs(len(video.frames) / FPS - seconds) <= 1 / FPS
    assert len(video.frames) == round(seconds * FPS)
    assert video.frames.shape[1:] == (64, width, 3)
    assert abs(video.audio_seconds - seconds) <= 1 / FPS


def test_checkpoint_records_its_dataset_meta(ckpt: Path, prepared_grid: Path) -> None:
    meta = json.loads((prepared_grid / "meta.json").read_text())
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["dataset_meta"] == meta
    assert load_method(str(ckpt)).dataset_meta == meta


def test_photo_is_aligned_as_prepare_aligns_it(photo: Photo, prepared_grid: Path) -> None:
    from talking_faces.data.dataset import PreparedDataset, TestPairDataset, WindowConfig

    prepared = PreparedDataset.load(prepared_grid)
    pairs = TestPairDataset(prepared, WindowConfig())
    assert pairs[0]["clip_id"] == photo.clip_id
    reference = pairs[0]["frames"][FRAME].permute(1, 2, 0).numpy().astype(np.float64)
    req = GenerateRequest(
        ckpt="unused",
        image=str(photo.png),
        audio="unused",
        out="unused.mp4",
        landmarks=str(photo.sidecar),
        landmarks_frame=FRAME,
    )
    crop = face_crop(req, 64, prepared.meta).astype(np.float64)
    unaligned = Image.open(photo.png).resize((64, 64), Image.Resampling.LANCZOS)
    # prepare smooths landmarks and the transform over time and stores JPEG: close, not equal
    error = np.abs(crop - reference).mean() / 255
    assert error < 0.03
    assert np.abs(np.asarray(unaligned, np.float64) - reference).mean() / 255 > 3 * error


def test_long_wav_gives_one_video_as_long_as_the_audio(
    ckpt: Path, photo: Photo, speech: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "talk.mp4"
    assert main(args_for(ckpt, photo, speech["wav"], out)) == 0
    assert str(out) in capsys.readouterr().out
    video = decode(out)
    assert_matches_audio(video, speech["seconds"])  # 375 frames: five chunks of 75
    assert video.frames.std() > 1.0  # not a blank video
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.mp4"]  # no temporary left


def test_mp3_with_two_samples_gives_two_files(
    ckpt: Path, photo: Photo, speech: dict, tmp_path: Path
) -> None:
    out = tmp_path / "talk.mp4"
    assert main(args_for(ckpt, photo, speech["mp3"], out, "--samples", "2")) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk_1.mp4", "talk_2.mp4"]
    first, second = decode(tmp_path / "talk_1.mp4"), decode(tmp_path / "talk_2.mp4")
    assert_matches_audio(first, speech["seconds"])
    assert_matches_audio(second, speech["seconds"])


def test_side_by_side_is_one_wider_video_and_chunks_keep_the_length(
    ckpt: Path, photo: Photo, speech: dict, tmp_path: Path
) -> None:
    out = tmp_path / "both.mp4"
    extra = ("--samples", "2", "--side-by-side", "--chunk-frames", "7")  # 75 = 10 x 7 + 5
    assert main(args_for(ckpt, photo, speech["short"], out, *extra)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["both.mp4"]
    video = decode(out)
    assert_matches_audio(video, speech["short_seconds"], width=128)


def test_aligned_crop_is_resized_and_must_be_square(
    ckpt: Path,
    photo: Photo,
    speech: dict,
    prepared_grid: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    crop = face_crop(
        GenerateRequest("-", str(photo.png), "-", "-.mp4", landmarks=str(photo.sidecar)),
        96,
        json.loads((prepared_grid / "meta.json").read_text()),
    )
    square = tmp_path / "crop.png"
    Image.fromarray(crop).save(square)
    out = tmp_path / "aligned.mp4"
    base = ["generate", str(ckpt), "--audio", str(speech["short"]), "--aligned"]
    assert main([*base, "--image", str(square), "--out", str(out)]) == 0
    assert_matches_audio(decode(out), speech["short_seconds"])
    capsys.readouterr()

    wide = tmp_path / "wide.png"
    Image.fromarray(crop[:80]).save(wide)
    assert main([*base, "--image", str(wide), "--out", str(tmp_path / "no.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --aligned takes a square face crop") and "96x80" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "no.mp4").exists()


def test_fan_aligns_a_photo_and_no_face_is_one_line(
    ckpt: Path,
    photo: Photo,
    speech: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hubs = write_fan_hubs(tmp_path / "torch")
    base = ["generate", str(ckpt), "--image", str(photo.png), "--audio", str(speech["short"])]

    monkeypatch.setenv("TORCH_HOME", str(hubs["face"].parent))
    out = tmp_path / "fan.mp4"
    assert main([*base, "--out", str(out)]) == 0
    assert_matches_audio(decode(out), speech["short_seconds"])
    capsys.readouterr()

    for home, message in (
        (hubs["none"].parent, f"error: no face found in {photo.png}"),
        (tmp_path / "empty", "error: face-alignment weights missing"),
    ):
        monkeypatch.setenv("TORCH_HOME", str(home))
        assert main([*base, "--out", str(tmp_path / "none.mp4")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(message) and len(err.splitlines()) == 1, err
        assert not (tmp_path / "none.mp4").exists()


def test_bad_inputs_are_one_line_errors(
    ckpt: Path, photo: Photo, speech: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "noise.wav").write_text("not audio\n")
    (tmp_path / "noise.mp3").write_text("not audio\n")
    (tmp_path / "face.png").write_text("not an image\n")
    np.save(tmp_path / "five.npy", np.zeros((5, 2), np.float32))
    out = str(tmp_path / "x.mp4")
    good = ["--image", str(photo.png), "--audio", str(speech["short"])]
    sidecar = ["--landmarks", str(photo.sidecar)]
    cases = [
        (["--image", str(tmp_path / "nope.png"), "--audio", str(speech["short"])], "image"),
        (["--image", str(photo.png), "--audio", str(tmp_path / "noise.wav"), *sidecar], "audio"),
        (["--image", str(photo.png), "--audio", str(tmp_path / "noise.mp3"), *sidecar], "audio"),
        (["--image", str(tmp_path / "face.png"), "--audio", str(speech["short"])], "image"),
        ([*good, "--landmarks", str(tmp_path / "five.npy")], "68 (x, y)"),
        ([*good, *sidecar, "--landmarks-frame", "999"], "--landmarks-frame 999"),
        ([*good, *sidecar, "--samples", "0"], "--samples"),
    ]
    for extra, needle in cases:
        assert main(["generate", str(ckpt), *extra, "--out", out]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and needle in err, (extra, err)
        assert len(err.splitlines()) == 1, err
    assert main(["generate", str(ckpt), *good, *sidecar, "--out", str(tmp_path / "x.avi")]) == 2
    assert "--out must name an .mp4" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.mp4"))


def test_a_deterministic_method_refuses_several_samples(
    ckpt: Path, photo: Photo, speech: dict, tmp_path: Path
) -> None:
    model = load_method(str(ckpt))
    model.stochastic = False  # as a deterministic method declares itself
    req = GenerateRequest(
        ckpt=str(ckpt),
        image=str(photo.png),
        audio=str(speech["short"]),
        out=str(tmp_path / "det.mp4"),
        num_samples=2,
        landmarks=str(photo.sidecar),
    )
    with pytest.raises(UserError, match="deterministic"):
        generate(req, model)
    assert not list(tmp_path.iterdir())
    req.num_samples = 1
    assert generate(req, model) == [tmp_path / "det.mp4"]


def test_a_real_photo_and_real_speech_with_dlib(
    ckpt: Path, prepared_grid: Path, tmp_path: Path
) -> None:
    """The astronaut photo (skimage) speaking a LibriVox recording (pocketsphinx's test data,
    7.10 s), aligned with dlib's CNN detector and 68 points: an mp4 as long as the speech, from
    the crop of the face that dlib finds (not the mission patch)."""
    from real_footage import asset, read_speech
    from skimage import data

    from talking_faces.data.prepare.landmarks import DlibLandmarks
    from talking_faces.inference.generate import align_face

    image = data.astronaut()
    png = tmp_path / "astronaut.png"
    Image.fromarray(image).save(png)
    speech = asset("librivox-0870")
    out = tmp_path / "astronaut.mp4"
    argv = ["generate", str(ckpt), "--image", str(png), "--landmark-backend", "dlib"]
    assert main([*argv, "--audio", str(speech), "--out", str(out)]) == 0
    video = decode(out)
    seconds = len(read_speech("librivox-0870")) / 16000
    print(f"\nastronaut + librivox-0870: {len(video.frames)} frames for {seconds:.3f} s of speech")
    assert_matches_audio(video, seconds)
    # the crop is the one prepare makes from dlib's points on the face
    points = DlibLandmarks("cnn").frame(image)
    assert points is not None
    assert 170 < points[:, 0].mean() < 270 and 60 < points[:, 1].mean() < 200  # the face
    meta = json.loads((prepared_grid / "meta.json").read_text())
    req = GenerateRequest(
        ckpt=str(ckpt), image=str(png), audio="unused", out="unused.mp4", landmark_backend="dlib"
    )
    np.testing.assert_array_equal(
        face_crop(req, 64, meta), align_face(image, points, 64, meta, "x")
    )
