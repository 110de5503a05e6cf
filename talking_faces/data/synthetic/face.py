"""Parametric 2-D face: one look per speaker, 68 iBUG landmarks per frame, anti-aliased drawing.

Place in the data flow: ``talking-faces synth`` (:mod:`.corpus`) turns the mouth track of the speech
(:mod:`.visemes`) and the clip's random motion (:mod:`.motion`) into one :class:`FaceState` per
frame; :class:`FaceRenderer` turns a state into the 68 landmarks and the frame drawn from them. The
same landmarks go to the clip's sidecar file, so they lie on the drawn features by construction.

Geometry lives in *face units*: origin near the nose tip, x to the image right, y down, the face's
nominal half width is 1. A similarity transform (the head pose: translation, in-plane rotation,
scale) maps face units to pixels of the output frame, with pixel centres at integer coordinates.
Drawing happens at ``supersample`` times the output size with PIL and is box-filtered down, which
gives the anti-aliasing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from talking_faces.data.synthetic import detmath

Color = tuple[int, int, int]
#: face units -> the flat pixel list PIL draws (the pose of one frame, supersampled)
_Transform = Callable[[np.ndarray], list[float]]

NUM_LANDMARKS = 68

#: iBUG 68-point groups (dlib order), as index ranges into a (68, 2) landmark array.
LANDMARK_GROUPS: dict[str, range] = {
    "jaw": range(0, 17),
    "right_brow": range(17, 22),  # image left: the subject's right
    "left_brow": range(22, 27),
    "nose_bridge": range(27, 31),
    "nose_base": range(31, 36),
    "right_eye": range(36, 42),
    "left_eye": range(42, 48),
    "outer_lips": range(48, 60),
    "inner_lips": range(60, 68),
}

HAIR_STYLES: tuple[str, ...] = ("short", "fringe", "long", "side", "receding")

# Plausible skin tones, light to dark (sRGB); each speaker jitters one of them.
_SKIN_TONES: tuple[Color, ...] = (
    (247, 214, 190),
    (236, 192, 160),
    (224, 172, 135),
    (198, 140, 105),
    (170, 112, 80),
    (134, 86, 58),
    (100, 64, 44),
)
_HAIR_COLOURS: tuple[Color, ...] = (
    (28, 22, 20),
    (58, 38, 26),
    (96, 62, 36),
    (140, 86, 46),
    (196, 160, 104),
    (150, 146, 140),
    (112, 44, 24),
)
_IRIS_COLOURS: tuple[Color, ...] = (
    (86, 54, 30),
    (52, 34, 22),
    (70, 110, 150),
    (80, 120, 80),
    (120, 96, 50),
)

MOUTH_INTERIOR: Color = (62, 18, 24)
_TEETH: Color = (236, 232, 220)
_SCLERA: Color = (245, 243, 238)
_PUPIL: Color = (12, 10, 10)


@dataclass(frozen=True)
class FaceStyle:
    """Everything that makes one speaker's face look like that speaker (face units, sRGB)."""

    speaker: int
    face_width: float  # half width of the jaw at eye level
    jaw_length: float  # eye level to chin
    jaw_square: float  # superellipse exponent of the jaw: 2 round, larger is squarer
    chin_width: float  # 0 pointed .. 1 broad
    skull_height: float  # eye level to the top of the skull
    eye_y: float
    eye_spacing: float  # half distance between eye centres
    eye_width: float  # half width of one eye
    eye_height: float  # half opening of one eye
    eye_tilt: float  # outer corner raise
    iris_radius: float
    brow_gap: float  # eye centre to brow
    brow_arch: float
    brow_thickness: float
    brow_tilt: float  # outer end raise
    nose_length: float  # y of the nose tip (landmark 30)
    nose_width: float  # half width of the nose base
    mouth_y: float
    mouth_width: float  # half width at rest
    upper_lip: float  # thickness at the centre
    lower_lip: float
    hair_style: str
    hair_volume: float
    hairline: float  # forehead height below the skull top
    unit: float  # face half width as a fraction of the frame size
    offset: tuple[float, float]  # face origin offset from the frame centre, fraction of size
    skin: Color
    hair: Color
    brow: Color
    lip: Color
    iris: Color
    shirt: Color
    background_top: Color
    background_bottom: Color


