"""The ``dlib`` landmark backend with dlib's real models (the registry assets ``dlib-shape-68`` and
``dlib-mmod-detector``; ``make test`` fetches them first, and without them these tests fail with
the asset's one-line message) on a real photo, ``skimage.data.astronaut()`` (512x512).

Measured here (dlib-bin 20.0.1, CPU):

* CNN (MMOD) detector: one box, (168, 69)-(263, 164), centre (215.5, 116.5): the face.
* HOG detector at upsample 1: two boxes, the face (175, 76)-(265, 166) and the mission patch
  (126, 335)-(215, 425); the largest box (90x90 against 89x89, a narrow margin) is the face.
* After ``align.align_clip`` to the 128-pixel template (no smoothing), the CNN backend's eye and
  mouth points (36-67) are 2.73 px from the template's on average, 6.08 px at most; the stable
  points (eye centres, mouth centre) 2.47 px at most. Tolerances: about 1.5x those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from talking_faces.cli.main import build_parser
from talking_faces.data.clips import RawClip
from talking_faces.data.prepare import align
from talking_faces.data.prepare.landmarks import (
    BACKENDS,
    DlibLandmarks,
    create_backend,
    fill_gaps,
)
from talking_faces.errors import MissingWeightsError, UserError
from talking_faces.inference.generate import GenerateRequest, check_request
from talking_faces.utils.assets import ASSETS, asset_path
from talking_faces.utils.io import sha256_json

#: the astronaut's face in the 512x512 image (the mission patch is at about x 126-215, y 335-425)
FACE_X, FACE_Y = (180, 260), (60, 200)
#: measured: eye+mouth points 2.73 px mean, 6.08 px max; stable points 2.47 px max (size 128)
TOL_MEAN, TOL_MAX, TOL_STABLE = 4.1, 9.1, 3.7
SIZE = 128

RAW = RawClip(clip_id="astronaut", speaker="", video=Path("astronaut.png"))


def _assets() -> None:
    for name in ("dlib-shape-68", "dlib-mmod-detector"):
        try:
            asset_path(name)
        except MissingWeightsError as exc:
            pytest.fail(str(exc))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def cnn() -> DlibLandmarks:
    _assets()
    return DlibLandmarks()


@pytest.fixture(scope="module")
def hog() -> DlibLandmarks:
    _assets()
    return DlibLandmarks(detector="hog", upsample=1)


@pytest.fixture(scope="module")
def cnn_points(cnn: DlibLandmarks, image: np.ndarray) -> np.ndarray:
    lm, valid = cnn(image[None], RAW)
    assert valid.tolist() == [True]
    return lm[0]


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _in_face(x: float, y: float) -> bool:
    return FACE_X[0] <= x <= FACE_X[1] and FACE_Y[0] <= y <= FACE_Y[1]


def test_cnn_finds_the_face_not_the_patch(cnn: DlibLandmarks, image: np.ndarray) -> None:
    boxes = cnn.boxes(image)
    print("cnn boxes", boxes, "centres", [_centre(b) for b in boxes])
    assert len(boxes) >= 1
    largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    assert _in_face(*_centre(largest)), largest


def test_hog_fires_on_the_patch_and_the_largest_face_wins(
    hog: DlibLandmarks, image: np.ndarray
) -> None:
    boxes = hog.boxes(image)
    centres = [_centre(b) for b in boxes]
    print("hog boxes", boxes, "centres", centres)
    assert any(_in_face(*c) for c in centres)
    assert any(not _in_face(*c) and c[1] > 300 for c in centres)  # the mission patch
    pts = hog.frame(image)
    assert pts is not None
    assert _in_face(float(pts[:, 0].mean()), float(pts[:, 1].mean()))


def test_68_points_in_ibug_order(cnn_points: np.ndarray) -> None:
    p = cnn_points
    assert p.shape == (68, 2) and p.dtype == np.float32
    assert np.isfinite(p).all()
    jaw, brows, nose, eyes, mouth = p[0:17], p[17:27], p[27:36], p[36:48], p[48:68]
    print("jaw x", jaw[:, 0].tolist(), "jaw y", jaw[:, 1].tolist())
    # jaw: left to right along the bottom of the face, the chin (8) lowest in its middle
    assert (np.diff(jaw[:, 0]) >= 0).all() and jaw[16, 0] - jaw[0, 0] > 60
    assert int(np.argmax(jaw[:, 1])) in (7, 8, 9)
    # brows above the eyes, above the nose tip, above the mouth; mouth above the chin
    means = [brows[:, 1].mean(), eyes[:, 1].mean(), nose[:, 1].mean(), mouth[:, 1].mean()]
    print(
        "mean y: brows, eyes, nose, mouth", [round(float(m), 1) for m in means], "chin", jaw[8, 1]
    )
    assert brows[:, 1].mean() < eyes[:, 1].mean() < nose[:, 1].mean() < mouth[:, 1].mean()
    assert mouth[:, 1].mean() < jaw[8, 1]
    assert eyes[:, 1].max() < mouth[:, 1].min()
    # nose between the eyes horizontally; the image-left eye (36-41) left of the other (42-47)
    assert p[36:42, 0].max() < p[42:48, 0].min()
    assert p[36:42, 0].mean() < nose[:, 0].mean() < p[42:48, 0].mean()
    assert p[48:68, 0].min() > jaw[0, 0] and p[48:68, 0].max() < jaw[16, 0]
    # all on the face
    assert _in_face(p[:, 0].mean(), p[:, 1].mean())


def test_aligned_eyes_and_mouth_sit_on_the_template(
    image: np.ndarray, cnn_points: np.ndarray
) -> None:
    _, crop = align.align_clip(image[None], cnn_points[None], np.ones(1, bool), SIZE, 0.0)
    tp = align.template_points(SIZE)
    idx = list(range(36, 68))
    err = np.linalg.norm(crop[0, idx] - tp[idx], axis=1)
    stable = np.linalg.norm(align.stable_points(crop[0]) - align.stable_points(tp), axis=1)
    print(
        f"size {SIZE}: eye+mouth points mean {err.mean():.2f} px, max {err.max():.2f} px; "
        f"stable points {stable.round(2).tolist()} px"
    )
    assert err.mean() < TOL_MEAN
    assert err.max() < TOL_MAX
    assert stable.max() < TOL_STABLE


def test_frames_without_a_face_are_invalid_and_gap_filled(
    hog: DlibLandmarks, image: np.ndarray
) -> None:
    blank = np.full_like(image, 128)
    frames = np.stack([image, blank, image])
    lm, valid = hog(frames, RAW)
    assert lm.shape == (3, 68, 2) and lm.dtype == np.float32
    assert valid.tolist() == [True, False, True]
    assert (lm[1] == 0).all()
    filled, ok = fill_gaps(lm, valid, max_gap=2)
    assert ok.all()
    np.testing.assert_allclose(filled[1], (lm[0] + lm[2]) / 2)


def test_weights_recorded_from_the_asset_table(cnn: DlibLandmarks, hog: DlibLandmarks) -> None:
    shape = ASSETS["dlib-shape-68"].members[0]
    mmod = ASSETS["dlib-mmod-detector"].members[0]
    expected = {shape.filename: shape.sha256, mmod.filename: mmod.sha256}
    assert cnn.weights_files == expected
    assert cnn.weights_sha256 == sha256_json(expected)
    d = cnn.describe()
    assert d["backend"] == "dlib" and d["detector"] == "cnn"
    assert d["weights_sha256"] == cnn.weights_sha256 and d["weights"] == expected
    assert hog.weights_files == {shape.filename: shape.sha256}  # HOG is built into dlib


def test_create_backend_and_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert "dlib" in BACKENDS
    _assets()
    backend = create_backend("dlib")
    assert isinstance(backend, DlibLandmarks) and backend.detector == "cnn"
    with pytest.raises(UserError, match="unknown dlib face detector"):
        DlibLandmarks(detector="haar")
    with pytest.raises(UserError, match="without CUDA"):
        create_backend("dlib", device="cuda")
    monkeypatch.setenv("TALKING_FACES_ASSETS", str(tmp_path))
    with pytest.raises(MissingWeightsError) as info:
        create_backend("dlib")
    message = str(info.value)
    assert "\n" not in message and "talking-faces weights --fetch" in message


def test_cli_choices(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["prepare", "src", "out", "--layout", "folder", "--landmarks", "dlib"])
    assert args.landmarks == "dlib"
    args = parser.parse_args(
        ["generate", "c.ckpt", "--image", "i.png", "--audio", "a.wav", "--out", "o.mp4"]
        + ["--landmark-backend", "dlib"]
    )
    assert args.landmark_backend == "dlib"
    with pytest.raises(SystemExit):  # not with a landmarks file or an aligned crop
        parser.parse_args(
            ["generate", "c.ckpt", "--image", "i.png", "--audio", "a.wav", "--out", "o.mp4"]
            + ["--landmark-backend", "dlib", "--aligned"]
        )
    for name in ("c.ckpt", "i.png", "a.wav"):
        (tmp_path / name).write_bytes(b"x")
    req = GenerateRequest(
        ckpt=str(tmp_path / "c.ckpt"),
        image=str(tmp_path / "i.png"),
        audio=str(tmp_path / "a.wav"),
        out=str(tmp_path / "o.mp4"),
        landmark_backend="haar",
    )
    with pytest.raises(UserError, match="unknown landmark backend"):
        check_request(req)
