"""Region metrics (talking_faces/metrics/regions.py) on the real frames and landmarks of conftest's
tiny prepared synthetic corpus (``prepared_grid``, 64 px): the reference rows (ground truth 0, 0,
1; the static frame worse), a blur of the eyes only and a darkened mouth, the teeth rule against
the synthetic renderer (which knows where it drew teeth), the classes against the functional
forms, and the suite and protocol wiring."""

from __future__ import annotations

import doctest
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from litdata import StreamingDataset

from talking_faces.data.dataset import PreparedDataset, decode_frames
from talking_faces.data.synthetic import corpus, face
from talking_faces.evaluation.protocols import load_protocol_file, scored_metrics, split_protocol
from talking_faces.metrics import regions
from talking_faces.metrics.regions import (
    EyesL1,
    FaceL1OutsideMouth,
    Regions,
    TeethVisible,
    eyes_l1,
    face_l1_outside_mouth,
    inner_mouth_mask,
    region_masks,
    shows_teeth,
    teeth_visible,
)
from talking_faces.metrics.suite import MetricSuite, Protocol
from talking_faces.names import HIGHER_IS_BETTER
from talking_faces.reporting.leaderboard import DIMENSIONS

KEYS = ("face_l1_outside_mouth", "eyes_l1", "teeth_visible")


@pytest.fixture(scope="module")
def real(prepared_grid: Path) -> dict[str, Any]:
    """Every clip of the prepared dataset: ``frames`` B,T,3,64,64 in [0,1], ``landmarks``
    B,T,68,2, ``valid`` B,T, ``clip_ids``."""
    ds = PreparedDataset.load(prepared_grid)
    frames, lmk, valid, ids = [], [], [], []
    for split in ("train", "val", "test"):
        shards = StreamingDataset(ds.shard_dir(split), batch_decode=0)
        for i in range(len(shards)):
            raw = shards[i]
            t = int(raw["num_frames"])
            frames.append(decode_frames(raw["frames"], list(range(t))).float() / 255)
            lmk.append(torch.from_numpy(np.asarray(raw["landmarks"], np.float32)))
            valid.append(torch.from_numpy(np.asarray(raw["landmarks_valid"], bool)))
            ids.append(raw["clip_id"])
    return {
        "frames": torch.stack(frames),
        "landmarks": torch.stack(lmk),
        "valid": torch.stack(valid),
        "clip_ids": ids,
    }


def _all(pred: torch.Tensor, real: dict[str, Any]) -> dict[str, torch.Tensor]:
    args = (pred, real["frames"], real["landmarks"], real["valid"])
    return {
        "face_l1_outside_mouth": face_l1_outside_mouth(*args),
        "eyes_l1": eyes_l1(*args),
        "teeth_visible": teeth_visible(*args),
    }


def _static(real: dict[str, Any]) -> torch.Tensor:
    frames = real["frames"]
    return frames[:, :1].expand_as(frames).clone()


def _gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """``N,3,H,W`` -> the same blurred by a separable Gaussian (reflect padding)."""
    radius = math.ceil(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=frames.dtype)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    out = F.pad(frames, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)


def _opens(real: dict[str, Any]) -> torch.Tensor:
    """``B,`` bool: the clips whose real frames show teeth somewhere."""
    return shows_teeth(real["frames"], real["landmarks"]).any(1)


# ------------------------------------------------------------------------------------ tests


def test_ground_truth_scores_zero_zero_one(real: dict[str, Any]) -> None:
    got = _all(real["frames"].clone(), real)
    assert bool(_opens(real).all())  # every GRID sentence opens the mouth and shows teeth
    assert got["face_l1_outside_mouth"].tolist() == [0.0] * len(real["clip_ids"])
    assert got["eyes_l1"].tolist() == [0.0] * len(real["clip_ids"])
    assert got["teeth_visible"].tolist() == [1.0] * len(real["clip_ids"])


def test_static_frame_loses_the_face_and_the_teeth(real: dict[str, Any]) -> None:
    got = _all(_static(real), real)
    assert bool((got["face_l1_outside_mouth"] > 0.005).all()), got
    assert bool((got["eyes_l1"] > 0).all())
    # the first frame's mouth is closed: no teeth where the clip opens its mouth
    assert bool((got["teeth_visible"] < 1).all()), got["teeth_visible"]
    assert float(got["teeth_visible"].mean()) < 0.5