@dataclass(frozen=True)
class FaceState:
    """One frame's non-identity parameters: mouth, eyes, expression and head pose.

    Mouth values follow :class:`talking_faces.data.synthetic.visemes.MouthTrack`: ``jaw_open`` and
    ``lip_round`` in [0, 1], ``lip_width`` in [-1, 1], ``closure`` in [0, 1] (1 = lips pressed).
    ``blink`` 1 = eyes shut; ``brow_raise`` in [-1, 1]; ``smile`` in [0, 1]; ``gaze`` is the iris
    offset as a fraction of the eye size. Pose: ``tx``/``ty`` in fractions of the frame size,
    ``rotation`` in degrees, ``scale`` a factor around 1.
    """

    jaw_open: float = 0.0
    lip_width: float = 0.0
    lip_round: float = 0.0
    closure: float = 0.0
    blink: float = 0.0
    brow_raise: float = 0.0
    smile: float = 0.0
    gaze: tuple[float, float] = (0.0, 0.0)
    tx: float = 0.0
    ty: float = 0.0
    rotation: float = 0.0
    scale: float = 1.0


def _rgb(values: np.ndarray | list[float]) -> Color:
    r, g, b = (int(v) for v in np.clip(np.round(np.asarray(values, dtype=np.float64)), 0, 255))
    return (r, g, b)


def _jitter(rng: np.random.Generator, colour: Color, amount: float) -> Color:
    c = np.asarray(colour, dtype=np.float64) * (1.0 + rng.uniform(-amount, amount))
    return _rgb(c + rng.uniform(-amount, amount, size=3) * 60.0)


def _mix(a: Color, b: Color, t: float) -> Color:
    return _rgb(np.asarray(a, dtype=np.float64) * (1.0 - t) + np.asarray(b) * t)


def _scale_colour(a: Color, f: float) -> Color:
    return _rgb(np.asarray(a, dtype=np.float64) * f)


def _colour_distance(a: Color, b: Color) -> float:
    return math.sqrt(
        sum((float(x) - float(y)) * (float(x) - float(y)) for x, y in zip(a, b, strict=True))
    )


@lru_cache(maxsize=256)
def speaker_style(speaker: int, seed: int = 0) -> FaceStyle:
    """The face of ``speaker`` (any integer) under corpus ``seed``: same inputs, same face."""
    rng = np.random.default_rng([seed, speaker, 0xFACE])
    u = rng.uniform
    skin = _jitter(rng, _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))], 0.04)
    hair = _jitter(rng, _HAIR_COLOURS[int(rng.integers(len(_HAIR_COLOURS)))], 0.05)
    # Lips: the skin tone pulled towards a red/pink hue, darker; kept clearly apart from the skin.
    lip_hue = ((176, 70, 80), (150, 60, 60), (190, 96, 104), (130, 52, 58))[int(rng.integers(4))]
    lip = _mix(_scale_colour(skin, 0.8), lip_hue, u(0.45, 0.7))
    while _colour_distance(lip, skin) < 70.0:
        lip = _scale_colour(lip, 0.88)
    brow = _scale_colour(_mix(hair, (30, 24, 20), 0.4), 0.9)
    while _colour_distance(brow, skin) < 60.0 and sum(brow) > 30:
        brow = _scale_colour(brow, 0.8)
    bg_hue = rng.uniform(0, 1, size=3)
    bg_top = _rgb(70 + 130 * (0.35 * bg_hue + 0.65 * u(0.2, 0.9)))
    bg_bottom = _scale_colour(bg_top, u(0.6, 0.9))
    shirt = _rgb(rng.integers(20, 230, size=3))
    style = FaceStyle(
        speaker=speaker,
        face_width=u(0.88, 1.0),
        jaw_length=u(1.02, 1.22),
        jaw_square=u(2.0, 3.0),
        chin_width=u(0.2, 0.8),
        skull_height=u(0.95, 1.08),
        eye_y=-0.3 + u(-0.03, 0.03),
        eye_spacing=u(0.37, 0.45),
        eye_width=u(0.15, 0.19),
        eye_height=u(0.055, 0.075),
        eye_tilt=u(-0.015, 0.03),
        iris_radius=u(0.062, 0.075),
        brow_gap=u(0.17, 0.23),
        brow_arch=u(0.02, 0.07),
        brow_thickness=u(0.05, 0.085),
        brow_tilt=u(-0.03, 0.03),
        nose_length=u(0.13, 0.22),
        nose_width=u(0.13, 0.19),
        mouth_y=u(0.5, 0.58),
        mouth_width=u(0.3, 0.38),
        upper_lip=u(0.07, 0.095),
        lower_lip=u(0.085, 0.12),
        hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
        hair_volume=u(0.06, 0.26),
        hairline=u(0.3, 0.45),
        unit=u(0.2, 0.23),
        offset=(u(-0.03, 0.03), u(0.02, 0.06)),
        skin=skin,
        hair=hair,
        brow=brow,
        lip=lip,
        iris=_jitter(rng, _IRIS_COLOURS[int(rng.integers(len(_IRIS_COLOURS)))], 0.05),
        shirt=shirt,
        background_top=bg_top,
        background_bottom=bg_bottom,
    )
    return style


