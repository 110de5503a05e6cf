"""The ``fan`` landmark backend (face-alignment's S3FD detector + 2D FAN) with weight files of the
real architectures that this test writes into a temporary torch hub cache: plumbing, shapes,
batching, the missing-weights error, and ``prepare --landmarks fan`` end to end.

The weights are random (see fan_weights.py), so nothing here is about accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from fan_weights import write_fan_hubs

from talking_faces.cli.main import main
from talking_faces.data.clips import ClipSkipped, RawClip
from talking_faces.data.prepare.clip import ClipConfig, process_clip
from talking_faces.data.prepare.landmarks import FANLandmarks, create_backend, fan_weight_files
from talking_faces.errors import MissingWeightsError
from talking_faces.utils.io import sha256_file, sha256_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Torch hub folders (``$TORCH_HOME/hub``): ``face`` finds a face per frame, ``none`` none."""
    return write_fan_hubs(tmp_path_factory.mktemp("torch"))


def write_clip(path: Path, num_frames: int, size: int = 64) -> Path:
    """An H.264 + AAC mp4: a face-coloured ellipse on a background, and a tone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ys, xs = np.mgrid[:size, :size]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        aus = out.add_stream("aac", rate=16000)
        aus.layout = "mono"
        for i in range(num_frames):
            img = np.full((size, size, 3), (60, 80, 120), np.uint8)
            face = ((xs - size / 2 - i) / (0.3 * size)) ** 2 + ((ys - size / 2) / (0.4 * size)) ** 2
            img[face < 1] = (220, 180, 150)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        t = np.arange(num_frames * 640) / 16000
        wave = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
        for s in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(
                wave[None, s : s + 1024], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, s
            for pkt in aus.encode(frame):
                out.mux(pkt)
        for pkt in aus.encode():
            out.mux(pkt)
    return path


def test_missing_weights_name_the_file_and_folder(hubs: dict[str, Path], tmp_path: Path) -> None:
    files = fan_weight_files()
    empty = tmp_path / "hub"
    with pytest.raises(MissingWeightsError) as exc:
        FANLandmarks(cache_dir=empty)
    msg = str(exc.value)
    assert "\n" not in msg
    assert files["s3fd"][0] in msg and str(empty / "checkpoints") in msg and "download" in msg
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "checkpoints" / files["s3fd"][0]).symlink_to(
        hubs["face"] / "checkpoints" / files["s3fd"][0]
    )
    with pytest.raises(MissingWeightsError, match=files["2DFAN-4"][0].replace(".", r"\.")):
        FANLandmarks(cache_dir=empty)


def test_prepare_without_weights_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")
    src = tmp_path / "videos"
    write_clip(src / "alice" / "a.mp4", 5)
    code = main(
        [
            "prepare",
            str(src),
            str(tmp_path / "prep"),
            "--layout",
            "folder",
            "--landmarks",
            "fan",
            "--workers",
            "1",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: face-alignment weights missing:") and len(err.splitlines()) == 1
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in err
    assert not (tmp_path / "prep" / "meta.json").exists()


def test_fan_backend_batches_frames(hubs: dict[str, Path], tmp_path: Path) -> None:
    backend = FANLandmarks(cache_dir=hubs["face"], batch_size=1)
    files = {
        name: sha256_file(hubs["face"] / "checkpoints" / name)
        for name, _ in fan_weight_files().values()
    }
    assert backend.weights_sha256 == sha256_json(files)
    assert backend.describe() == {
        "backend": "fan",
        "weights_sha256": backend.weights_sha256,
        "weights": files,
    }
    frames = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    lm, valid = backend(frames, RawClip("x", "x", tmp_path / "x.mp4"))  # 2 batches of 1
    assert lm.shape == (2, 68, 2) and lm.dtype == np.float32
    assert valid.shape == (2,) and valid.dtype == bool and valid.all()
    assert np.isfinite(lm).all() and np.ptp(lm[0], axis=0).max() > 0


def test_no_face_skips_the_clip(hubs: dict[str, Path], tmp_path: Path) -> None:
    raw = RawClip("a", "alice", write_clip(tmp_path / "a.mp4", 5))
    backend = FANLandmarks(cache_dir=hubs["none"])
    lm, valid = backend(np.zeros((2, 64, 64, 3), np.uint8), raw)
    assert lm.shape == (2, 68, 2) and not valid.any()
    with pytest.raises(ClipSkipped) as exc:
        process_clip(raw, ClipConfig(landmarks="fan"), backend)
    assert exc.value.reason == "no-face"


def test_prepare_with_fan_end_to_end(
    hubs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(hubs["face"].parent))
    assert torch.hub.get_dir() == str(hubs["face"])
    src = tmp_path / "videos"
    write_clip(src / "alice" / "hello.mp4", 5)
    (src / "alice" / "broken.mp4").write_text("not a video\n")
    out = tmp_path / "prep"
    args = ["prepare", str(src), str(out), "--layout", "folder", "--landmarks", "fan"]
    assert main([*args, "--workers", "1", "--size", "64", "--split-protocol", "by-clip"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    expected = create_backend("fan").weights_sha256
    assert json.dumps(meta).count(expected) >= 1 and '"fan"' in json.dumps(meta)
    rows = {r["clip_id"]: r for r in map(json.loads, (out / "manifest.jsonl").open())}
    assert rows["alice/hello"]["status"] == "ok" and rows["alice/hello"]["frames"] == 5
    assert rows["alice/broken"]["status"] == "skipped"
    assert rows["alice/broken"]["reason"] == "unreadable-video"
