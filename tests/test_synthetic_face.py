"""The synthetic face: landmarks in iBUG order on the drawn features, mouth driven by the speech,
blinks and head motion independent of it, speakers that look and sound different."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from talking_faces.data.synthetic import corpus, lexicon, speech
from talking_faces.data.synthetic.face import (
    FaceRenderer,
    FaceState,
    eye_opening,
    face_landmarks,
    inner_lip_opening,
    speaker_style,
)
from talking_faces.data.synthetic.motion import (
    MAX_ROTATION,
    MAX_SCALE,
    MAX_TRANSLATION,
    random_motion,
)

SIZE = 256
STATES = {
    "rest": FaceState(),
    "open": FaceState(jaw_open=1.0, lip_width=0.4),
    "round": FaceState(jaw_open=0.5, lip_round=1.0, lip_width=-0.8),
    "posed": FaceState(jaw_open=0.7, smile=0.8, rotation=4.0, tx=0.03, ty=-0.03, scale=1.03),
}


def _dist(pixel: np.ndarray, colour: tuple[int, int, int]) -> float:
    return float(np.linalg.norm(pixel.astype(np.float64) - np.asarray(colour, np.float64)))


def _pixel(frame: np.ndarray, xy: np.ndarray) -> np.ndarray:
    x, y = np.round(xy).astype(int)
    return frame[y, x]


def test_landmarks_are_68_points_in_ibug_order() -> None:
    style = speaker_style(1)
    lm = face_landmarks(style, FaceState(jaw_open=0.6), SIZE)
    assert lm.shape == (68, 2)
    x, y = lm[:, 0], lm[:, 1]
    # jaw 0-16 runs image left -> chin -> image right; the chin (8) is the lowest point
    assert np.all(np.diff(x[0:17]) > 0)
    assert np.argmax(y[0:17]) == 8 and y[8] == y.max()
    # brows 17-21 on the image left, 22-26 on the right, above the eyes
    assert x[17:22].max() < x[27] < x[22:27].min()
    assert y[17:27].max() < y[36:48].min()
    # nose bridge 27-30 goes down to the tip; base 31-35 left to right below it
    assert np.all(np.diff(y[27:31]) > 0) and np.all(np.diff(x[31:36]) > 0)
    assert y[31:36].min() > y[30] - 0.02 * SIZE
    # eyes: 36 outer/39 inner corner of the image-left eye, 42 inner/45 outer of the right one
    assert x[36] < x[39] < x[42] < x[45]
    assert y[[37, 38]].max() < y[[41, 40]].min() and y[[43, 44]].max() < y[[47, 46]].min()
    # mouth below the nose; outer corners 48/54 outside the inner corners 60/64
    assert y[48:68].min() > y[33]
    assert x[48] < x[60] < x[64] < x[54]
    # upper outer lip above the upper inner lip, lower inner above lower outer
    assert np.all(y[[50, 51, 52]] < y[[61, 62, 63]])
    assert np.all(y[[67, 66, 65]] < y[[58, 57, 56]])
    # inner lips open with the jaw
    assert inner_lip_opening(lm) > 0.03 * SIZE
    # the face fills roughly the central half of the frame
    width = x[16] - x[0]
    assert 0.35 * SIZE < width < 0.6 * SIZE
    assert 0.3 * SIZE < lm.mean(axis=0)[0] < 0.7 * SIZE


def test_pose_moves_landmarks_as_a_similarity() -> None:
    style = speaker_style(2)
    base = face_landmarks(style, FaceState(), SIZE)
    moved = face_landmarks(style, FaceState(rotation=4.0, tx=0.03, scale=1.03), SIZE)
    # distances between landmarks scale by exactly the scale factor
    d0 = np.linalg.norm(base[36] - base[45])
    d1 = np.linalg.norm(moved[36] - moved[45])
    assert d1 / d0 == pytest.approx(1.03, rel=1e-6)
    # the eye line turns by the rotation
    angle = np.degrees(np.arctan2(*(moved[45] - moved[36])[::-1]))
    angle0 = np.degrees(np.arctan2(*(base[45] - base[36])[::-1]))
    assert angle - angle0 == pytest.approx(4.0, abs=1e-6)


@pytest.mark.parametrize("speaker", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("state", list(STATES), ids=list(STATES))
def test_lip_colour_under_lip_landmarks(speaker: int, state: str) -> None:
    style = speaker_style(speaker)
    frame, lm = FaceRenderer(style, SIZE).render(STATES[state])
    assert frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8
    # midway between an outer-lip point and the inner-lip point facing it: inside the lip
    for outer, inner in ((50, 61), (51, 62), (52, 63), (56, 65), (57, 66), (58, 67)):
        pixel = _pixel(frame, 0.5 * (lm[outer] + lm[inner]))
        assert _dist(pixel, style.lip) < 25, (outer, inner, pixel, style.lip)
        assert _dist(pixel, style.lip) < _dist(pixel, style.skin)
    # brows under the brow landmarks (middle and inner points, where the brow is thick)
    for k in (19, 20, 21, 22, 23, 24):
        pixel = _pixel(frame, lm[k])
        assert _dist(pixel, style.brow) < _dist(pixel, style.skin), (k, pixel)
    # just inside the jaw line is skin
    centre = lm[30]
    for k in range(3, 14):
        inside = lm[k] + 3.0 * (centre - lm[k]) / np.linalg.norm(centre - lm[k])
        assert _dist(_pixel(frame, inside), style.skin) < 20, k


def test_mouth_interior_is_dark_when_open_and_absent_when_closed() -> None:
    style = speaker_style(3)
    renderer = FaceRenderer(style, SIZE)
    frame, lm = renderer.render(FaceState(jaw_open=1.0))
    centre = 0.5 * (lm[62] + lm[66]) + [0.0, 0.3 * (lm[66, 1] - lm[62, 1])]
    assert _pixel(frame, centre).astype(int).sum() < 200  # dark mouth interior
    frame, lm = renderer.render(FaceState(jaw_open=0.0, closure=1.0))
    assert inner_lip_opening(lm) == pytest.approx(0.0, abs=1e-9)


def test_eyes_close_when_blink_is_one() -> None:
    style = speaker_style(1)
    renderer = FaceRenderer(style, SIZE)
    white = []
    for blink in (0.0, 1.0):
        frame, lm = renderer.render(FaceState(blink=blink))
        lo = np.floor(lm[36:48].min(axis=0)).astype(int) - 2
        hi = np.ceil(lm[36:48].max(axis=0)).astype(int) + 3
        region = frame[lo[1] : hi[1], lo[0] : hi[0]].astype(np.float64)
        white.append(int((np.linalg.norm(region - 245.0, axis=-1) < 40).sum()))
        if blink == 1.0:
            assert eye_opening(lm) < 0.02
        else:
            assert eye_opening(lm) > 0.015 * SIZE
    assert white[0] > 20 and white[1] == 0


def test_two_speakers_differ_in_face_and_voice() -> None:
    a, b = speaker_style(1), speaker_style(2)
    assert a != b
    fa, la = FaceRenderer(a, SIZE).render(FaceState())
    fb, lb = FaceRenderer(b, SIZE).render(FaceState())
    assert np.abs(fa.astype(int) - fb.astype(int)).mean() > 10
    # face geometry differs, not only the colours: compare shapes after removing position/scale
    na = (la - la.mean(0)) / np.linalg.norm(la - la.mean(0))
    nb = (lb - lb.mean(0)) / np.linalg.norm(lb - lb.mean(0))
    assert np.abs(na - nb).max() > 0.01
    # voices: the same sentence has clearly different pitch
    words = ["bin", "blue", "at", "a", "one", "now"]
    f0 = []
    for spk in (1, 2):
        utt = speech.synthesize(words, speech.speaker_voice(spk), np.random.default_rng(0), 3.0)
        f0.append(_median_f0(utt.waveform, speech.SAMPLE_RATE))
    assert abs(f0[0] - f0[1]) / min(f0) > 0.2, f0


def _median_f0(wave: np.ndarray, sr: int) -> float:
    """Median autocorrelation pitch (Hz) of the loud 40 ms frames of ``wave``."""
    n = 640
    frames = wave[: len(wave) // n * n].reshape(-1, n).astype(np.float64)
    energy = (frames**2).mean(1)
    pitches = []
    for f in frames[energy > 0.25 * energy.max()]:
        f = f - f.mean()
        ac = np.correlate(f, f, "full")[n - 1 :]
        lo, hi = sr // 400, sr // 70
        pitches.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(pitches))


def test_rendering_is_deterministic() -> None:
    spec = corpus.plan_corpus("grid", 1, 1, seed=5)[0]
    c1 = corpus.render_clip(spec, 64)
    c2 = corpus.render_clip(spec, 64)
    np.testing.assert_array_equal(c1.frames, c2.frames)
    np.testing.assert_array_equal(c1.landmarks, c2.landmarks)
    np.testing.assert_array_equal(c1.waveform, c2.waveform)
    other = corpus.render_clip(dataclasses.replace(spec, seed=6), 64)
    assert not np.array_equal(c1.waveform, other.waveform)


def _frame_energy(wave: np.ndarray, frames: int) -> np.ndarray:
    return np.sqrt((wave.reshape(frames, -1).astype(np.float64) ** 2).mean(axis=1))


def test_mouth_follows_speech_while_blinks_and_head_motion_do_not() -> None:
    specs = corpus.plan_corpus("grid", speakers=4, clips=4, seed=0)
    r_mouth, r_blink, r_tx, r_ty = [], [], [], []
    for spec in specs:
        clip = corpus.render_clip(spec, 64)
        energy = _frame_energy(clip.waveform, spec.num_frames)
        lm = clip.landmarks.astype(np.float64)
        r_mouth.append(np.corrcoef(inner_lip_opening(lm), energy)[0, 1])
        eyes = eye_opening(lm)
        if eyes.std() > 0:
            r_blink.append(np.corrcoef(eyes, energy)[0, 1])
        rigid = lm[:, [27, 36, 39, 42, 45]].mean(axis=1)  # points the mouth does not move
        r_tx.append(np.corrcoef(rigid[:, 0], energy)[0, 1])
        r_ty.append(np.corrcoef(rigid[:, 1], energy)[0, 1])
    assert min(r_mouth) > 0.5, r_mouth
    assert len(r_blink) >= 8
    for name, rs in (("blink", r_blink), ("tx", r_tx), ("ty", r_ty)):
        assert abs(np.mean(rs)) < 0.3, (name, rs)


def test_motion_does_not_depend_on_the_words() -> None:
    spec = corpus.plan_corpus("grid", 1, 1, seed=0)[0]
    other_words = tuple(lexicon.words_from_utterance("lgwz9p"))
    assert other_words != spec.words
    a = corpus.render_clip(spec, 64)
    b = corpus.render_clip(dataclasses.replace(spec, words=other_words), 64)
    for name in ("blink", "tx", "ty", "rotation", "scale", "brow_raise", "smile", "gaze"):
        np.testing.assert_array_equal(getattr(a.motion, name), getattr(b.motion, name))
    assert not np.array_equal(a.waveform, b.waveform)
    assert not np.array_equal(inner_lip_opening(a.landmarks), inner_lip_opening(b.landmarks))
    # the eyes and the head pose are the same frame by frame; only the mouth and jaw differ
    np.testing.assert_allclose(a.landmarks[:, 36:48], b.landmarks[:, 36:48], atol=1e-4)


def test_random_motion_stays_in_bounds_and_blinks() -> None:
    m = random_motion(25 * 60, np.random.default_rng(0))
    assert len(m) == 1500
    assert np.abs(m.tx).max() <= MAX_TRANSLATION and np.abs(m.ty).max() <= MAX_TRANSLATION
    assert np.abs(m.rotation).max() <= MAX_ROTATION
    assert np.abs(m.scale - 1).max() <= MAX_SCALE
    assert np.abs(m.rotation).max() > 0.3 * MAX_ROTATION  # it does move
    assert m.blink.min() >= 0.0 and m.blink.max() == 1.0
    # blinks: about 0.3 per second, each ~150 ms (3-5 frames above half closure)
    closed = m.blink > 0.5
    onsets = np.flatnonzero(closed[1:] & ~closed[:-1])
    assert 8 <= len(onsets) <= 35
    run_lengths = np.diff(np.flatnonzero(np.diff(np.r_[0, closed.astype(int), 0])))[::2]
    assert run_lengths.max() <= 6