# --------------------------------------------------------------------------------------------
# Smooth contours: uniform Catmull-Rom splines are linear in their control points, so each
# contour is one precomputed matrix product.


@lru_cache(maxsize=32)
def _catmull_rom(num_points: int, per_segment: int, closed: bool) -> np.ndarray:
    """Matrix (M, K) mapping K control points to M points on the Catmull-Rom spline through them."""
    k = num_points
    segments = k if closed else k - 1
    rows = []
    for s in range(segments):
        idx = [s - 1, s, s + 1, s + 2]
        if closed:
            idx = [i % k for i in idx]
        else:
            idx = [min(max(i, 0), k - 1) for i in idx]
        last = (not closed) and s == segments - 1
        for j in range(per_segment + (1 if last else 0)):
            t = j / per_segment
            w = 0.5 * np.array(
                [
                    -t + 2 * t**2 - t**3,
                    2 - 5 * t**2 + 3 * t**3,
                    t + 4 * t**2 - 3 * t**3,
                    -(t**2) + t**3,
                ]
            )
            row = np.zeros(k)
            for i, wi in zip(idx, w, strict=True):
                row[i] += wi
            rows.append(row)
    return np.asarray(rows)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a few columns of ``a``, summed in a fixed order: numpy's matmul goes through
    BLAS, whose kernel (and so the last bits of the result) depends on the CPU."""
    out = np.zeros((a.shape[0], b.shape[1]))
    for i in range(a.shape[1]):
        out += a[:, i : i + 1] * b[i]
    return out


def _spline(points: np.ndarray, per_segment: int, closed: bool) -> np.ndarray:
    return _matmul(_catmull_rom(len(points), per_segment, closed), points)


@lru_cache(maxsize=8)
def _unit_circle(n: int) -> np.ndarray:
    a = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([detmath.cos(a), detmath.sin(a)], axis=1)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    return _unit_circle(n) * (rx, ry) + (cx, cy)


# --------------------------------------------------------------------------------------------
# Landmarks in face units


def _jaw(style: FaceStyle, drop: float) -> np.ndarray:
    """Jaw contour 0..16 (image left to right through the chin); ``drop`` lowers the chin."""
    theta = np.linspace(0.0, np.pi, 17)
    c, s = detmath.cos(theta), detmath.sin(theta)
    e = 2.0 / style.jaw_square
    x = -style.face_width * np.sign(c) * detmath.power(np.abs(c), e)
    y = style.eye_y + 0.02 + style.jaw_length * detmath.power(np.abs(s), e)
    # Narrow the chin region by how pointed the chin is.
    s3 = s * s * s
    taper = 1.0 - (1.0 - style.chin_width) * 0.35 * (s3 * s3)
    x = x * taper
    # The jaw hinges near the ears: points towards the chin drop most when the mouth opens.
    y = y + drop * s3
    return np.stack([x, y], axis=1)


def _brow(style: FaceStyle, side: int, raise_: float) -> np.ndarray:
    """Five brow points, outer to inner for side -1 (17..21), inner to outer for +1 (22..26)."""
    inner = 0.1
    outer = style.eye_spacing + style.eye_width * 1.15
    u = np.linspace(0.0, 1.0, 5)  # 0 outer .. 1 inner
    x = outer + (inner - outer) * u
    base = style.eye_y - style.brow_gap - 0.06 * raise_
    arch = (style.brow_arch + 0.025 * max(raise_, 0.0)) * detmath.sin(np.pi * (0.25 + 0.75 * u))
    y = base - arch - style.brow_tilt * (1.0 - u) + 0.015 * u
    pts = np.stack([x * side, y], axis=1)
    return pts if side < 0 else pts[::-1]


def _eye(style: FaceStyle, side: int, blink: float, smile: float) -> np.ndarray:
    """Six eye points in iBUG order (36..41 for side -1, 42..47 for side +1)."""
    cx = side * style.eye_spacing
    cy = style.eye_y
    w = style.eye_width
    h = style.eye_height
    tilt = style.eye_tilt
    # Where the lids meet when shut: a little below the centre.
    shut = cy + 0.35 * h
    upper = (1.0 - blink) * (cy - h) + blink * shut
    lower_open = cy + 0.8 * h - 0.25 * h * smile  # a smile pushes the lower lid up
    lower = (1.0 - blink) * lower_open + blink * shut
    outer = (cx + side * w, cy - tilt)
    inner = (cx - side * w, cy + 0.2 * tilt)
    up_outer = (cx + side * 0.38 * w, upper - 0.2 * tilt)
    up_inner = (cx - side * 0.38 * w, upper + 0.05 * h * (1.0 - blink))
    lo_inner = (cx - side * 0.38 * w, lower)
    lo_outer = (cx + side * 0.38 * w, lower - 0.2 * tilt)
    if (
        side < 0
    ):  # 36 outer, 37 upper outer, 38 upper inner, 39 inner, 40 lower inner, 41 lower outer
        pts = [outer, up_outer, up_inner, inner, lo_inner, lo_outer]
    else:  # 42 inner, 43 upper inner, 44 upper outer, 45 outer, 46 lower outer, 47 lower inner
        pts = [inner, up_inner, up_outer, outer, lo_outer, lo_inner]
    return np.asarray(pts, dtype=np.float64)


def _nose(style: FaceStyle) -> np.ndarray:
    """Nose points 27..35: bridge from between the eyes to the tip, then the base left to right."""
    top = style.eye_y
    tip = style.nose_length
    bridge = np.stack([np.zeros(4), np.linspace(top, tip, 4)], axis=1)
    base_y = tip + 0.06
    nw = style.nose_width
    base = np.array(
        [
            [-nw, base_y - 0.03],
            [-0.5 * nw, base_y + 0.01],
            [0.0, base_y + 0.025],
            [0.5 * nw, base_y + 0.01],
            [nw, base_y - 0.03],
        ]
    )
    return np.concatenate([bridge, base])


_OPEN_MAX = 0.34  # inner-lip opening at jaw_open=1, face units


def _mouth(style: FaceStyle, state: FaceState) -> tuple[np.ndarray, float]:
    """Outer (48..59) and inner (60..67) lip points, and how far the lower jaw drops."""
    opening = _OPEN_MAX * float(np.clip(state.jaw_open, 0, 1)) * (1.0 - float(state.closure))
    rnd = float(np.clip(state.lip_round, 0, 1))
    smile = float(np.clip(state.smile, 0, 1))
    hw = style.mouth_width * (1.0 + 0.16 * state.lip_width + 0.1 * smile) * (1.0 - 0.3 * rnd)
    iw = hw * (0.86 - 0.12 * rnd)
    up = 0.28 * opening
    down = opening - up
    ym = style.mouth_y
    yc = ym - 0.045 * smile + 0.25 * down  # corners: up with a smile, down with the jaw
    protrude = 1.0 + 0.35 * rnd + 0.2 * float(np.clip(state.closure, 0, 1))
    tu = style.upper_lip * protrude
    tl = style.lower_lip * protrude
    power = 0.5 * (1.0 - 0.7 * rnd)  # rounded lips open in a rounder shape

    def mid(x: np.ndarray, half: float) -> np.ndarray:
        return ym + (yc - ym) * np.clip(np.abs(x) / half, 0, 1) ** 2

    def open_shape(x: np.ndarray) -> np.ndarray:
        return detmath.power(np.clip(1.0 - (x / iw) ** 2, 0.0, 1.0), power)

    def thick(x: np.ndarray) -> np.ndarray:
        return 0.3 + 0.7 * np.sqrt(np.clip(1.0 - (x / hw) ** 2, 0.0, 1.0))

    xo_up = np.array([-1.0, -0.62, -0.24, 0.0, 0.24, 0.62, 1.0]) * hw  # 48..54
    bow = np.array([0.0, 0.0, -0.14, 0.1, -0.14, 0.0, 0.0]) * tu  # cupid's bow
    yo_up = mid(xo_up, hw) - up * open_shape(xo_up) - tu * thick(xo_up) + bow
    xo_lo = np.array([0.62, 0.24, 0.0, -0.24, -0.62]) * hw  # 55..59
    yo_lo = mid(xo_lo, hw) + down * open_shape(xo_lo) + tl * thick(xo_lo)
    xi_up = np.array([-1.0, -0.5, 0.0, 0.5, 1.0]) * iw  # 60..64
    yi_up = mid(xi_up, hw) - up * open_shape(xi_up)
    xi_lo = np.array([0.5, 0.0, -0.5]) * iw  # 65..67
    yi_lo = mid(xi_lo, hw) + down * open_shape(xi_lo)
    outer = np.concatenate([np.stack([xo_up, yo_up], 1), np.stack([xo_lo, yo_lo], 1)])
    inner = np.concatenate([np.stack([xi_up, yi_up], 1), np.stack([xi_lo, yi_lo], 1)])
    return np.concatenate([outer, inner]), down


def canonical_landmarks(style: FaceStyle, state: FaceState) -> np.ndarray:
    """The 68 iBUG landmarks in face units (before the head pose): float64 (68, 2)."""
    mouth, drop = _mouth(style, state)
    pts = np.concatenate(
        [
            _jaw(style, drop),
            _brow(style, -1, state.brow_raise),
            _brow(style, +1, state.brow_raise),
            _nose(style),
            _eye(style, -1, state.blink, state.smile),
            _eye(style, +1, state.blink, state.smile),
            mouth,
        ]
    )
    assert pts.shape == (NUM_LANDMARKS, 2)
    return pts


def pose_matrix(style: FaceStyle, state: FaceState, size: int) -> np.ndarray:
    """(2, 3) similarity transform from face units to output-frame pixels (centres at integers)."""
    s = style.unit * size * state.scale
    a = math.radians(state.rotation)
    c, si = float(detmath.cos(a)) * s, float(detmath.sin(a)) * s
    cx = size * (0.5 + style.offset[0] + state.tx) - 0.5
    cy = size * (0.5 + style.offset[1] + state.ty) - 0.5
    return np.array([[c, -si, cx], [si, c, cy]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``pts @ m[:, :2].T + m[:, 2]``, elementwise in a fixed order (no BLAS)."""
    x = pts[..., 0:1] * m[:, 0] + pts[..., 1:2] * m[:, 1]
    return x + m[:, 2]