def test_blurred_eyes_raise_eyes_l1_more_than_the_face(real: dict[str, Any]) -> None:
    frames, lmk = real["frames"], real["landmarks"]
    b, t = frames.shape[:2]
    eyes = region_masks(lmk, *frames.shape[-2:])["eyes"]  # B,T,H,W
    # sigma 8 px of a 64 px frame: the eyes and brows blurred away (a mild blur, sigma 2, scores
    # about as the static frame, whose eyes are off by the head motion it does not follow)
    blurred = _gaussian_blur(frames.flatten(0, 1), sigma=8.0).view_as(frames)
    pred = torch.where(eyes[:, :, None], blurred, frames)
    got, static = _all(pred, real), _all(_static(real), real)
    # the blur alone is worse in the eyes than a face that does not blink or move its brows
    assert bool((got["eyes_l1"] > 1.5 * static["eyes_l1"]).all()), (got, static)
    # the eyes are a part of the face outside the mouth: its error rises less
    assert bool((got["face_l1_outside_mouth"] < 0.6 * got["eyes_l1"]).all())
    assert bool((got["face_l1_outside_mouth"] > 0).all())
    assert got["teeth_visible"].tolist() == [1.0] * b  # the mouth is untouched
    assert eyes.flatten(2).any(-1).all() and t > 1


def test_darkened_inner_mouth_shows_no_teeth(real: dict[str, Any]) -> None:
    frames, lmk = real["frames"], real["landmarks"]
    inner = inner_mouth_mask(lmk, *frames.shape[-2:])[:, :, None]  # B,T,1,H,W
    dark = torch.tensor(face.MOUTH_INTERIOR, dtype=frames.dtype).view(3, 1, 1) / 255
    pred = torch.where(inner, dark, frames)
    got = _all(pred, real)
    assert got["teeth_visible"].tolist() == [0.0] * len(real["clip_ids"])
    # outside the mouth box nothing changed
    assert got["face_l1_outside_mouth"].tolist() == [0.0] * len(real["clip_ids"])


def _renderer_teeth_pixels(stem: str, speakers: int, clips: int) -> np.ndarray:
    """``T,`` how many pixels of the 128 px render of clip ``stem`` are teeth: the render less
    one with the teeth drawn in the mouth's inside colour."""
    specs = {s.stem: s for s in corpus.plan_corpus("grid", speakers, clips, 0)}
    with_teeth = corpus.render_clip(specs[stem], 128).frames.astype(np.int64)
    saved = face._TEETH
    face._TEETH = face.MOUTH_INTERIOR
    try:
        without = corpus.render_clip(specs[stem], 128).frames.astype(np.int64)
    finally:
        face._TEETH = saved
    return (np.abs(with_teeth - without).sum(-1) > 30).sum((1, 2))


def test_teeth_rule_agrees_with_the_renderer(real: dict[str, Any]) -> None:
    # conftest's corpus: `synth --layout grid --speakers 2 --clips 3 --size 128` (seed 0)
    teeth_px = np.stack([_renderer_teeth_pixels(c, 2, 3) for c in real["clip_ids"]])
    fired = shows_teeth(real["frames"], real["landmarks"]).numpy()
    drawn = teeth_px >= 8  # >= 8 px at 128 px: about 2 px of the 64 px frames
    closed = teeth_px == 0  # the renderer drew no teeth (the mouth is shut)
    assert drawn.sum() > 100 and closed.sum() > 50
    assert fired[drawn].mean() >= 0.85, fired[drawn].mean()
    assert not fired[closed].any()


