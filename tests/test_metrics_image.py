"""PSNR, SSIM and LPIPS on video against independent references (scikit-image, lpips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from talking_faces.errors import MissingWeightsError
from talking_faces.metrics.image import (
    ALEXNET_FILENAME,
    PSNR_CEILING_DB,
    VideoLPIPS,
    VideoPSNR,
    VideoSSIM,
    load_lpips,
    to_colour_space,
    video_lpips,
    video_psnr,
    video_ssim,
)

SKIMAGE_SSIM_ARGS = {
    "uniform7": {},
    "gaussian11": {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False},
}


def random_pair(seed: int, shape=(2, 3, 3, 40, 52)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.random(shape).astype(np.float32)
    pred = np.clip(target + 0.15 * rng.standard_normal(shape), 0, 1).astype(np.float32)
    return pred, target


def synthetic_pair(seed: int, b: int = 2, t: int = 3, h: int = 48, w: int = 56):
    """Smooth frames: colour gradients, a moving disc and a soft square; pred is shifted and
    slightly dimmed, so SSIM lands well inside (0, 1) where its variance terms are small."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    clips = np.zeros((b, t, 3, h, w))
    for i in range(b):
        base = rng.random(3)
        slope = rng.uniform(-0.5, 0.5, (3, 2))
        for j in range(t):
            cx, cy = w * (0.3 + 0.1 * j + 0.1 * i), h * 0.5
            disc = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 6.0**2)))
            square = ((abs(xx - w * 0.7) < 8) & (abs(yy - h * 0.3) < 6)).astype(float)
            for c in range(3):
                plane = base[c] + slope[c, 0] * xx / w + slope[c, 1] * yy / h
                clips[i, j, c] = plane + 0.4 * disc * (c + 1) / 3 - 0.3 * square
    target = np.clip(clips, 0, 1)
    pred = np.clip(np.roll(target, 1, axis=-1) * 0.95 + 0.01, 0, 1)
    return pred.astype(np.float32), target.astype(np.float32)


PAIRS = {"random": random_pair, "synthetic": synthetic_pair}


def per_clip_reference(fn, pred: np.ndarray, target: np.ndarray, **kwargs) -> np.ndarray:
    """Per-clip mean of a scikit-image per-frame score (float64 HWC frames)."""
    b, t = pred.shape[:2]
    scores = np.zeros((b, t))
    for i in range(b):
        for j in range(t):
            p = pred[i, j].transpose(1, 2, 0).astype(np.float64)
            q = target[i, j].transpose(1, 2, 0).astype(np.float64)
            scores[i, j] = fn(q, p, data_range=1.0, **kwargs)
    return scores.mean(1)


@pytest.mark.parametrize("kind", PAIRS)
def test_psnr_matches_skimage(kind: str) -> None:
    pred, target = PAIRS[kind](0)
    ours = video_psnr(torch.from_numpy(pred), torch.from_numpy(target)).numpy()
    ref = per_clip_reference(peak_signal_noise_ratio, pred, target)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("window", SKIMAGE_SSIM_ARGS)
@pytest.mark.parametrize("kind", PAIRS)
def test_ssim_matches_skimage(kind: str, window: str) -> None:
    pred, target = PAIRS[kind](1)
    ours = video_ssim(torch.from_numpy(pred), torch.from_numpy(target), window=window).numpy()
    ref = per_clip_reference(
        structural_similarity, pred, target, channel_axis=-1, **SKIMAGE_SSIM_ARGS[window]
    )
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
    assert 0.05 < ref.min() < 0.999  # a case where the score is informative


def test_ssim_windows_differ_and_identical_frames_score_one() -> None:
    pred, target = synthetic_pair(2)
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    assert not torch.allclose(
        video_ssim(p, t, window="uniform7"), video_ssim(p, t, window="gaussian11")
    )
    torch.testing.assert_close(video_ssim(t, t), torch.ones(2, dtype=torch.float64))
    assert (video_psnr(t, t) == PSNR_CEILING_DB).all()  # capped, not inf (see frame_psnr)
    with pytest.raises(ValueError, match="window"):
        video_ssim(p, t, window="box5")