def face_landmarks(style: FaceStyle, state: FaceState, size: int) -> np.ndarray:
    """The 68 landmarks of ``state`` in output-frame pixels: float64 (68, 2), x then y."""
    return _apply(pose_matrix(style, state, size), canonical_landmarks(style, state))


def inner_lip_opening(landmarks: np.ndarray) -> np.ndarray:
    """Mean inner-lip gap (61-67, 62-66, 63-65) per frame: (..., 68, 2) -> (...)."""
    upper = landmarks[..., [61, 62, 63], :]
    lower = landmarks[..., [67, 66, 65], :]
    return np.linalg.norm(upper - lower, axis=-1).mean(axis=-1)


def eye_opening(landmarks: np.ndarray) -> np.ndarray:
    """Mean lid gap of both eyes (37-41, 38-40, 43-47, 44-46) per frame: (..., 68, 2) -> (...)."""
    upper = landmarks[..., [37, 38, 43, 44], :]
    lower = landmarks[..., [41, 40, 47, 46], :]
    return np.linalg.norm(upper - lower, axis=-1).mean(axis=-1)


# --------------------------------------------------------------------------------------------
# Speaker-fixed shapes (face units): skull, hair, ears, neck, shoulders


def _skull_arc(style: FaceStyle, n: int = 24) -> np.ndarray:
    """Top of the head from jaw point 16 over the top to jaw point 0 (right to left)."""
    y0 = style.eye_y + 0.02
    a = np.linspace(0.0, np.pi, n + 2)[1:-1]
    x = style.face_width * detmath.cos(a)
    y = y0 - style.skull_height * detmath.power(detmath.sin(a), 0.85)
    return np.stack([x, y], axis=1)