def test_classes_equal_functional_over_batches(real: dict[str, Any]) -> None:
    pred = _static(real)
    pred[:, ::3] = real["frames"][:, ::3]  # some frames right, so the teeth share is not 0
    valid = real["valid"].clone()
    valid[0, :5] = False
    args = (pred, real["frames"], real["landmarks"], valid)
    classes = {
        "face_l1_outside_mouth": (FaceL1OutsideMouth(), face_l1_outside_mouth),
        "eyes_l1": (EyesL1(), eyes_l1),
        "teeth_visible": (TeethVisible(), teeth_visible),
    }
    suite = Regions()
    for key, (metric, fn) in classes.items():
        whole = fn(*args)
        for part in (slice(0, 2), slice(2, None)):
            metric.update(*(a[part] for a in args))
        want = whole[~whole.isnan()].mean()
        assert math.isclose(float(metric.compute()), float(want), rel_tol=1e-12), key
        assert metric.higher_is_better is HIGHER_IS_BETTER[key]
    columns = suite.update(*args)
    assert set(columns) == set(KEYS)
    out = suite.compute()
    for key, (metric, _) in classes.items():
        assert math.isclose(out[key], float(metric.compute()), rel_tol=1e-12)
    assert out["teeth_clips_scored"] == len(real["clip_ids"])


def test_unscored_clips_and_bad_shapes() -> None:
    frames = torch.zeros(2, 3, 3, 16, 16)
    lmk = torch.full((2, 3, 68, 2), float("nan"))
    assert face_l1_outside_mouth(frames, frames, lmk).isnan().all()
    assert teeth_visible(frames, frames, lmk).isnan().all()  # no teeth in the real frames
    m = EyesL1()
    m.update(frames, frames, lmk)
    assert m.counts() == {"clips_scored": 0, "clips_unscored": 2}
    with pytest.raises(ValueError, match="B,T,3,H,W"):
        eyes_l1(frames, frames[:, :2], lmk)
    with pytest.raises(ValueError, match="68,2"):
        eyes_l1(frames, frames, lmk[:, :, :60])


def test_suite_scores_regions_at_protocol_resolution(real: dict[str, Any]) -> None:
    frames, lmk, valid = real["frames"][:2], real["landmarks"][:2], real["valid"][:2]
    protocol = Protocol(resolution=128, cpbd=False)
    suite = MetricSuite(protocol, lpips=False, regions=True)
    suite.update(frames, frames, target_landmarks=lmk, target_landmarks_valid=valid)
    out = suite.compute()
    assert (out["face_l1_outside_mouth"], out["eyes_l1"], out["teeth_visible"]) == (0, 0, 1)
    suite.reset()
    static = frames[:, :1].expand_as(frames).contiguous()
    suite.update(static, frames, target_landmarks=lmk, target_landmarks_valid=valid)
    out, rows = suite.compute(), suite.per_clip()
    want = _all(static, {"frames": frames, "landmarks": lmk, "valid": valid})
    for key in KEYS:  # 128 px of 64 px frames: close to the 64 px values
        assert all(key in row for row in rows)
        assert abs(out[key] - float(want[key].mean())) < 0.1 * max(float(want[key].mean()), 0.1)
    assert out["teeth_clips_scored"] == 2
    # off by default: older protocols score nothing new
    plain = MetricSuite(protocol, lpips=False)
    plain.update(frames, frames, target_landmarks=lmk, target_landmarks_valid=valid)
    assert not set(KEYS) & set(plain.compute())


def test_protocol_key_names_and_directions() -> None:
    synthetic = split_protocol(load_protocol_file("synthetic"))
    assert synthetic.regions is True
    assert split_protocol(load_protocol_file("default")).regions is False
    resolved: dict[str, Any] = {"landmarks": {"kind": "expert"}, "syncnet": {"kind": "none"}}
    assert not set(KEYS) & set(scored_metrics(resolved))
    assert set(KEYS) <= set(scored_metrics({**resolved, "regions": regions.describe()}))
    assert HIGHER_IS_BETTER["face_l1_outside_mouth"] is False
    assert HIGHER_IS_BETTER["eyes_l1"] is False
    assert HIGHER_IS_BETTER["teeth_visible"] is True
    assert HIGHER_IS_BETTER["teeth_clips_scored"] is None
    quality = dict(DIMENSIONS)["quality"]
    assert set(KEYS) <= set(quality)


def test_docstring_examples() -> None:
    result = doctest.testmod(regions)
    assert result.attempted > 0 and result.failed == 0
