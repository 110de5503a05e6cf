"""68-point face landmarks per frame, and their clean-up over time.

video.decode_clip (25 fps frames) -> **landmarks** (backend, fill_gaps, smooth) -> align -> writer

Three backends, chosen with ``prepare --landmarks``:

* ``fan``: face-alignment's S3FD detector and 2D FAN (the field's standard), batched, on the CPU
  or ``--device cuda``. Weights are read from the torch hub cache (``torch.hub.get_dir()/
  checkpoints``) under the file names of face-alignment's own download URLs; when one is missing
  a :class:`~talking_faces.errors.MissingWeightsError` names it and the folder, and nothing is
  downloaded. Detection runs on batches of frames; with several faces in a frame the largest box
  wins and FAN runs on that face only.
* ``dlib``: dlib's CNN (MMOD) face detector, or its HOG detector, and its 68-point shape
  predictor, frame by frame on the CPU. The two ``.dat`` files are the registry assets
  ``dlib-mmod-detector`` and ``dlib-shape-68`` (``talking-faces weights --fetch``); with several
  faces the largest box wins. The 68-point model was trained on iBUG 300-W, whose licence excludes
  commercial use: not for commercial products.
* ``sidecar``: landmarks shipped beside the clips (``<stem>.landmarks.npz``, as the synthetic corpus
  writes them), resampled in time like the frames.

Frames without a face are marked invalid. :func:`fill_gaps` interpolates short runs of them,
:func:`smooth` applies a Gaussian over time that ignores invalid frames. Landmarks are ``(x, y)``
in pixels of the frame, iBUG 68-point order.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import inspect
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from scipy.ndimage import gaussian_filter1d

from talking_faces.data.clips import ClipSkipped, RawClip
from talking_faces.errors import MissingWeightsError, UserError
from talking_faces.names import DLIB_BOX_MODES, FPS
from talking_faces.utils.io import sha256_file, sha256_json

NUM_LANDMARKS = 68
BACKENDS: tuple[str, ...] = ("sidecar", "fan", "dlib")


class LandmarkBackend(abc.ABC):
    """Finds 68 landmarks in every frame of a clip.

    Attributes:
        name: the backend's name as ``prepare --landmarks`` spells it.
        weights_sha256: sha256 identifying the network weights used (None without weights).
    """

    name: str = ""
    weights_sha256: str | None = None

    @abc.abstractmethod
    def __call__(
        self, frames: np.ndarray, raw: RawClip, source_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks of every frame.

        Args:
            frames: (T, H, W, 3) uint8 RGB at 25 fps.
            raw: the clip the frames were decoded from.
            source_index: (T,) the source-video frame behind each frame, when it was resampled.

        Returns:
            landmarks (T, 68, 2) float32 in frame pixels, and valid (T,) bool (a face was found).
        """

    def describe(self) -> dict[str, Any]:
        """What ``meta.json`` records about the backend."""
        return {"backend": self.name, "weights_sha256": self.weights_sha256}


# ------------------------------------------------------------------------------------ sidecar