def _hair_shapes(style: FaceStyle) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Hair polygons in face units: (long hair or None, cap, fringe).

    The long hair and the cap are drawn behind the face (they show around it), the fringe over
    the face: it is the part of the skull above the hairline.
    """
    fw = style.face_width
    y0 = style.eye_y + 0.02
    h = style.skull_height
    vol = style.hair_volume
    top = y0 - h
    hair_y = top + style.hairline  # hairline at the centre of the forehead
    if style.hair_style == "fringe":
        sides = y0 + 0.08

        def edge(t: np.ndarray) -> np.ndarray:
            return hair_y + 0.14 + 0.025 * detmath.cos(t * 11.0) - 0.04 * t**2

    elif style.hair_style == "side":
        sides = y0 + 0.1

        def edge(t: np.ndarray) -> np.ndarray:
            return hair_y - 0.04 + 0.12 * (t + 1.0) ** 2 / 4.0 + 0.14 * t**2

    elif style.hair_style == "receding":
        sides = y0 + 0.12

        def edge(t: np.ndarray) -> np.ndarray:
            return hair_y - 0.1 + 0.5 * t**2

    else:  # short, long
        sides = y0 + 0.04

        def edge(t: np.ndarray) -> np.ndarray:
            return hair_y + 0.26 * t**2

    a = np.linspace(np.pi, 2.0 * np.pi, 33)  # image left, over the top, to the right
    arc = np.stack([(fw + vol) * detmath.cos(a), y0 + (h + 1.3 * vol) * detmath.sin(a)], axis=1)
    cap = np.concatenate([arc, [[fw + 0.4 * vol, sides + 0.06], [-fw - 0.4 * vol, sides + 0.06]]])
    # Fringe: just outside the skull arc from the right temple over the top to the left one,
    # down the left side burn, then the hairline back to the right.
    b = np.linspace(0.0, np.pi, 33)
    sb = detmath.power(np.abs(detmath.sin(b)), 0.85)
    skull = np.stack([1.01 * fw * detmath.cos(b), y0 - 1.01 * h * sb], axis=1)
    xs = np.linspace(-fw * 1.01, fw * 1.01, 33)
    line = np.stack([xs, np.minimum(edge(xs / fw), sides)], axis=1)
    fringe = np.concatenate([skull, [[-fw * 1.01, sides]], line, [[fw * 1.01, sides]]])
    back = None
    if style.hair_style == "long":
        a2 = np.linspace(np.pi, 2.0 * np.pi, 25)
        r = fw + vol + 0.06
        crown = np.stack([r * detmath.cos(a2), y0 + (h + 1.4 * vol) * detmath.sin(a2)], axis=1)
        back = np.concatenate(
            [
                crown,
                [[r + 0.08, y0 + 0.9], [r + 0.02, y0 + 1.5], [fw * 0.55, y0 + 1.55]],
                [[-fw * 0.55, y0 + 1.55], [-r - 0.02, y0 + 1.5], [-r - 0.08, y0 + 0.9]],
            ]
        )
    return back, cap, fringe


@dataclass(frozen=True)
class _StaticShapes:
    skull: np.ndarray
    hair_back: np.ndarray | None
    hair_cap: np.ndarray
    hair_front: np.ndarray
    ears: tuple[np.ndarray, np.ndarray]
    neck: np.ndarray
    shoulders: np.ndarray
    cheeks: tuple[np.ndarray, np.ndarray]


def _static_shapes(style: FaceStyle) -> _StaticShapes:
    fw = style.face_width
    y0 = style.eye_y + 0.02
    back, cap, front = _hair_shapes(style)
    ear_y = style.eye_y + 0.2
    ears = (
        _ellipse(-fw * 0.97, ear_y, 0.12, 0.22, 16),
        _ellipse(fw * 0.97, ear_y, 0.12, 0.22, 16),
    )
    chin = y0 + style.jaw_length
    neck = np.array(
        [[-0.5 * fw, 0.3], [0.5 * fw, 0.3], [0.55 * fw, chin + 0.6], [-0.55 * fw, chin + 0.6]]
    )
    sh_y = chin + 0.42
    a = np.linspace(np.pi, 2.0 * np.pi, 25)
    shoulders = np.concatenate(
        [
            np.stack([2.6 * detmath.cos(a), sh_y + 0.45 * (1 + detmath.sin(a))], axis=1),
            [[2.8, sh_y + 3.0], [-2.8, sh_y + 3.0]],
        ]
    )
    cheek_y = style.nose_length + 0.08
    cheeks = (
        _ellipse(-style.eye_spacing - 0.1, cheek_y, 0.17, 0.1, 16),
        _ellipse(style.eye_spacing + 0.1, cheek_y, 0.17, 0.1, 16),
    )
    return _StaticShapes(_skull_arc(style), back, cap, front, ears, neck, shoulders, cheeks)


# --------------------------------------------------------------------------------------------
# Rendering


def _offset_curve(pts: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Move each point of an open curve along its normal by ``dist`` (per point)."""
    d = np.gradient(pts, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], axis=1)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    return pts + n * dist[:, None]


