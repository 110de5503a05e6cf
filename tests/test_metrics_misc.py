"""LMD variants by hand, CPBD against the cpbd package, sample diversity, and the metric suite."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import torch
from PIL import Image
from skimage import data, filters, transform

from talking_faces.errors import UserError
from talking_faces.metrics.diversity import SampleDiversity, mouth_mask, sample_diversity
from talking_faces.metrics.image import ALEXNET_FILENAME, load_lpips, video_psnr, video_ssim
from talking_faces.metrics.landmarks import LandmarkDistance, landmark_distance
from talking_faces.metrics.sharpness import VideoCPBD, cpbd, rgb_to_gray_uint8, video_cpbd
from talking_faces.metrics.suite import HIGHER_IS_BETTER, MetricSuite, Protocol
from talking_faces.nn.syncnet import SyncNet

# ----------------------------------------------------------------------------------------------
# LMD


def mouth_template() -> torch.Tensor:
    """68 points; the mouth (48-67) on an ellipse, the rest scattered."""
    pts = torch.rand(68, 2, generator=torch.Generator().manual_seed(0)) * 100
    angles = torch.linspace(0, 2 * math.pi, 21)[:20]
    pts[48:68, 0] = 64 + 20 * torch.cos(angles)
    pts[48:68, 1] = 90 + 8 * torch.sin(angles)
    return pts


def test_lmd_variants_by_hand_and_failed_frames_counted() -> None:
    true = mouth_template().expand(2, 3, 68, 2).clone()
    pred = true.clone()
    pred[0, 0, 48:68] += torch.tensor([5.0, 0.0])  # frame 0: the whole mouth moved 5 px
    pred[0, 1, 50] += torch.tensor([3.0, 4.0])  # frame 1: one mouth point moved 5 px
    pred[0, :, :48] += 30.0  # points outside the mouth never count
    pred_valid = torch.tensor([[True, True, False], [False, False, False]])  # frame 2 failed
    true_valid = torch.ones(2, 3, dtype=torch.bool)

    # frame 1 centred: the moved point's offset becomes (3,4) - (3,4)/20 = (2.85, 3.8) -> 4.75,
    # each of the 19 others (-0.15, -0.2) -> 0.25
    expected = {
        "default": (0.0 + (19 * 0.25 + 4.75) / 20) / 2,
        "chen2018": (0.0 + (19 * 0.25 + 4.75)) / 2,
        "uncentred": (5.0 + 5.0 / 20) / 2,
    }
    for variant, value in expected.items():
        per_clip, scored, failed = landmark_distance(pred, true, pred_valid, true_valid, variant)
        assert float(per_clip[0]) == pytest.approx(value, abs=1e-9), variant
        assert math.isnan(float(per_clip[1]))  # clip 1: no frame could be scored
        assert scored.tolist() == [2, 0] and failed.tolist() == [1, 3]

    # non-finite landmarks are failures too, and cannot leak NaN into the score
    true_nan = true.clone()
    true_nan[0, 0, 60] = float("nan")
    per_clip, scored, failed = landmark_distance(pred, true_nan, pred_valid, None, "uncentred")
    assert float(per_clip[0]) == pytest.approx(0.25, abs=1e-9)
    assert scored.tolist() == [1, 0] and failed.tolist() == [2, 3]

    metric = LandmarkDistance(variant="uncentred")
    metric.update(pred, true, pred_valid, true_valid)
    metric.update(pred[:1], true[:1])  # all frames valid: (5 + 0.25 + 0) / 3
    assert float(metric.compute()) == pytest.approx((expected["uncentred"] + 5.25 / 3) / 2)
    assert metric.counts() == {"frames_scored": 5, "frames_failed": 4, "clips_unscored": 1}
    assert LandmarkDistance.higher_is_better is False
    with pytest.raises(ValueError, match="variant"):
        LandmarkDistance(variant="sum")


# ----------------------------------------------------------------------------------------------
# CPBD


def _import_cpbd_package():
    """The cpbd package imports scipy.ndimage.imread, removed from SciPy; its scoring code does
    not use it, so a placeholder attribute is enough to import it (test-only shim)."""
    if not hasattr(scipy.ndimage, "imread"):
        scipy.ndimage.imread = None  # type: ignore[attr-defined]
    try:
        import cpbd as package
    except ImportError as err:  # pragma: no cover - depends on the environment
        pytest.skip(f"cpbd package does not import here: {err}")
    return package


def cpbd_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    camera = data.camera()
    small = transform.resize(camera, (128, 160), preserve_range=True).round().astype(np.uint8)
    blurred = (filters.gaussian(small, sigma=1.5, preserve_range=True)).round().astype(np.uint8)
    smooth = scipy.ndimage.uniform_filter(rng.integers(0, 256, (96, 128)).astype(np.uint8), 3)
    low_contrast = (small // 8 + 100).astype(np.uint8)  # every block below the 51 JNB contrast
    noise = rng.integers(0, 256, (70, 90)).astype(np.uint8)
    return {
        "camera": small,
        "blurred": blurred,
        "smooth": smooth,
        "low_contrast": low_contrast,
        "noise": noise,
    }


@pytest.mark.parametrize("name", list(cpbd_images()))
def test_cpbd_matches_the_cpbd_package(name: str) -> None:
    package = _import_cpbd_package()
    image = cpbd_images()[name]
    assert cpbd(image) == pytest.approx(package.compute(image), abs=1e-9)


def test_cpbd_properties() -> None:
    images = cpbd_images()
    assert cpbd(images["camera"]) > cpbd(images["blurred"]) + 0.2
    assert cpbd(images["camera"]) == cpbd(images["camera"].astype(np.float32) / 255)
    with pytest.raises(ValueError, match="at least 64x64"):
        cpbd(np.zeros((63, 100), dtype=np.uint8))

    rgb = np.random.default_rng(1).integers(0, 256, (2, 5, 7, 3)).astype(np.uint8)
    ours = rgb_to_gray_uint8(torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255)
    pil = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in rgb])
    np.testing.assert_array_equal(ours.numpy(), pil)

    gray = images["camera"]
    frame = torch.from_numpy(gray).float().div(255).expand(3, -1, -1)
    sharp_clip = frame.expand(1, 2, 3, *gray.shape)
    blur_clip = torch.from_numpy(images["blurred"]).float().div(255).expand(1, 2, 3, *gray.shape)
    per_clip = video_cpbd(torch.cat([sharp_clip, blur_clip]))
    assert per_clip[0] == pytest.approx(cpbd(gray))
    clips = torch.cat([sharp_clip, blur_clip, sharp_clip.flip(-1)])
    scores = []
    for threads in (1, 2):  # frames scored on one thread and on two: the same scores
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            scores.append(video_cpbd(clips))
        finally:
            torch.set_num_threads(before)
    assert torch.equal(scores[0], scores[1]) and torch.equal(scores[0][:2], per_clip)
    metric = VideoCPBD()
    metric.update(torch.cat([sharp_clip, blur_clip]))
    assert float(metric.compute()) == pytest.approx(float(per_clip.mean()))
    assert VideoCPBD.higher_is_better is True


# ----------------------------------------------------------------------------------------------
# Diversity and the suite (LPIPS with a test-made AlexNet trunk in a temporary torch home)


@pytest.fixture(scope="module")
def lpips_model(tmp_path_factory: pytest.TempPathFactory):
    import torchvision

    home = tmp_path_factory.mktemp("torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    trunk = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if "features" in k}
    torch.save(trunk, folder / ALEXNET_FILENAME)  # our loader needs only the conv trunk
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        return load_lpips()


def test_sample_diversity(lpips_model) -> None:
    torch.manual_seed(0)
    one = torch.rand(2, 1, 2, 3, 64, 64)
    same = sample_diversity(one.expand(2, 3, 2, 3, 64, 64).contiguous(), lpips_model)
    torch.testing.assert_close(same["l1"], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(same["lpips"], torch.zeros(2, dtype=torch.float64))

    levels = torch.tensor([0.0, 0.2, 0.5]).view(1, 3, 1, 1, 1, 1)
    flat = (torch.zeros(1, 3, 2, 3, 64, 64) + levels).float()
    out = sample_diversity(flat)
    assert set(out) == {"l1"}
    assert float(out["l1"][0]) == pytest.approx((0.2 + 0.5 + 0.3) / 3, abs=1e-7)

    noisy = (one[:1] + 0.3 * torch.randn(1, 3, 2, 3, 64, 64)).clamp(0, 1)
    metric = SampleDiversity(lpips_model)
    metric.update(noisy)
    result = metric.compute()
    assert float(result["lpips"]) > 0 and float(result["l1"]) > 0.1
    with pytest.raises(ValueError, match="at least 2"):
        sample_diversity(one)


def test_mouth_mask_boxes_the_mouth_points() -> None:
    lmk = torch.full((2, 3, 68, 2), 5.0)
    lmk[:, :, 48:68] = torch.tensor([[20.0, 30.0], [28.0, 34.0]]).repeat(10, 1)  # x 20-28, y 30-34
    lmk[0, 1, 48:68] += 100.0  # garbage, but marked invalid below
    valid = torch.ones(2, 3, dtype=torch.bool)
    valid[0, 1] = False
    valid[1] = False  # a clip without landmarks
    mask = mouth_mask(lmk, valid, 48, 48, margin=0.25)  # 2 px margin each side
    assert mask.shape == (2, 3, 48, 48)
    ys, xs = torch.nonzero(mask[0, 0], as_tuple=True)
    assert (int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())) == (18, 29, 28, 35)
    assert torch.equal(mask[0, 1], mask[0, 0])  # the invalid frame takes the clip's mean box
    assert not mask[1].any()
    with pytest.raises(ValueError, match="B,T,68,2"):
        mouth_mask(lmk[..., :1], valid, 48, 48)


def test_diversity_says_where_samples_differ_and_how_their_sync_spreads() -> None:
    torch.manual_seed(0)
    base = torch.rand(1, 1, 2, 3, 32, 32).expand(1, 3, 2, 3, 32, 32).clone()
    mouth = torch.zeros(1, 2, 32, 32, dtype=torch.bool)
    mouth[..., 20:28, 8:24] = True  # 128 of 1024 pixels
    in_mouth, outside = base.clone(), base.clone()
    in_mouth[:, 1, ..., 20:28, 8:24] += 0.1
    outside[:, 2, ..., :8, :] += 0.1
    assert float(sample_diversity(in_mouth, mouth=mouth)["mouth_diff"][0]) > 0
    share = sample_diversity(in_mouth, mouth=mouth)
    assert float(share["mouth_diff"][0] / share["diff"][0]) == pytest.approx(1.0)
    assert float(share["mouth_area"][0]) == pytest.approx(128 / 1024)
    away = sample_diversity(outside, mouth=mouth)
    assert float(away["mouth_diff"][0]) == 0.0 and float(away["diff"][0]) > 0

    metric = SampleDiversity(num_samples=3)
    lse_c = torch.tensor([[2.0, 2.2, 1.8]])  # mean 2.0, worst sample 10% away
    metric.update(outside, mouth=mouth, lse_c=lse_c)
    metric.update(in_mouth, mouth=mouth, lse_c=torch.tensor([[1.0, 1.0, 1.3]]))  # 1.1; 18.2%
    result = metric.compute()
    assert float(result["lse_c_spread"]) == pytest.approx((0.1 + 0.2 / 1.1) / 2)
    assert float(result["lse_c_spread_max"]) == pytest.approx(0.2 / 1.1)
    # per sample over both inputs: 1.5, 1.6, 1.55 -> mean 1.55, worst 0.05 away
    assert float(result["lse_c_sample_spread"]) == pytest.approx(0.05 / 1.55)
    # pooled: the in-mouth input put all its difference in the mouth, the other none
    half = float(sample_diversity(in_mouth, mouth=mouth)["diff"][0])
    other = float(sample_diversity(outside, mouth=mouth)["diff"][0])
    assert float(result["mouth_share"]) == pytest.approx(half / (half + other))
    with pytest.raises(ValueError, match="lse_c must be B,K"):
        metric.update(outside, lse_c=torch.ones(1, 2))


def test_sample_lse_c_scores_each_sample_as_the_suite_scores_pred() -> None:
    torch.manual_seed(0)
    samples = torch.rand(2, 3, 8, 3, 64, 64)
    waveform = 0.2 * torch.randn(2, 8 * 640)
    suite = MetricSuite(Protocol(vshift=2, cpbd=False), SyncNet(image_size=64), lpips=False)
    per_sample = suite.sample_lse_c(samples, waveform)
    assert per_sample.shape == (2, 3)
    for k in range(3):
        suite.reset()
        suite.update(samples[:, k], samples[:, k], waveform)
        expected = [row["lse_c"] for row in suite.per_clip()]
        # other batching: float32 convolutions of another batch size differ in the last bits
        assert per_sample[:, k].tolist() == pytest.approx(expected, rel=1e-4, abs=1e-6)


def _landmark_model(frames: torch.Tensor) -> torch.Tensor:
    """A stand-in detector: the template moved by each frame's brightness; 'fails' on very dark
    frames (NaN), as a detector returns nothing."""
    n, _, h, w = frames.shape
    shift = frames.mean((1, 2, 3)) * 10
    lmk = (
        mouth_template().expand(n, 68, 2) * torch.tensor([w / 128, h / 128]) + shift[:, None, None]
    )
    return torch.where((frames.mean((1, 2, 3)) < 0.05)[:, None, None], float("nan"), lmk)


def test_metric_suite_end_to_end(lpips_model) -> None:
    torch.manual_seed(0)
    b, t, size = 2, 8, 96
    target = (0.5 + 0.3 * torch.rand(b, t, 3, size, size)).clamp(0, 1)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    pred[1, 3] = 0.0  # the landmark model fails on this frame
    waveform = 0.2 * torch.randn(b, t * 640)
    target_lmk = torch.stack([_landmark_model(clip) for clip in target]) * 1.02  # 96 px
    target_valid = torch.ones(b, t, dtype=torch.bool)
    target_valid[0, 0] = False

    protocol = Protocol(resolution=64, ssim_window="gaussian11", vshift=3)
    syncnet = SyncNet(image_size=64)
    suite = MetricSuite(protocol, syncnet, _landmark_model, lpips_model=lpips_model)
    suite.update(pred, target, waveform, target_lmk, target_valid, clip_ids=["a", "b"])
    result = suite.compute()

    # the same numbers from the functional forms on frames resized to the protocol resolution
    def resize(x: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.interpolate(
            x.flatten(0, 1), size=(64, 64), mode="bilinear", antialias=True
        )
        return out.clamp(0, 1).view(b, t, 3, 64, 64)

    p64, t64 = resize(pred), resize(target)
    assert result["psnr"] == pytest.approx(float(video_psnr(p64, t64).mean()))
    assert result["ssim"] == pytest.approx(float(video_ssim(p64, t64, window="gaussian11").mean()))
    scale = 64 / size
    pred_lmk = torch.stack([_landmark_model(clip) for clip in pred]) * scale
    per_clip, _, _ = landmark_distance(
        pred_lmk, target_lmk * scale, torch.isfinite(pred_lmk).all(-1).all(-1), target_valid
    )
    assert result["lmd"] == pytest.approx(float(per_clip.mean()))
    assert result["lmd_frames_failed"] == 2 and result["lmd_frames_scored"] == 2 * t - 2
    # every key the suite returns has a direction; this suite has no identity, naturalness or
    # FID scorer and no samples, and the *_norm / final_score keys belong to the leaderboard
    assert set(result) <= set(HIGHER_IS_BETTER)
    expected = {"psnr", "ssim", "lpips", "cpbd", "lmd", "lse_d", "lse_c", "clips"}
    expected |= {"lmd_frames_scored", "lmd_frames_failed", "lmd_clips_unscored"}
    expected |= {"lse_offset", "lse_abs_offset"}
    assert set(result) == expected
    assert result["clips"] == 2 and result["lse_abs_offset"] <= 3
    assert all(math.isfinite(v) for v in result.values())

    rows = suite.per_clip()
    assert [r["clip_id"] for r in rows] == ["a", "b"]
    assert rows[1]["lmd_frames_failed"] == 1 and isinstance(rows[0]["lse_offset"], int)
    assert np.mean([r["lse_d"] for r in rows]) == pytest.approx(result["lse_d"])
    assert np.mean([r["cpbd"] for r in rows]) == pytest.approx(result["cpbd"])

    suite.reset()
    assert suite.per_clip() == []
    crop = MetricSuite(Protocol(lse_mode="crop", cpbd=False, vshift=2), syncnet, lpips=False)
    crop.update(pred, target, waveform)
    cropped = crop.compute()
    assert set(cropped) == {
        "psnr",
        "ssim",
        "lse_d",
        "lse_c",
        "lse_offset",
        "lse_abs_offset",
        "clips",
    }
    assert cropped["lse_d"] != pytest.approx(result["lse_d"])


def test_protocol_validation(tmp_path: Path) -> None:
    protocol = Protocol.from_dict(
        {"name": "chen", "lmd_variant": "chen2018", "lse_crop_box": [0, 0.5, 1, 1]}
    )
    assert protocol.to_dict()["lse_crop_box"] == [0.0, 0.5, 1.0, 1.0]
    assert Protocol.from_dict(protocol.to_dict()) == protocol
    with pytest.raises(UserError, match="unknown protocol keys"):
        Protocol.from_dict({"ssim": "uniform7"})
    with pytest.raises(UserError, match="ssim_window"):
        Protocol(ssim_window="box")
    with pytest.raises(UserError, match="CPBD"):
        Protocol(resolution=32)
    with pytest.raises(UserError, match="lse_crop_box"):
        Protocol(lse_crop_box=(0.5, 0.5, 0.2, 1.0))