class SidecarLandmarks(LandmarkBackend):
    """Landmarks read from ``<stem>.landmarks.npz`` beside the clip (no network involved).

    The file holds ``landmarks`` (N, 68, 2) float32 in source-video pixels, ``valid`` (N,) bool and
    ``fps``, with N the source video's frame count. When the video was resampled to 25 fps the
    landmarks are picked with the same source-frame index as the frames.
    """

    name = "sidecar"
    weights_sha256 = None

    def __call__(
        self, frames: np.ndarray, raw: RawClip, source_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if raw.sidecar is None or not Path(raw.sidecar).is_file():
            raise ClipSkipped(
                "no-sidecar",
                f"{raw.clip_id}: no {Path(raw.video).stem}.landmarks.npz beside {raw.video}",
            )
        path = Path(raw.sidecar)
        try:
            with np.load(path, allow_pickle=False) as npz:
                lm = np.asarray(npz["landmarks"], dtype=np.float32)
                valid = np.asarray(npz["valid"], dtype=bool) if "valid" in npz else None
                fps = float(npz["fps"]) if "fps" in npz else float(FPS)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise ClipSkipped("bad-sidecar", f"{path.name}: {exc}") from exc
        if lm.ndim != 3 or lm.shape[1:] != (NUM_LANDMARKS, 2):
            raise ClipSkipped("bad-sidecar", f"{path.name}: landmarks of shape {lm.shape}")
        if valid is None:
            valid = np.ones(len(lm), dtype=bool)
        if valid.shape != (len(lm),):
            raise ClipSkipped("bad-sidecar", f"{path.name}: valid of shape {valid.shape}")
        num = len(frames)
        index = self._index(len(lm), num, fps, source_index)
        if index is None:
            raise ClipSkipped(
                "bad-sidecar",
                f"{path.name}: {len(lm)} landmark frames at {fps:g} fps do not cover "
                f"{num} video frames at {FPS} fps",
            )
        lm, valid = lm[index], valid[index]
        valid = valid & np.isfinite(lm).all(axis=(1, 2))
        lm = np.where(np.isfinite(lm), lm, 0.0).astype(np.float32)
        return lm, valid

    @staticmethod
    def _index(
        count: int, num: int, fps: float, source_index: np.ndarray | None
    ) -> np.ndarray | None:
        if count == 0:
            return None
        if (
            source_index is not None
            and len(source_index) == num
            and int(source_index.max()) < count <= int(source_index.max()) + 2
        ):
            return np.asarray(source_index, dtype=np.int64)
        if count == num:
            return np.arange(num)
        # Different rate: nearest sidecar frame in time; the spans must agree within two frames.
        if fps <= 0 or abs(count / fps - num / FPS) > 2.0 / FPS:
            return None
        return np.clip(np.round(np.arange(num) * fps / FPS).astype(np.int64), 0, count - 1)


# ---------------------------------------------------------------------------------------- FAN


def fan_weight_files() -> dict[str, tuple[str, str]]:
    """``{"s3fd": (file, url), "2DFAN-4": (file, url)}`` of the installed face-alignment."""
    from face_alignment import api
    from face_alignment.detection.sfd import sfd_detector

    fan_urls: dict[str, Any] = api.models_urls
    if "2DFAN-4" not in fan_urls:  # face-alignment 1.4: URLs keyed by PyTorch version
        fan_urls = next(iter(sorted(fan_urls.items(), reverse=True)))[1]
    out = {}
    for key, url in (("s3fd", sfd_detector.models_urls["s3fd"]), ("2DFAN-4", fan_urls["2DFAN-4"])):
        out[key] = (os.path.basename(urlparse(url).path), url)
    return out


def fan_cache_folder(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder face-alignment reads its weights from: ``<torch hub dir>/checkpoints``."""
    import torch

    return Path(cache_dir if cache_dir is not None else torch.hub.get_dir()) / "checkpoints"


@contextlib.contextmanager
def _hub_dir(cache_dir: str | os.PathLike[str] | None) -> Iterator[None]:
    """Point torch.hub at ``cache_dir`` while face-alignment resolves its weight files."""
    import torch

    if cache_dir is None:
        yield
        return
    # Restore torch.hub's own (private) setting rather than calling set_dir(old): set_dir would
    # pin the folder for the rest of the process and ignore a later $TORCH_HOME.
    old = getattr(torch.hub, "_hub_dir", None)
    torch.hub.set_dir(str(cache_dir))
    try:
        yield
    finally:
        torch.hub._hub_dir = old


class FANLandmarks(LandmarkBackend):
    """face-alignment's S3FD + 2D FAN, batched over frames.

    Args:
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...).
        batch_size: frames per detector/FAN batch.
        cache_dir: the torch hub folder to read weights from (its ``checkpoints/``); default
            ``torch.hub.get_dir()``, i.e. ``$TORCH_HOME/hub`` or ``~/.cache/torch/hub``.

    Raises:
        MissingWeightsError: a weight file is not in the cache folder.
        UserError: ``device`` is a CUDA device but none is available.
    """

    name = "fan"

    def __init__(
        self,
        device: str = "cpu",
        batch_size: int = 16,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {device} asked for but no CUDA device is available here")
        folder = fan_cache_folder(cache_dir)
        files = fan_weight_files()
        for fname, url in files.values():
            if not (folder / fname).is_file():
                raise MissingWeightsError(
                    f"face-alignment weights missing: {fname} not in {folder}; "
                    f"download {url} there (no network here)"
                )
        s3fd_path = folder / files["s3fd"][0]
        self.weights_files = {fname: sha256_file(folder / fname) for fname, _ in files.values()}
        self.weights_sha256 = sha256_json(self.weights_files)
        self.device = device
        self.batch_size = int(batch_size)

        from face_alignment import FaceAlignment, LandmarksType

        kwargs: dict[str, Any] = dict(
            device=device,
            face_detector="sfd",
            face_detector_kwargs={"path_to_detector": str(s3fd_path)},
            flip_input=False,
        )
        accepted = inspect.signature(FaceAlignment.__init__).parameters
        if "compile" in accepted:
            kwargs["compile"] = False
        if "max_batch_size" in accepted:
            kwargs["max_batch_size"] = self.batch_size
        with _hub_dir(cache_dir):
            self._fa = FaceAlignment(LandmarksType.TWO_D, **kwargs)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": self.weights_files}

    def __call__(
        self, frames: np.ndarray, raw: RawClip, source_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        num = len(frames)
        landmarks = np.zeros((num, NUM_LANDMARKS, 2), dtype=np.float32)
        valid = np.zeros(num, dtype=bool)
        for start in range(0, num, self.batch_size):
            chunk = frames[start : start + self.batch_size]
            batch = torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 3, 1, 2))).float()
            batch = batch.to(self.device)
            # Detect on the whole batch, keep the largest face per frame, and run FAN on it only.
            boxes = [_largest(b) for b in self._fa.face_detector.detect_from_batch(batch)]
            if not any(len(b) for b in boxes):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "No faces were detected." per empty frame
                preds = self._fa.get_landmarks_from_batch(batch, detected_faces=boxes)
            for i, pts in enumerate(preds or []):
                pts = np.asarray(pts, dtype=np.float32)
                if pts.shape == (NUM_LANDMARKS, 2) and np.isfinite(pts).all():
                    landmarks[start + i] = pts
                    valid[start + i] = True
        return landmarks, valid


def _largest(boxes: Any) -> list[np.ndarray]:
    """The largest of a frame's detections ``[x1, y1, x2, y2, score]``, as a list of 0 or 1."""
    if boxes is None or len(boxes) == 0:
        return []
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    return [np.asarray(boxes[int(np.argmax(areas))])]


# --------------------------------------------------------------------------------------- dlib

#: dlib's face detectors: ``cnn`` (MMOD, the ``dlib-mmod-detector`` asset), ``hog`` (built in)
DLIB_DETECTORS: tuple[str, ...] = ("cnn", "hog")
#: frames whose shorter side is below this are upsampled (doubled) before detection, up to twice:
#: both detectors miss faces smaller than about 80 pixels at the original size
DLIB_MIN_SIDE = 256


def _dlib_upsample(height: int, width: int) -> int:
    """How many times dlib doubles a frame of this size before detection (0, 1 or 2)."""
    side, times = min(height, width), 0
    while side < DLIB_MIN_SIDE and times < 2:
        side, times = side * 2, times + 1
    return times


@functools.lru_cache(maxsize=4)
def _dlib_model(kind: str, *path: str) -> Any:
    """dlib's ``kind`` (``shape_predictor``, ``cnn_face_detection_model_v1`` of a file,
    ``get_frontal_face_detector``) built once per process: the 68-point file is 99 MB and takes
    about a second to read, the HOG detector about 0.6 s to build, and an ``evaluate`` with dlib's
    LMD and dlib's face embedding builds two scorers on them. The assets are pinned by sha256, so
    a path's file does not change under a running process; predicting does not change dlib's
    models."""
    import dlib

    return getattr(dlib, kind)(*path)


class DlibLandmarks(LandmarkBackend):
    """dlib's face detector and 68-point shape predictor, frame by frame on the CPU.

    The largest detected box of each frame (by area) goes to ``dlib.shape_predictor``; its 68
    points are in iBUG 68-point order (dlib's own). A frame without a face is marked invalid and
    left to :func:`fill_gaps`, as with ``fan``. The model files are the registry assets
    ``dlib-shape-68`` (``shape_predictor_68_face_landmarks.dat``) and, for ``cnn``,
    ``dlib-mmod-detector`` (``mmod_human_face_detector.dat``); their pinned sha256s are what
    :meth:`describe` records (they are checked against the table when looked up, not rehashed).

    Licence: the 68-point model was trained on the iBUG 300-W data set, whose licence excludes
    commercial use; landmarks (and datasets prepared) with this backend are not for commercial
    products.

    Args:
        detector: ``"cnn"`` (MMOD, default: finds the face, not the faces on badges and patches,
            and turned faces) or ``"hog"`` (``dlib.get_frontal_face_detector()``, much faster,
            frontal faces only).
        upsample: times each frame is doubled before detection; default by frame size (frames
            whose shorter side is under :data:`DLIB_MIN_SIDE` pixels are doubled, up to twice).
        device: ``"cpu"``; CUDA only where dlib was built with it (the ``dlib-bin`` wheel is not).

    Raises:
        MissingWeightsError: a model file is not in the asset cache (one line naming
            ``talking-faces weights --fetch``).
        UserError: an unknown detector, or a CUDA device with a dlib built without CUDA.
    """

    name = "dlib"

    def __init__(
        self, detector: str = "cnn", upsample: int | None = None, device: str = "cpu"
    ) -> None:
        import dlib

        from talking_faces.utils.assets import asset_path, get_asset

        if detector not in DLIB_DETECTORS:
            raise UserError(
                f"unknown dlib face detector {detector!r}; "
                f"choose one of {', '.join(DLIB_DETECTORS)}"
            )
        if device.startswith("cuda") and not getattr(dlib, "DLIB_USE_CUDA", False):
            raise UserError(
                f"--device {device}: this dlib was built without CUDA; the dlib landmark backend "
                "runs on the CPU (drop --device, or use --landmarks fan)"
            )
        if upsample is not None and upsample < 0:
            raise UserError(f"dlib upsample must be 0 or more, got {upsample}")
        names = ("dlib-shape-68",) + (("dlib-mmod-detector",) if detector == "cnn" else ())
        paths = {n: asset_path(n) for n in names}  # MissingWeightsError, one line
        self.weights_files = {paths[n].name: get_asset(n).members[0].sha256 for n in names}
        self.weights_sha256 = sha256_json(self.weights_files)
        self.detector = detector
        self.upsample = upsample
        self._predictor = _dlib_model("shape_predictor", str(paths["dlib-shape-68"]))
        if detector == "cnn":
            self._detect = _dlib_model(
                "cnn_face_detection_model_v1", str(paths["dlib-mmod-detector"])
            )
        else:
            self._detect = _dlib_model("get_frontal_face_detector")

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "weights": self.weights_files,
            "detector": self.detector,
            "upsample": self.upsample,
        }

    def boxes(self, frame: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Every face box ``(left, top, right, bottom)`` the detector finds in one RGB frame."""
        image = np.ascontiguousarray(frame, dtype=np.uint8)
        times = self.upsample if self.upsample is not None else _dlib_upsample(*image.shape[:2])
        found = self._detect(image, times)
        rects = [d.rect for d in found] if self.detector == "cnn" else list(found)
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]

    def largest_box(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        """The largest face box (by area) the detector finds in one frame, or None."""
        boxes = self.boxes(frame)
        if not boxes:
            return None
        return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))

    def call_boxes(
        self, frames: Sequence[np.ndarray] | np.ndarray, mode: str = "detect"
    ) -> list[tuple[int, int, int, int] | None]:
        """The box the shape predictor reads in each frame (:data:`DLIB_BOX_MODES`): ``detect``
        runs the detector on every frame; ``aligned`` (for aligned face crops, where the face
        box is the same in every frame) runs it until it finds a face and gives that box to
        every frame, those before it included."""
        if mode == "detect":
            return [self.largest_box(f) for f in frames]
        if mode != "aligned":
            raise UserError(f"unknown dlib box mode {mode!r}; choose one of {DLIB_BOX_MODES}")
        for f in frames:
            box = self.largest_box(f)
            if box is not None:
                return [box] * len(frames)
        return [None] * len(frames)

    def shape(
        self, frame: np.ndarray, box: tuple[int, int, int, int] | None | str = "detect"
    ) -> Any | None:
        """dlib's ``full_object_detection`` (68 parts) of the face in ``box`` of one frame (RGB,
        or grey ``H,W``; ``"detect"``: the largest face the detector finds), or None: what dlib's
        face embedding takes with the image."""
        import dlib

        found = self.largest_box(frame) if isinstance(box, str) else box
        if found is None:
            return None
        left, top, right, bottom = found
        image = np.ascontiguousarray(frame, dtype=np.uint8)
        shape = self._predictor(image, dlib.rectangle(left, top, right, bottom))
        return shape if shape.num_parts == NUM_LANDMARKS else None

    def frame(
        self, frame: np.ndarray, box: tuple[int, int, int, int] | None | str = "detect"
    ) -> np.ndarray | None:
        """The 68 points (68, 2) float32 of the face in ``box`` of one frame (RGB, or grey
        ``H,W``; ``"detect"``: the largest face the detector finds), or None."""
        shape = self.shape(frame, box)
        if shape is None:
            return None
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        return pts if np.isfinite(pts).all() else None

    def __call__(
        self, frames: np.ndarray, raw: RawClip, source_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        num = len(frames)
        landmarks = np.zeros((num, NUM_LANDMARKS, 2), dtype=np.float32)
        valid = np.zeros(num, dtype=bool)
        for i in range(num):
            pts = self.frame(frames[i])
            if pts is not None:
                landmarks[i] = pts
                valid[i] = True
        return landmarks, valid


def create_backend(
    name: str, device: str = "cpu", detector: str | None = None, **kwargs: Any
) -> LandmarkBackend:
    """The landmark backend ``prepare --landmarks NAME`` uses (``fan``, ``dlib`` or ``sidecar``);
    ``detector`` is the dlib backend's face detector (``cnn``, ``hog``; None: ``cnn``).

    Raises:
        UserError: an unknown backend, or a face detector for a backend other than dlib.
    """
    if detector is not None and name != "dlib":
        raise UserError(
            f"--face-detector {detector} applies to --landmarks dlib only (got --landmarks {name})"
        )
    if name == "dlib":
        return DlibLandmarks(device=device, detector=detector or "cnn", **kwargs)
    if name == "sidecar":
        return SidecarLandmarks()
    if name == "fan":
        return FANLandmarks(device=device, **kwargs)
    raise UserError(f"unknown landmark backend {name!r}; choose one of {', '.join(BACKENDS)}")


# ------------------------------------------------------------------------------ over time


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of True in ``mask``."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def fill_gaps(
    landmarks: np.ndarray, valid: np.ndarray, max_gap: int
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate runs of at most ``max_gap`` invalid frames.

    Inner gaps are interpolated linearly between the valid frames around them; a gap at the start
    or end of the clip holds the nearest valid frame. Longer gaps stay invalid.

    Args:
        landmarks: (T, 68, 2); valid: (T,) bool.

    Returns:
        landmarks (T, 68, 2) float32 and the new valid mask (T,) bool.
    """
    lm = np.array(landmarks, dtype=np.float32, copy=True)
    ok = np.array(valid, dtype=bool, copy=True)
    num = len(ok)
    if not ok.any():
        return lm, ok
    for a, b in _runs(~ok):
        if b - a > max_gap:
            continue
        if a == 0:
            lm[a:b] = lm[b]
        elif b == num:
            lm[a:b] = lm[a - 1]
        else:
            w = (np.arange(a, b) - (a - 1)) / (b - (a - 1))
            lm[a:b] = (1 - w)[:, None, None] * lm[a - 1] + w[:, None, None] * lm[b]
        ok[a:b] = True
    return lm, ok


def longest_gap(valid: np.ndarray) -> tuple[int, int]:
    """[start, end) of the longest run of invalid frames ((0, 0) when there is none)."""
    runs = _runs(~np.asarray(valid, dtype=bool))
    return max(runs, key=lambda r: r[1] - r[0]) if runs else (0, 0)


def smooth(landmarks: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over time (``sigma`` in frames) that gives invalid frames no weight.

    Args:
        landmarks: (T, 68, 2); valid: (T,) bool.

    Returns:
        (T, 68, 2) float32; frames with no valid neighbour keep their values.
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    if sigma <= 0 or len(lm) < 2:
        return lm.copy()
    w = np.asarray(valid, dtype=np.float64)
    num = gaussian_filter1d(lm * w[:, None, None], sigma, axis=0, mode="nearest")
    den = gaussian_filter1d(w, sigma, mode="nearest")[:, None, None]
    out = np.where(den > 1e-6, num / np.maximum(den, 1e-6), lm)
    return out.astype(np.float32)