def test_metric_classes_average_frames_then_clips() -> None:
    """Two updates of clips with different lengths: the result is the mean of per-clip means."""
    pred_a, target_a = random_pair(3, (2, 4, 3, 24, 24))
    pred_b, target_b = random_pair(4, (1, 2, 3, 24, 24))
    psnr, ssim = VideoPSNR(), VideoSSIM(window="gaussian11")
    for pred, target in ((pred_a, target_a), (pred_b, target_b)):
        psnr.update(torch.from_numpy(pred), torch.from_numpy(target))
        ssim.update(torch.from_numpy(pred), torch.from_numpy(target))
    ref_psnr = np.concatenate(
        [
            per_clip_reference(peak_signal_noise_ratio, p, t)
            for p, t in ((pred_a, target_a), (pred_b, target_b))
        ]
    ).mean()
    ref_ssim = np.concatenate(
        [
            per_clip_reference(
                structural_similarity, p, t, channel_axis=-1, **SKIMAGE_SSIM_ARGS["gaussian11"]
            )
            for p, t in ((pred_a, target_a), (pred_b, target_b))
        ]
    ).mean()
    assert float(psnr.compute()) == pytest.approx(ref_psnr, abs=1e-4)
    assert float(ssim.compute()) == pytest.approx(ref_ssim, abs=1e-4)
    assert VideoPSNR.higher_is_better and VideoSSIM.higher_is_better
    assert VideoLPIPS.higher_is_better is False


def test_y_colour_space_matches_skimage_on_luma() -> None:
    pred, target = synthetic_pair(5)
    p_y = to_colour_space(torch.from_numpy(pred), "y")
    t_y = to_colour_space(torch.from_numpy(target), "y")
    assert p_y.shape == (2, 3, 1, 48, 56)
    weights = np.array([0.299, 0.587, 0.114])[:, None, None]
    luma = lambda x: (x.astype(np.float64) * weights).sum(-3)  # noqa: E731
    ref = np.array(
        [
            np.mean(
                [
                    structural_similarity(luma(target[i, j]), luma(pred[i, j]), data_range=1.0)
                    for j in range(3)
                ]
            )
            for i in range(2)
        ]
    )
    np.testing.assert_allclose(video_ssim(p_y, t_y).numpy(), ref, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# LPIPS


@pytest.fixture(scope="module")
def alexnet_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torch home whose hub cache holds a (randomly initialised) torchvision AlexNet file."""
    import torchvision

    home = tmp_path_factory.mktemp("torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), folder / ALEXNET_FILENAME)
    return home


def test_lpips_missing_weights_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("TALKING_FACES_ASSETS", str(tmp_path / "no-assets"))
    with pytest.raises(MissingWeightsError) as err:
        load_lpips()
    message = str(err.value)
    assert "\n" not in message
    assert ALEXNET_FILENAME in message
    assert str(tmp_path / "hub" / "checkpoints") in message


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchvision on lpips' `pretrained=`
def test_lpips_matches_the_lpips_package(
    alexnet_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our weight loading gives the same network as lpips.LPIPS(pretrained=True) from the cache."""
    import lpips

    monkeypatch.setenv("TORCH_HOME", str(alexnet_home))
    ours = load_lpips()
    reference = lpips.LPIPS(net="alex", verbose=False)  # reads the same cache file itself
    pred, target = synthetic_pair(6, b=2, t=2, h=64, w=64)
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    per_clip = video_lpips(p, t, ours)
    with torch.no_grad():
        ref = reference(p.flatten(0, 1) * 2 - 1, t.flatten(0, 1) * 2 - 1).view(2, 2).mean(1)
    torch.testing.assert_close(per_clip.float(), ref, rtol=1e-5, atol=1e-6)
    assert (per_clip > 0).all()
    torch.testing.assert_close(video_lpips(t, t, ours), torch.zeros(2, dtype=torch.float64))

    metric = VideoLPIPS(model=ours)
    metric.update(p, t)
    assert float(metric.compute()) == pytest.approx(float(per_clip.mean()), rel=1e-6)


def test_identical_frames_give_the_psnr_ceiling_not_infinity() -> None:
    from talking_faces.metrics.image import PSNR_CEILING_DB, video_psnr

    clip = torch.rand(1, 3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    noisy = clip.clone()
    noisy[:, 1:] = (noisy[:, 1:] + 0.05).clamp(0, 1)  # frame 0 identical, the rest not
    value = float(video_psnr(noisy, clip)[0])
    assert value < PSNR_CEILING_DB and value == value and value != float("inf")
    assert float(video_psnr(clip, clip)[0]) == PSNR_CEILING_DB
