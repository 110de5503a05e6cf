"""Similarity alignment of every frame to a fixed face template, and the crop.

landmarks (T, 68, 2 frame pixels) -> **align.align_clip** -> crops (T, S, S, 3) + crop landmarks

Per frame, a similarity transform (rotation, uniform scale, translation; no reflection) is fitted by
weighted least squares from three stable points (the two eye centres and the mouth centre, as
DAVS aligns LRW; the mouth weighted 4, each eye 1) to the same points of the template. Its four
parameters are smoothed over time with a Gaussian, so the crop does not jitter with landmark noise,
then every frame is warped into an ``S x S`` crop with bilinear sampling
(``torch.nn.functional.grid_sample``, batched; when the face shrinks, the frames are first
downscaled with an antialiasing filter so the crop does not alias). The landmarks go through the
same transform into crop pixels.

The template is the 68-point mean face of OpenFace's ``align_dlib.py`` (CMU, Apache-2.0), made
left-right symmetric, scaled so the jaw spans 70% of the crop width, centred horizontally with the
brow-to-chin box centred at 53% of the crop height: the whole face from brows to chin is inside
the crop. Pixel coordinates put pixel centres at integers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d

NUM_LANDMARKS = 68
TEMPLATE_NAME = "openface-mean68-symmetric"
#: jaw width as a fraction of the crop size, and the vertical centre of the brow-to-chin box
TEMPLATE_FACE_WIDTH = 0.70
TEMPLATE_CENTRE_Y = 0.53

#: least-squares weights of the stable points (left eye, right eye, mouth centre): the mouth
#: counts as much as both eyes twice, so that faces whose eye-to-mouth distance differs from the
#: template's keep their mouth near the template's (the region talking-face models care about)
STABLE_WEIGHTS = np.array([1.0, 1.0, 4.0])

#: frames are downscaled (antialiased) before the warp when the transform shrinks below this
PRE_DOWNSCALE_BELOW = 0.95

LEFT_EYE = tuple(range(36, 42))
RIGHT_EYE = tuple(range(42, 48))
OUTER_LIPS = tuple(range(48, 60))
MOUTH = tuple(range(48, 68))

# OpenFace's mean face (openface/align_dlib.py TEMPLATE), iBUG 68-point order.
_OPENFACE_MEAN = np.array(
    [
        (0.0792396913815, 0.339223741112),
        (0.0829219487236, 0.456955367943),
        (0.0967927109165, 0.575648016728),
        (0.122141515615, 0.691921601066),
        (0.168687863544, 0.800341263616),
        (0.239789390707, 0.895732504778),
        (0.325662452515, 0.977068762493),
        (0.422318282013, 1.04329000149),
        (0.531777802068, 1.06080371126),
        (0.641296298053, 1.03981924107),
        (0.738105872266, 0.972268833998),
        (0.824444363295, 0.889624082279),
        (0.894792677532, 0.792494155836),
        (0.939395486253, 0.681546643421),
        (0.96111933829, 0.562238253072),
        (0.970579841181, 0.441758925744),
        (0.971193274221, 0.322118743967),
        (0.163846223133, 0.249151738053),
        (0.21780354657, 0.204255863861),
        (0.291299351124, 0.192367318323),
        (0.367460241458, 0.203582210627),
        (0.4392945113, 0.233135599851),
        (0.586445962425, 0.228141644834),
        (0.660152671635, 0.195923841854),
        (0.737466449096, 0.182360984545),
        (0.813236546239, 0.192828009114),
        (0.8707571886, 0.235293377042),
        (0.51534533827, 0.31863546193),
        (0.516221448289, 0.396200446263),
        (0.517118861835, 0.473797687758),
        (0.51816430343, 0.553157797772),
        (0.433701156035, 0.604054457668),
        (0.475501237769, 0.62076344024),
        (0.520712933176, 0.634268222208),
        (0.565874114041, 0.618796581487),
        (0.607054002672, 0.60157671656),
        (0.252418718401, 0.331052263829),
        (0.298663015648, 0.302646354002),
        (0.355749724218, 0.303020650651),
        (0.403718978315, 0.33867711083),
        (0.352507175597, 0.349987615384),
        (0.296791759886, 0.350478978225),
        (0.631326076346, 0.334136672344),
        (0.679073381078, 0.29645404267),
        (0.73597236153, 0.294721285802),
        (0.782865376271, 0.321305281656),
        (0.740312274764, 0.341849376713),
        (0.68499850091, 0.343734332172),
        (0.353167761422, 0.746189164237),
        (0.414587777921, 0.719053835073),
        (0.477677654595, 0.706835892494),
        (0.522732900812, 0.717092275768),
        (0.569832064287, 0.705414478982),
        (0.635195811927, 0.71565572516),
        (0.69951672331, 0.739419187253),
        (0.639447159575, 0.805236879972),
        (0.576410514055, 0.835436670169),
        (0.525398405766, 0.841706377792),
        (0.47641545769, 0.837505914975),
        (0.41379548902, 0.810045601727),
        (0.380084785646, 0.749979603086),
        (0.477955996282, 0.74513234612),
        (0.523389793327, 0.748924302636),
        (0.571057789237, 0.74332894691),
        (0.672409137852, 0.744177032192),
        (0.572539621444, 0.776609286626),
        (0.5240106503, 0.783370783245),
        (0.477561227414, 0.778476346951),
    ],
    dtype=np.float64,
)

# Left-right counterpart of every iBUG point.
_MIRROR = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nose bottom
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)


def _unit_template() -> np.ndarray:
    """The symmetric mean face, brow-to-chin box centred on (0, 0), jaw width 1."""
    pts = _OPENFACE_MEAN
    mirrored = pts[_MIRROR].copy()
    mirrored[:, 0] = -mirrored[:, 0]
    axis = float(np.mean(pts[:, 0] - mirrored[:, 0])) / 2  # x of the symmetry axis
    sym = (pts + (mirrored + [2 * axis, 0.0])) / 2
    lo, hi = sym.min(axis=0), sym.max(axis=0)
    return (sym - (lo + hi) / 2) / (hi[0] - lo[0])


_UNIT = _unit_template()


def template_points(size: int) -> np.ndarray:
    """The 68-point template in crop pixels of an ``size x size`` crop: (68, 2) float32."""
    centre = np.array([(size - 1) / 2, TEMPLATE_CENTRE_Y * size - 0.5])
    return (_UNIT * (TEMPLATE_FACE_WIDTH * size) + centre).astype(np.float32)


def stable_points(landmarks: np.ndarray) -> np.ndarray:
    """The points the alignment fits: left eye centre, right eye centre, mouth centre.

    Args:
        landmarks: (..., 68, 2).

    Returns:
        (..., 3, 2).
    """
    lm = np.asarray(landmarks)
    return np.stack(
        [
            lm[..., LEFT_EYE, :].mean(axis=-2),
            lm[..., RIGHT_EYE, :].mean(axis=-2),
            mouth_centre(lm),
        ],
        axis=-2,
    )


def mouth_centre(landmarks: np.ndarray) -> np.ndarray:
    """Mean of the outer-lip points (48-59): (..., 68, 2) -> (..., 2)."""
    return np.asarray(landmarks)[..., OUTER_LIPS, :].mean(axis=-2)


def usable_frames(landmarks: np.ndarray, min_distance: float = 1.0) -> np.ndarray:
    """Frames whose stable points can define a transform: finite, eyes and mouth apart.

    Args:
        landmarks: (T, 68, 2).

    Returns:
        (T,) bool.
    """
    pts = stable_points(np.asarray(landmarks, dtype=np.float64))
    eyes = np.linalg.norm(pts[:, 1] - pts[:, 0], axis=-1)
    mouth = np.linalg.norm(pts[:, 2] - (pts[:, 0] + pts[:, 1]) / 2, axis=-1)
    finite = np.isfinite(pts).all(axis=(1, 2))
    with np.errstate(invalid="ignore"):
        return finite & (eyes >= min_distance) & (mouth >= min_distance)


def template_mouth_centre(size: int) -> np.ndarray:
    """Where the mouth centre sits in an ``size x size`` crop: (2,) float32."""
    return mouth_centre(template_points(size)).astype(np.float32)


def template_params(size: int) -> dict[str, Any]:
    """The template as ``meta.json`` records it."""
    return {
        "name": TEMPLATE_NAME,
        "size": int(size),
        "points": np.round(template_points(size).astype(np.float64), 3).tolist(),
        "stable_points": "left eye centre (36-41), right eye centre (42-47), "
        "mouth centre (48-59), weighted least-squares similarity",
        "stable_weights": STABLE_WEIGHTS.tolist(),
        "face_width": TEMPLATE_FACE_WIDTH,
        "centre_y": TEMPLATE_CENTRE_Y,
        "source": "OpenFace align_dlib mean face, symmetrised",
    }


def similarity_transform(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991, reflection excluded) mapping ``src`` onto ``dst``.

    Args:
        src, dst: (N, 2) corresponding points, N >= 2.
        weights: (N,) non-negative point weights (default: all equal).

    Returns:
        (2, 3) float64 matrix ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    sc, dc = src - mu_s, dst - mu_d
    var_s = (w * (sc**2).sum(axis=1)).sum()
    cov = (dc * w[:, None]).T @ sc
    u, s, vt = np.linalg.svd(cov)
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / var_s) if var_s > 0 else 1.0
    out = np.empty((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def _similarity_params(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-frame weighted least-squares similarity as (a, b, tx, ty).

    ``x' = a x - b y + tx``, ``y' = b x + a y + ty``: in complex numbers ``z' = (a + ib) z + t``,
    whose weighted least-squares solution is closed-form (the same as :func:`similarity_transform`).

    Args:
        src: (T, N, 2); dst: (N, 2); weights: (N,).
    """
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    zs = src[..., 0] + 1j * src[..., 1]  # (T, N)
    zd = dst[:, 0] + 1j * dst[:, 1]  # (N,)
    ms, md = (zs * w).sum(axis=1, keepdims=True), (zd * w).sum()
    cs, cd = zs - ms, zd - md
    a = (w * np.conj(cs) * cd).sum(axis=1) / np.maximum((w * np.abs(cs) ** 2).sum(axis=1), 1e-12)
    t = md - a * ms[:, 0]
    return np.stack([a.real, a.imag, t.real, t.imag], axis=1)