class FaceRenderer:
    """Draws one speaker's face at a fixed output size.

    ``render(state)`` returns ``(frame, landmarks)``: uint8 (size, size, 3) RGB and float64
    (68, 2) pixel coordinates of that frame (pixel centres at integers).
    """

    def __init__(self, style: FaceStyle, size: int, supersample: int = 2) -> None:
        self.style = style
        self.size = int(size)
        self.ss = int(supersample)
        self._static = _static_shapes(style)
        big = self.size * self.ss
        ramp = np.linspace(0.0, 1.0, big)[:, None, None]
        top = np.asarray(style.background_top, dtype=np.float64)
        bottom = np.asarray(style.background_bottom, dtype=np.float64)
        # Horizontal light falloff as well, like a lit studio wall.
        xs = np.linspace(-1.0, 1.0, big)[None, :, None]
        bg = (top * (1 - ramp) + bottom * ramp) * (1.0 - 0.12 * xs**2)
        self._background = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
        s = style
        self._colours = {
            "skin": s.skin,
            "skin_shadow": _scale_colour(s.skin, 0.82),
            "nose": _scale_colour(s.skin, 0.92),
            "nostril": _scale_colour(s.skin, 0.45),
            "nose_line": _scale_colour(s.skin, 0.7),
            "cheek": _mix(s.skin, s.lip, 0.12),
            "ear": _scale_colour(s.skin, 0.9),
            "lid_line": _mix(s.skin, (20, 16, 16), 0.75),
            "lip_line": _scale_colour(s.lip, 0.55),
        }

    def landmarks(self, state: FaceState) -> np.ndarray:
        """Landmarks of ``state`` in output pixels: float64 (68, 2)."""
        return face_landmarks(self.style, state, self.size)

    def render(self, state: FaceState) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``state``: (uint8 (H, W, 3) frame, float64 (68, 2) landmarks in its pixels)."""
        canon = canonical_landmarks(self.style, state)
        m = pose_matrix(self.style, state, self.size)
        # Supersampled pixel coordinates: x_big = ss * x + (ss - 1) / 2 keeps pixel centres aligned.
        mb = m * self.ss
        mb[:, 2] += (self.ss - 1) / 2.0

        def tr(p: np.ndarray) -> list[float]:
            return _apply(mb, p).ravel().tolist()  # PIL takes flat [x0, y0, x1, y1, ...]

        img = self._background.copy()
        d = ImageDraw.Draw(img)
        lw = self.ss * self.size / 256.0  # one output pixel at 256 px, in drawing pixels
        self._draw_head(d, tr, canon)
        self._draw_eyes(d, tr, canon, state, lw)
        self._draw_brows(d, tr, canon)
        self._draw_nose(d, tr, canon, lw)
        self._draw_mouth(d, tr, canon, lw)
        if self.ss > 1:
            img = img.reduce(self.ss)
        return np.asarray(img), _apply(m, canon)

    def _draw_head(self, d: ImageDraw.ImageDraw, tr: _Transform, canon: np.ndarray) -> None:
        """Behind the face (long hair, shoulders, neck, ears), the face, cheeks and fringe."""
        style, st, col = self.style, self._static, self._colours
        if st.hair_back is not None:
            d.polygon(tr(st.hair_back), fill=style.hair)
        d.polygon(tr(st.shoulders), fill=style.shirt)
        d.polygon(tr(st.neck), fill=col["skin_shadow"])
        d.polygon(tr(st.hair_cap), fill=style.hair)
        for ear in st.ears:
            d.polygon(tr(ear), fill=col["ear"])

        # Face outline: the jaw landmarks, closed over the skull.
        jaw = _spline(canon[0:17], 4, closed=False)
        d.polygon(tr(np.concatenate([jaw, st.skull])), fill=style.skin)
        for cheek in st.cheeks:
            d.polygon(tr(cheek), fill=col["cheek"])
        d.polygon(tr(st.hair_front), fill=style.hair)

    def _draw_eyes(
        self,
        d: ImageDraw.ImageDraw,
        tr: _Transform,
        canon: np.ndarray,
        state: FaceState,
        lw: float,
    ) -> None:
        """Sclera inside the lid contour, iris and pupil, then skin lids over what they hide."""
        style, col = self.style, self._colours
        for sl in (slice(36, 42), slice(42, 48)):
            eye = canon[sl]
            contour = _spline(eye, 4, closed=True)
            centre = eye.mean(axis=0)
            w = np.ptp(eye[:, 0]) / 2.0
            d.polygon(tr(contour), fill=_SCLERA)
            r = style.iris_radius
            ic = centre + np.array([state.gaze[0] * 0.35 * w, state.gaze[1] * 0.3 * r])
            d.polygon(tr(_ellipse(ic[0], ic[1] - 0.1 * r, r, r, 20)), fill=style.iris)
            d.polygon(tr(_ellipse(ic[0], ic[1] - 0.1 * r, 0.45 * r, 0.45 * r, 12)), fill=_PUPIL)
            # The contour runs corner, upper lid, other corner, lower lid (both eyes, iBUG order);
            # skin-coloured bands above the upper and below the lower lid hide the iris outside.
            upper = contour[0:13]
            lower = np.concatenate([contour[12:], contour[:1]])
            cover = 3.2 * r
            lid_up = np.concatenate([upper, upper[::-1] - [0.0, cover]])
            lid_lo = np.concatenate([lower, lower[::-1] + [0.0, cover]])
            d.polygon(tr(lid_up), fill=style.skin)
            d.polygon(tr(lid_lo), fill=style.skin)
            d.line(tr(upper), fill=col["lid_line"], width=max(1, round(1.6 * lw)), joint="curve")

    def _draw_brows(self, d: ImageDraw.ImageDraw, tr: _Transform, canon: np.ndarray) -> None:
        """A tapered band centred on the brow landmarks."""
        style = self.style
        for sl, inner_last in ((slice(17, 22), True), (slice(22, 27), False)):
            curve = _spline(canon[sl], 3, closed=False)
            # Run the band a little past the end points so those landmarks sit inside it.
            head = curve[0] + 0.6 * (curve[0] - curve[1])
            tail = curve[-1] + 0.6 * (curve[-1] - curve[-2])
            curve = np.concatenate([head[None], curve, tail[None]])
            u = np.linspace(0.0, 1.0, len(curve))
            if not inner_last:
                u = u[::-1]
            half = 0.5 * style.brow_thickness * (0.5 + 0.5 * u)
            band = np.concatenate([_offset_curve(curve, half), _offset_curve(curve, -half)[::-1]])
            d.polygon(tr(band), fill=style.brow)

    def _draw_nose(
        self, d: ImageDraw.ImageDraw, tr: _Transform, canon: np.ndarray, lw: float
    ) -> None:
        """A slightly darker wedge from the bridge to the base, nostrils, base line."""
        col = self._colours
        nose = canon[27:36]
        wedge = np.array(
            [
                nose[0] + [-0.035, 0.05],
                nose[0] + [0.035, 0.05],
                nose[8] + [0.0, -0.06],
                nose[7],
                nose[6],
                nose[5],
                nose[4],
                nose[4] + [0.0, -0.06],
            ]
        )
        d.polygon(tr(wedge), fill=col["nose"])
        for k in (5, 7):
            c = nose[k] + [0.0, -0.012]
            d.polygon(tr(_ellipse(c[0], c[1], 0.045, 0.02, 12)), fill=col["nostril"])
        d.line(
            tr(_spline(nose[4:9], 3, closed=False)),
            fill=col["nose_line"],
            width=max(1, round(1.2 * lw)),
            joint="curve",
        )

    def _draw_mouth(
        self, d: ImageDraw.ImageDraw, tr: _Transform, canon: np.ndarray, lw: float
    ) -> None:
        """Lips in the lip colour, the opening between the inner lips dark, upper teeth."""
        style, col = self.style, self._colours
        outer = _spline(canon[48:60], 4, closed=True)
        inner_up = canon[60:65]
        inner_lo = canon[[64, 65, 66, 67, 60]]
        d.polygon(tr(outer), fill=style.lip)
        iu = _spline(inner_up, 4, closed=False)
        il = _spline(inner_lo, 4, closed=False)
        gap = np.abs(il[::-1, 1] - iu[:, 1]).max()
        if gap > 1e-4:
            d.polygon(tr(np.concatenate([iu, il])), fill=MOUTH_INTERIOR)
            teeth_depth = np.minimum(iu[:, 1] + 0.055, il[::-1, 1])
            teeth = np.concatenate([iu, np.stack([iu[:, 0], teeth_depth], 1)[::-1]])
            d.polygon(tr(teeth), fill=_TEETH)
        d.line(tr(iu), fill=col["lip_line"], width=max(1, round(1.0 * lw)), joint="curve")
