"""Naturalness and silent-lip stability (talking_faces/metrics/naturalness.py): the functional
forms against straightforward numpy loops written from the definitions in docs/metrics.md, the
classes against the functional forms (and two shards against one), the ground-truth
normalisation against THEval's own test numbers, and the reference rows on the landmarks and word
alignments of conftest's tiny prepared synthetic corpus (``prepared_grid``)."""

from __future__ import annotations

import doctest
import math
import statistics
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from litdata import StreamingDataset

from talking_faces.data.dataset import PreparedDataset, word_at
from talking_faces.metrics import naturalness
from talking_faces.metrics.naturalness import (
    EyebrowDynamics,
    HeadMotionDynamics,
    LipDynamics,
    SilentLipStability,
    eyebrow_dynamics,
    final_score,
    gt_normalised,
    head_motion_dynamics,
    lip_dynamics,
    silence_mask,
    silent_lip_mad,
)
from talking_faces.names import HIGHER_IS_BETTER

# ------------------------------------------------------------------ numpy references (per clip)


def _iod(frame: np.ndarray) -> float:
    return float(np.hypot(*(frame[36] - frame[45])))


def _counted(lmk: np.ndarray, valid: np.ndarray) -> list[bool]:
    return [
        bool(v) and bool(np.isfinite(f).all()) and _iod(f) >= 1e-3
        for f, v in zip(lmk, valid, strict=True)
    ]