def _params_to_matrices(p: np.ndarray) -> np.ndarray:
    a, b, tx, ty = p.T
    return np.stack([np.stack([a, -b, tx], 1), np.stack([b, a, ty], 1)], 1)  # (T, 2, 3)


def clip_transforms(
    landmarks: np.ndarray, valid: np.ndarray, size: int, sigma: float = 2.0
) -> np.ndarray:
    """Temporally smoothed per-frame transforms from frame pixels to crop pixels.

    Frames without valid landmarks take their parameters from the valid frames around them.

    Args:
        landmarks: (T, 68, 2) frame pixels; valid: (T,) bool, at least one True.
        sigma: Gaussian smoothing of the transform parameters over time, in frames (0: none).

    Returns:
        (T, 2, 3) float64.
    """
    valid = np.asarray(valid, dtype=bool)
    if not valid.any():
        raise ValueError("no frame has valid landmarks to align")
    dst = stable_points(template_points(size)).astype(np.float64)
    src = stable_points(np.asarray(landmarks, np.float64))
    params = _similarity_params(src, dst, STABLE_WEIGHTS)
    idx = np.flatnonzero(valid)
    if len(idx) < len(valid):
        frames = np.arange(len(valid))
        params = np.stack([np.interp(frames, idx, params[idx, k]) for k in range(4)], axis=1)
    if sigma > 0 and len(params) > 1:
        params = gaussian_filter1d(params, sigma, axis=0, mode="nearest")
    return _params_to_matrices(params)