def _eyes(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (frame[36] + frame[39]) / 2, (frame[42] + frame[45]) / 2


def ref_lip(lmk: np.ndarray, valid: np.ndarray) -> float:
    ok = _counted(lmk, valid)
    if not any(a and b for a, b in pairwise(ok)):
        return math.nan
    rows = []
    for frame, good in zip(lmk, ok, strict=True):
        if good:
            rows.append(
                [
                    np.hypot(*(frame[i] - frame[j])) / _iod(frame)
                    for i, j in combinations(range(48, 68), 2)
                ]
            )
    return float(np.mean(np.std(np.array(rows), axis=0)))


def _brow_heights(frame: np.ndarray) -> list[float]:
    eyes = _eyes(frame)
    brows = (frame[17:22].mean(0), frame[22:27].mean(0))
    return [float(np.hypot(*(b - e))) / _iod(frame) for b, e in zip(brows, eyes, strict=True)]


def ref_brow(lmk: np.ndarray, valid: np.ndarray) -> float:
    ok = _counted(lmk, valid)
    changes = []
    for t in range(len(lmk) - 1):
        if ok[t] and ok[t + 1]:
            now, nxt = _brow_heights(lmk[t]), _brow_heights(lmk[t + 1])
            changes += [abs(b - a) for a, b in zip(now, nxt, strict=True)]
    return float(np.mean(changes)) if changes else math.nan


def _pose(frame: np.ndarray) -> tuple[float, float, float]:
    first, second = _eyes(frame)
    roll = math.atan2(second[1] - first[1], second[0] - first[0])
    rot = np.array([[math.cos(roll), math.sin(roll)], [-math.sin(roll), math.cos(roll)]])
    along, across = rot @ (frame[30] - (first + second) / 2)
    iod = _iod(frame)
    return (
        math.degrees(roll),
        math.degrees(math.atan(along / iod)),
        math.degrees(math.atan(across / iod)),
    )


def ref_head(lmk: np.ndarray, valid: np.ndarray) -> float:
    ok = _counted(lmk, valid)
    if not any(a and b for a, b in pairwise(ok)):
        return math.nan
    pose = {t: _pose(lmk[t]) for t in range(len(lmk)) if ok[t]}
    mean_iod = np.mean([_iod(lmk[t]) for t in pose])
    rigid = [*range(27, 36), 36, 39, 42, 45]
    centre = np.array([lmk[t][rigid].mean(0) / mean_iod for t in pose])
    angles = np.array(list(pose.values()))
    steps = np.array([np.subtract(pose[t + 1], pose[t]) for t in pose if t + 1 in pose])
    spread = np.mean(np.std(angles, axis=0))
    jerk = np.mean(np.var(steps, axis=0))
    drift = np.mean(np.var(centre, axis=0))
    return float(np.sqrt(spread * jerk + drift))


def ref_silent(lmk: np.ndarray, silence: np.ndarray, valid: np.ndarray) -> float:
    ok = _counted(lmk, valid)
    openings = [
        np.mean([abs(f[u, 1] - f[lo, 1]) for u, lo in ((61, 67), (62, 66), (63, 65))]) / _iod(f)
        for f, good, quiet in zip(lmk, ok, silence, strict=True)
        if good and quiet
    ]
    if len(openings) < 2:
        return math.nan
    mean = np.mean(openings)
    return float(statistics.median([abs(x - mean) for x in openings]))


def ref_silence(words: list[list[int]], num_frames: int, fps: float) -> list[bool]:
    spoken = [any(s <= f < e for s, e, *_ in words) for f in range(num_frames)]
    out = [False] * num_frames
    f = 0
    while f < num_frames:
        g = f
        while g < num_frames and not spoken[g]:
            g += 1
        if g - f >= math.ceil(0.3 * fps - 1e-9):
            out[f:g] = [True] * (g - f)
        f = g + 1
    return out


# ----------------------------------------------------------------------------- real clips


def _clips(prepared: Path) -> list[dict]:
    """Every clip of the prepared dataset: ``clip_id``, ``landmarks`` (T,68,2), ``words``."""
    ds = PreparedDataset.load(prepared)
    out = []
    for split in ("train", "val", "test"):
        shards = StreamingDataset(ds.shard_dir(split), batch_decode=0)
        for i in range(len(shards)):
            raw = shards[i]
            out.append(
                {
                    "clip_id": raw["clip_id"],
                    "landmarks": np.asarray(raw["landmarks"], np.float64),
                    "words": np.asarray(raw["words"]).reshape(-1, 3),
                }
            )
    return out


@pytest.fixture(scope="module")
def real(prepared_grid: Path) -> dict[str, Any]:
    clips = _clips(prepared_grid)
    t = clips[0]["landmarks"].shape[0]
    assert all(c["landmarks"].shape == (t, 68, 2) for c in clips)  # GRID layout: 3 s each
    lmk = torch.from_numpy(np.stack([c["landmarks"] for c in clips]))
    silence = torch.from_numpy(np.stack([silence_mask(c["words"], t) for c in clips]))
    return {"landmarks": lmk, "silence": silence, "words": [c["words"] for c in clips]}


def _noisy(real: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Real landmarks with jitter, two missed frames and a NaN point (frames that do not count)."""
    gen = torch.Generator().manual_seed(0)
    lmk = real["landmarks"] + 0.3 * torch.randn(
        real["landmarks"].shape, generator=gen, dtype=torch.float64
    )
    valid = torch.ones(lmk.shape[:2], dtype=torch.bool)
    valid[0, 10] = valid[1, 0] = False
    lmk[2, 30, 50] = float("nan")
    return lmk, valid


# ------------------------------------------------------------------------------------ tests


def test_functional_forms_match_numpy_references(real: dict[str, Any]) -> None:
    lmk, valid = _noisy(real)
    silence = real["silence"]
    cases = [
        (lip_dynamics(lmk, valid), ref_lip),
        (eyebrow_dynamics(lmk, valid), ref_brow),
        (head_motion_dynamics(lmk, valid), ref_head),
    ]
    for got, ref in cases:
        want = [ref(lmk[b].numpy(), valid[b].numpy()) for b in range(len(lmk))]
        assert got.dtype == torch.float64 and got.shape == (len(lmk),)
        assert got.tolist() == pytest.approx(want, rel=1e-9, abs=1e-12), ref.__name__
    got = silent_lip_mad(lmk, silence, valid)
    want = [
        ref_silent(lmk[b].numpy(), silence[b].numpy(), valid[b].numpy()) for b in range(len(lmk))
    ]
    assert got.tolist() == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert all(v > 0 for v in got.tolist())


def test_unscored_clips_and_bad_shapes() -> None:
    face = torch.zeros(3, 5, 68, 2)
    face[..., 45, 0] = 10.0
    face[..., 48:68, 0] = torch.arange(20.0)
    valid = torch.ones(3, 5, dtype=torch.bool)
    valid[1, 1::2] = False  # clip 1: no two consecutive frames count
    valid[2] = False  # clip 2: none does
    for fn in (lip_dynamics, eyebrow_dynamics, head_motion_dynamics):
        values = fn(face, valid)
        assert values[0].item() == 0.0 and values[1:].isnan().all(), fn.__name__
    silent = torch.zeros(3, 5, dtype=torch.bool)
    silent[0, 2] = True  # one silent frame: no spread to measure
    silent[1] = True  # three counted silent frames (0, 2, 4): scored
    assert silent_lip_mad(face, silent, valid).isnan().tolist() == [True, False, True]
    with pytest.raises(ValueError, match="B,T,68,2"):
        lip_dynamics(face[0])
    with pytest.raises(ValueError, match="valid must be"):
        lip_dynamics(face, valid[:, :2])
    with pytest.raises(ValueError, match="silence must be"):
        silent_lip_mad(face, silent[:2])


def test_scale_free_and_invariant_to_placement(real: dict[str, Any]) -> None:
    lmk, silence = real["landmarks"], real["silence"]
    shift = torch.tensor([40.0, -7.0], dtype=torch.float64)
    moved = lmk * 3.5 + shift  # every value is in IOD units
    turn = math.radians(20.0)
    rot = torch.tensor(
        [[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]], dtype=torch.float64
    )
    turned = moved @ rot.T  # the dynamics are also blind to a fixed in-plane rotation
    for fn in (lip_dynamics, eyebrow_dynamics, head_motion_dynamics):
        for other in (moved, turned):
            assert fn(other).tolist() == pytest.approx(fn(lmk).tolist(), rel=1e-9), fn.__name__
    # the mouth opening is a vertical gap (THEval's): scale and shift only
    assert silent_lip_mad(moved, silence).tolist() == pytest.approx(
        silent_lip_mad(lmk, silence).tolist(), rel=1e-9
    )


def test_silence_mask_against_reference(real: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    for fps in (25, 30):
        for _ in range(50):
            edges = np.sort(rng.choice(np.arange(0, 60), size=8, replace=False))
            words = [[int(s), int(e), 0] for s, e in zip(edges[::2], edges[1::2], strict=True)]
            want = ref_silence(words, 50, fps)  # words may run past the clip's end
            assert silence_mask(words, 50, fps).tolist() == want
    # the 300 ms boundary at 25 fps: a 7-frame gap is dropped, an 8-frame gap is kept
    mask = silence_mask([[0, 5], [12, 20], [28, 40]], 40)
    assert not mask[5:12].any() and mask[20:28].all() and mask.sum() == 8
    assert silence_mask(np.zeros((0, 3), np.int32), 9).all()  # no word: all silent
    # on the real alignments: silent frames are the frames no word covers, in long stretches
    for words, silent in zip(real["words"], real["silence"].numpy(), strict=True):
        assert silent.sum() >= 8
        assert all(word_at(words, int(f), -1) == -1 for f in np.flatnonzero(silent))
        runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], silent, [0]]))))[::2]
        assert runs.min() >= 8


def test_reference_rows_on_the_synthetic_corpus(real: dict[str, Any]) -> None:
    gt, silence = real["landmarks"], real["silence"]
    static = gt[:, :1].expand_as(gt).clone()  # the first frame repeated
    shuffled = gt.roll(1, 0)  # another clip's real motion under this clip's silences
    names = ("lip_dynamics", "head_motion_dynamics", "eyebrow_dynamics", "silent_lip_mad")

    def means(lmk: torch.Tensor) -> dict[str, float]:
        fns = (lip_dynamics, head_motion_dynamics, eyebrow_dynamics)
        values = [fn(lmk) for fn in fns] + [silent_lip_mad(lmk, silence)]
        return {n: float(v.mean()) for n, v in zip(names, values, strict=True)}

    truth, still, other = means(gt), means(static), means(shuffled)
    assert all(v > 0 for v in truth.values())
    assert all(v == 0.0 for v in still.values())  # still face: no dynamics, perfectly still
    normalised = {n: gt_normalised(truth[n], truth[n]) for n in names}
    assert normalised == dict.fromkeys(names, 1.0)
    assert final_score(normalised, list(names)) == 1.0
    assert gt_normalised(still["lip_dynamics"], truth["lip_dynamics"]) == 0.0
    # the mouth of other speech moves in this clip's silences
    assert other["silent_lip_mad"] > 3 * truth["silent_lip_mad"]


def test_classes_equal_functional_and_two_shards_equal_one(real: dict[str, Any]) -> None:
    lmk, valid = _noisy(real)
    valid[3] = False  # one clip unscored
    silence = real["silence"]
    cases: list[tuple[Any, Any, tuple[torch.Tensor, ...]]] = [
        (LipDynamics, lip_dynamics, ()),
        (HeadMotionDynamics, head_motion_dynamics, ()),
        (EyebrowDynamics, eyebrow_dynamics, ()),
        (SilentLipStability, silent_lip_mad, (silence,)),
    ]
    for cls, fn, extra in cases:
        per_clip = fn(lmk, *extra, valid)
        whole = cls()
        whole.update(lmk[:2], *(e[:2] for e in extra), valid[:2])
        whole.update(lmk[2:], *(e[2:] for e in extra), valid[2:])
        torch.testing.assert_close(whole.batch_values, per_clip[2:], rtol=0, atol=0, equal_nan=True)
        scored = per_clip[~per_clip.isnan()]
        assert whole.compute().item() == pytest.approx(math.fsum(scored.tolist()) / 5, rel=1e-15)
        assert whole.counts() == {"clips_scored": 5, "clips_unscored": 1}
        # shard b's terms come first after the merge: exact sums do not depend on the order
        a, b = cls(), cls()
        for shard, part in ((a, slice(0, 4)), (b, slice(4, 6))):
            shard.update(lmk[part], *(e[part] for e in extra), valid[part])
        a.merge_state(b)
        assert torch.equal(a.compute(), whole.compute()), cls.__name__
        assert a.counts() == whole.counts()


def test_directions_are_registered() -> None:
    assert LipDynamics.higher_is_better is None and HeadMotionDynamics.higher_is_better is None
    assert EyebrowDynamics.higher_is_better is None and SilentLipStability.higher_is_better is False
    for key in ("lip_dynamics", "head_motion_dynamics", "eyebrow_dynamics"):
        assert HIGHER_IS_BETTER[key] is None and HIGHER_IS_BETTER[f"{key}_norm"] is True
    assert HIGHER_IS_BETTER["silent_lip_mad"] is False
    assert HIGHER_IS_BETTER["silent_lip_mad_norm"] is True and HIGHER_IS_BETTER["final_score"]


def test_gt_normalisation_and_final_score_follow_theval() -> None:
    # THEval's tests/test_scoring.py: ground truth 10 everywhere, one method -> final score 0.6625
    method = [12.0, 5.0, 10.0, 15.0, 10.0, 5.0, 10.0, 0.0]
    normalised = {f"m{i}": gt_normalised(v, 10.0) for i, v in enumerate(method)}
    assert final_score(normalised, list(normalised)) == pytest.approx(0.6625)
    assert gt_normalised(25.0, 10.0) == pytest.approx(-0.5)  # not clipped at 0
    assert gt_normalised(-3.0, -2.0) == pytest.approx(0.5)  # |gt| in the denominator
    assert math.isnan(gt_normalised(math.nan, 1.0))
    assert math.isnan(final_score({"a": 1.0, "b": math.nan}, ["a", "b"]))
    for bad in (0.0, 1e-10, math.nan):
        with pytest.raises(ValueError, match="ground truth"):
            gt_normalised(1.0, bad)
    with pytest.raises(ValueError, match="missing \\['b'\\]"):
        final_score({"a": 1.0}, ["a", "b"])
    with pytest.raises(ValueError, match="final score"):
        final_score({"a": 1.0}, [])


def test_docstring_examples() -> None:
    result = doctest.testmod(naturalness, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0