def apply_transforms(points: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """(T, N, 2) points through (T, 2, 3) transforms -> (T, N, 2) float32."""
    pts = np.asarray(points, dtype=np.float64)
    out = np.einsum("tij,tnj->tni", matrices[:, :, :2], pts) + matrices[:, None, :, 2]
    return out.astype(np.float32)


def _to_normalised(width: float, height: float) -> np.ndarray:
    """3x3 map from pixel coordinates (centres at integers) to grid_sample's [-1, 1] coordinates."""
    return np.array([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1]])


def warp_frames(
    frames: np.ndarray, matrices: np.ndarray, size: int, chunk: int = 256
) -> np.ndarray:
    """Warp every frame into an ``size x size`` crop (bilinear, border pixels repeated).

    Args:
        frames: (T, H, W, 3) uint8; matrices: (T, 2, 3) frame pixels -> crop pixels.

    Returns:
        (T, size, size, 3) uint8.
    """
    import torch
    import torch.nn.functional as F

    num, height, width = frames.shape[:3]
    out = np.empty((num, size, size, 3), dtype=np.uint8)
    scale = float(np.median(np.hypot(matrices[:, 0, 0], matrices[:, 1, 0])))
    # Shrinking: downscale with an antialiasing filter first, so that the
    # bilinear warp then samples at about one source pixel per crop pixel.
    pre = scale if scale < PRE_DOWNSCALE_BELOW else 1.0
    h2, w2 = max(1, round(height * pre)), max(1, round(width * pre))
    # theta: crop [-1, 1] -> crop pixels -> frame pixels -> pre-scaled pixels -> frame [-1, 1]
    full = np.zeros((num, 3, 3))
    full[:, :2] = matrices
    full[:, 2, 2] = 1.0
    rescale = np.array(
        [[w2 / width, 0, (w2 / width - 1) / 2], [0, h2 / height, (h2 / height - 1) / 2], [0, 0, 1]]
    )
    theta = (
        _to_normalised(w2, h2)
        @ rescale
        @ np.linalg.inv(full)
        @ np.linalg.inv(_to_normalised(size, size))
    )[:, :2]
    with torch.no_grad():
        for s in range(0, num, chunk):
            e = min(num, s + chunk)
            img = torch.from_numpy(frames[s:e]).permute(0, 3, 1, 2)  # channels-last uint8 view
            if pre < 1.0:  # uint8 channels-last antialiased resize is torch's fast path
                img = F.interpolate(
                    img, size=(h2, w2), mode="bilinear", align_corners=False, antialias=True
                )
            img = img.contiguous().float()
            grid = F.affine_grid(
                torch.from_numpy(theta[s:e]).float(), [e - s, 3, size, size], align_corners=False
            )
            res = F.grid_sample(
                img, grid, mode="bilinear", padding_mode="border", align_corners=False
            )
            out[s:e] = res.add_(0.5).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def align_clip(
    frames: np.ndarray,
    landmarks: np.ndarray,
    valid: np.ndarray,
    size: int = 128,
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Align and crop a clip to the template.

    Args:
        frames: (T, H, W, 3) uint8; landmarks: (T, 68, 2) frame pixels; valid: (T,) bool.
        size: crop size in pixels.
        sigma: temporal smoothing of the transform, in frames.

    Returns:
        crops (T, size, size, 3) uint8 and landmarks (T, 68, 2) float32 in crop pixels.
    """
    matrices = clip_transforms(landmarks, valid, size, sigma)
    return warp_frames(frames, matrices, size), apply_transforms(landmarks, matrices)
