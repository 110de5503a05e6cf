"""One face image and one speech file to a talking-face video: ``talking-faces generate``.

::

    trained checkpoint (fit) --------------------------------------------------+
    face photo -> landmarks (FAN or a file) -> aligned crop, as prepare makes --+-> **generate**
    speech file -> 16 kHz mono -> features, as prepare makes -> frame windows --+
        -> model.generate, chunk by chunk -> mp4 with the speech muxed in

The face is prepared exactly as ``prepare`` prepares a video frame, with the same code
(:mod:`talking_faces.data.prepare.landmarks`, :mod:`talking_faces.data.prepare.align`): 68 landmarks
from face-alignment's S3FD + FAN (weights from the torch hub cache; the largest face wins), from
dlib's CNN detector and 68-point shape predictor (``--landmark-backend dlib``: the registry assets
``dlib-mmod-detector`` and ``dlib-shape-68``, ``talking-faces weights --fetch``; trained on iBUG
300-W, not for commercial use), or read from a file (``--landmarks``), then the similarity
transform to the template and the crop at the model's size. ``--aligned`` takes an image that
is already such a crop (square; resized to the model's size).

Landmark files (``--landmarks FILE``) hold 68 ``(x, y)`` points in pixels of the image, iBUG
order: ``.npy`` (an array ``68,2``, or ``N,68,2`` with ``--landmarks-frame`` choosing one),
``.npz`` (the synthetic corpus' ``<clip>.landmarks.npz`` sidecars: ``landmarks`` ``N,68,2`` with
``valid``; or a single array), or ``.json`` (a list of 68 ``[x, y]`` pairs, or an object whose
``landmarks`` is one, or a list of such lists).

The speech is any file PyAV reads (wav, flac, mp3, m4a, the audio of an mp4, ...), averaged to
mono and resampled to 16 kHz as ``prepare`` does
(:func:`talking_faces.data.prepare.video.read_audio_file` and ``to_mono_16k``), cut
into ``T = round(seconds * 25)`` frames, and featurised by
:func:`talking_faces.data.prepare.audio.prepared_features` with the parameters recorded in the
checkpoint's ``dataset_meta`` (the training dataset's ``meta.json``; a checkpoint whose dataset
used other parameters than this version computes is refused; features added after its dataset
was prepared are not compared). Per-frame windows are those of
the training data (:func:`talking_faces.data.dataset.audio_windows` with the run config's
``data.audio_feature / audio_window / audio_pad / drop_c0``).

Long audio is generated in chunks of ``chunk_frames`` frames (75 by default: 3 s, the length of
the clips methods are scored on), each written to the mp4 before the next is generated, so memory
does not grow with the audio (the waveform and its features, a few MB a minute, are held whole).
Chunk boundaries: the model API takes an identity image and audio windows, not a recurrent state,
so every chunk is one ``model.generate`` call that starts again from the identity image; an
autoregressive method (``ldm``) restarts its recurrence there. The audio windows of the frames on
either side of a boundary still reach across it (features are computed on the whole file first),
so the mouth keeps following the speech; what can show at a boundary is the face returning to
the identity image's pose and expression. One ``torch.Generator`` seeded with ``seed`` draws every
chunk's noise in turn, so the same seed and chunk size give the same video.

``K = num_samples`` samples (stochastic methods only) are drawn in one ``generate`` call per chunk
and written as ``OUT_1.mp4 ... OUT_K.mp4``, or side by side in one video (``side_by_side``).
Every mp4 is written atomically and carries the whole input audio (AAC), so its duration is the
audio's within half a frame.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from talking_faces.errors import UserError
from talking_faces.names import FPS, META_FILE, SAMPLES_PER_FRAME, last_checkpoint

if TYPE_CHECKING:  # imported where used: it pulls in torch, which argument checks do without
    from talking_faces.data.dataset import WindowConfig

log = logging.getLogger("talking_faces.inference.generate")

#: frames per ``model.generate`` call (3 s at 25 fps)
CHUNK_FRAMES = 3 * FPS
LANDMARK_SUFFIXES = (".npy", ".npz", ".json")
#: the backends that find a face photo's landmarks (``--landmark-backend``; prepare's backends)
LANDMARK_BACKENDS = ("fan", "dlib")
AUDIO_HINT = "give a speech file PyAV reads (wav, flac, mp3, m4a, mp4, ...)"


@dataclass
class GenerateRequest:
    """What ``talking-faces generate`` was asked to do (see the module docstring)."""

    ckpt: str
    image: str
    audio: str
    out: str
    num_samples: int = 1
    side_by_side: bool = False
    aligned: bool = False
    landmarks: str | None = None
    landmarks_frame: int = 0
    landmark_backend: str = "fan"
    device: str = "cpu"
    seed: int = 0
    chunk_frames: int = CHUNK_FRAMES


def check_request(req: GenerateRequest) -> None:
    """Refuse arguments that cannot work, before anything heavy is imported or loaded.

    Raises:
        UserError: a missing input file, an output that is not ``.mp4``, a bad number.
    """
    if not Path(req.ckpt).is_file():
        raise UserError(
            f"checkpoint {req.ckpt} does not exist; pass the .ckpt a `fit` run wrote "
            f"({last_checkpoint('RUN')})"
        )
    if not Path(req.image).is_file():
        raise UserError(f"image {req.image} does not exist; give a face photo (PNG or JPEG)")
    if not Path(req.audio).is_file():
        raise UserError(f"audio {req.audio} does not exist; {AUDIO_HINT}")
    if Path(req.out).suffix.lower() != ".mp4":
        raise UserError(f"--out must name an .mp4 file, got {req.out}")
    if req.aligned and req.landmarks is not None:
        raise UserError("--aligned takes the image as it is: drop --landmarks, or --aligned")
    if req.landmarks is not None:
        path = Path(req.landmarks)
        if not path.is_file():
            raise UserError(f"landmarks file {req.landmarks} does not exist")
        if path.suffix.lower() not in LANDMARK_SUFFIXES:
            raise UserError(
                f"landmarks file {req.landmarks}: unknown format; give a "
                f"{', '.join(LANDMARK_SUFFIXES)} file with 68 (x, y) points in image pixels"
            )
    if req.num_samples < 1:
        raise UserError(f"--samples must be at least 1, got {req.num_samples}")
    if req.chunk_frames < 1:
        raise UserError(f"--chunk-frames must be at least 1, got {req.chunk_frames}")
    if req.landmarks_frame < 0:
        raise UserError(f"--landmarks-frame must be 0 or more, got {req.landmarks_frame}")
    if req.landmark_backend not in LANDMARK_BACKENDS:
        raise UserError(
            f"unknown landmark backend {req.landmark_backend!r}; "
            f"choose one of {', '.join(LANDMARK_BACKENDS)}"
        )


def output_paths(req: GenerateRequest) -> list[Path]:
    """``OUT`` for one sample or a side-by-side video, else ``OUT_1.mp4 ... OUT_K.mp4``."""
    out = Path(req.out)
    if req.num_samples == 1 or req.side_by_side:
        return [out]
    return [out.with_name(f"{out.stem}_{k}{out.suffix}") for k in range(1, req.num_samples + 1)]


# ---------------------------------------------------------------------------------- the face
def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as ``H,W,3`` uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(
            f"cannot read image {path} ({type(exc).__name__}); give a PNG or JPEG face photo"
        ) from None


def read_landmarks(path: str | os.PathLike[str], frame: int = 0) -> np.ndarray:
    """68 points from a landmarks file (formats in the module docstring): ``68,2`` float32.

    ``frame`` picks one set from a file holding several (a sidecar's ``N,68,2``).
    """
    path = Path(path)
    valid = None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                data = data["landmarks"]
            points = np.asarray(data, dtype=np.float32)
        elif path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                names = list(npz.files)
                key = "landmarks" if "landmarks" in names else names[0] if len(names) == 1 else None
                if key is None:
                    raise KeyError(f"no 'landmarks' array among {', '.join(names)}")
                points = np.asarray(npz[key], dtype=np.float32)
                if "valid" in names:
                    valid = np.asarray(npz["valid"], dtype=bool).reshape(-1)
        else:
            points = np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise UserError(f"cannot read landmarks from {path}: {exc}".splitlines()[0]) from None
    if points.ndim == 3:
        if frame >= len(points):
            raise UserError(
                f"{path} holds {len(points)} sets of landmarks; --landmarks-frame {frame} is "
                f"past the last ({len(points) - 1})"
            )
        if valid is not None and len(valid) == len(points) and not valid[frame]:
            raise UserError(f"{path} marks frame {frame} as having no face; pick another frame")
        points = points[frame]
    if points.shape != (68, 2):
        raise UserError(
            f"{path}: expected 68 (x, y) landmarks (68x2 or Nx68x2), got an array of shape "
            f"{tuple(points.shape)}"
        )
    if not np.isfinite(points).all():
        raise UserError(f"{path}: the landmarks hold NaN or infinite values")
    return points


def detect_landmarks(
    image: np.ndarray, name: str, device: str = "cpu", backend_name: str = "fan"
) -> np.ndarray:
    """68 landmarks of the largest face by ``prepare``'s FAN (or dlib) backend: ``68,2`` float32.

    Raises:
        MissingWeightsError: FAN or S3FD weights are not in the torch hub cache, or dlib's model
            files are not in the asset cache.
        UserError: no face was found.
    """
    from talking_faces.data.clips import RawClip
    from talking_faces.data.prepare.landmarks import (
        DlibLandmarks,
        FANLandmarks,
        LandmarkBackend,
    )

    backend: LandmarkBackend
    if backend_name == "dlib":
        backend = DlibLandmarks()  # CPU only; --device is the model's
    else:
        backend = FANLandmarks(device=device, batch_size=1)
    points, found = backend(image[None], RawClip(clip_id=name, speaker="", video=Path(name)))
    if not found[0]:
        raise UserError(
            f"no face found in {name}; give a photo with one face, its 68 landmarks with "
            "--landmarks FILE, or an aligned square crop with --aligned"
        )
    return points[0]


def align_face(
    image: np.ndarray, points: np.ndarray, size: int, meta: dict[str, Any], name: str
) -> np.ndarray:
    """The crop ``prepare`` makes of a frame with these landmarks: ``size,size,3`` uint8."""
    from talking_faces.data.prepare import align

    template = (meta.get("template") or {}).get("name", align.TEMPLATE_NAME)
    if template != align.TEMPLATE_NAME:
        raise UserError(
            f"the model was trained on faces aligned to template {template!r}, which this "
            f"version does not have ({align.TEMPLATE_NAME!r}); align the face yourself and pass "
            "the crop with --aligned"
        )
    if not align.usable_frames(points[None])[0]:
        raise UserError(
            f"no usable face in {name}: its eye and mouth landmarks coincide; check the landmarks"
        )
    sigma = float((meta.get("alignment") or {}).get("smoothing_sigma_frames", 0.0))
    crops, _ = align.align_clip(image[None], points[None], np.ones(1, dtype=bool), size, sigma)
    return crops[0]


def face_crop(req: GenerateRequest, size: int, meta: dict[str, Any]) -> np.ndarray:
    """The identity image as the model sees it: ``size,size,3`` uint8 (see the module docstring).

    Raises:
        UserError: an unreadable image or landmarks file, no face, ``--aligned`` with an image
            that is not square.
    """
    image = read_image(req.image)
    if req.aligned:
        h, w = image.shape[:2]
        if h != w:
            raise UserError(
                f"--aligned takes a square face crop, but {req.image} is {w}x{h}; crop it "
                "square, or drop --aligned to align the face with landmarks"
            )
        if h == size:
            return image
        from PIL import Image

        resized = Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS)
        return np.array(resized, dtype=np.uint8)
    if req.landmarks is not None:
        points = read_landmarks(req.landmarks, req.landmarks_frame)
    else:
        points = detect_landmarks(image, req.image, req.device, req.landmark_backend)
    return align_face(image, points, size, meta, req.image)


# --------------------------------------------------------------------------------- the speech
def read_speech(path: str | os.PathLike[str]) -> np.ndarray:
    """An audio file (or a video's audio stream) as 16 kHz mono float32 in [-1, 1]: ``S``."""
    from talking_faces.data.clips import ClipSkipped
    from talking_faces.data.prepare.video import read_audio_file, to_mono_16k

    try:
        samples, rate = read_audio_file(Path(path))
    except ClipSkipped as exc:
        detail = exc.detail or exc.reason
        raise UserError(f"cannot read audio {path} ({detail}); {AUDIO_HINT}") from None
    wave = to_mono_16k(samples, rate)
    if len(wave) == 0:
        raise UserError(f"audio {path} holds no samples; {AUDIO_HINT}")
    return np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False)


def check_audio_params(meta: dict[str, Any], ckpt: str) -> int:
    """The dataset's log-mel band count, after checking that this version's feature code
    computes what the dataset recorded (``meta.json``'s ``audio``)."""
    from talking_faces.data.prepare.audio import LOGMEL_PARAMS, audio_feature_params

    recorded = meta.get("audio") or {}
    n_mels = int((recorded.get("logmel") or {}).get("n_mels", LOGMEL_PARAMS["n_mels"]))
    expected = json.loads(json.dumps(audio_feature_params(n_mels)))
    # a feature this version computes but the dataset lacked (added since) is no difference:
    # the model was trained without it
    differ = sorted(k for k in recorded if recorded[k] != expected.get(k))
    if differ:
        raise UserError(
            f"{ckpt} was trained on audio features made with other parameters "
            f"({', '.join(differ)}) than this version of talking_faces computes; generate with "
            f"the version that prepared its dataset ({meta.get('version', 'unknown')})"
        )
    return n_mels


def speech_features(
    wave: np.ndarray, n_mels: int, audio_feature: str, drop_c0: bool, audio_pad: str = "edge"
) -> tuple[np.ndarray, int]:
    """``(features N,F at 100 Hz, T frames)``: ``prepare``'s features of ``T = round(S / 640)``
    frames (the waveform cut or zero-padded to ``640 T`` samples first, as ``prepare`` does), the
    rows the dataset would give :func:`~talking_faces.data.dataset.audio_windows` for this
    ``audio_feature`` / ``audio_pad`` (``mfcc_wavepad`` under ``zero_waveform``)."""
    from talking_faces.data.dataset import select_features
    from talking_faces.data.prepare.audio import prepared_features

    num_frames = max(1, int(np.floor(len(wave) / SAMPLES_PER_FRAME + 0.5)))
    need = num_frames * SAMPLES_PER_FRAME
    fitted = np.zeros(need, np.float32)
    fitted[: min(need, len(wave))] = wave[:need]
    feats = prepared_features(fitted, num_frames, n_mels)
    return select_features(feats, audio_feature, drop_c0, audio_pad), num_frames


# ---------------------------------------------------------------------------------- the model
def dataset_meta(model: Any) -> dict[str, Any]:
    """The training dataset's ``meta.json`` saved in the checkpoint (``prepare``'s defaults at
    the model's size for checkpoints written before ``fit`` recorded it)."""
    meta = getattr(model, "dataset_meta", None)
    if meta:
        return dict(meta)
    log.warning(
        "the checkpoint records no dataset %s (written before fit saved it); preparing "
        "the face and audio with prepare's default parameters",
        META_FILE,
    )
    return {"size": int(model.config.image_size)}


def window_config(model: Any) -> WindowConfig:
    """The audio windows the model was trained on (the run config's ``data`` section)."""
    from talking_faces.data.dataset import WindowConfig

    data = dict((getattr(model, "run_config", None) or {}).get("data") or {})
    keys = ("audio_feature", "audio_window", "audio_pad", "drop_c0")
    kwargs = {k: data[k] for k in keys if k in data}
    if getattr(model.config, "audio_window", None):
        kwargs["audio_window"] = int(model.config.audio_window)
    return WindowConfig(**kwargs)


def load_method(ckpt: str) -> Any:
    """A talking-face method from its checkpoint (experts are refused)."""
    from talking_faces.models import TalkingFaceModule
    from talking_faces.registry import load_model

    model = load_model(ckpt)
    if not isinstance(model, TalkingFaceModule):
        raise UserError(
            f"{ckpt} holds the {model.config.name!r} evaluation expert, not a talking-face "
            "method; pass a checkpoint of a method (ldm, ...)"
        )
    return model


# ------------------------------------------------------------------------------- generation
def generate(req: GenerateRequest, model: Any | None = None) -> list[Path]:
    """Write the video(s) ``req`` asks for; return their paths.

    Args:
        req: the request (see :class:`GenerateRequest`).
        model: the method, already loaded (default: loaded from ``req.ckpt``).

    Raises:
        UserError: bad arguments, an unreadable image, audio or landmarks file, no face, FAN
            weights missing, more samples than the method gives.
    """
    import torch

    from talking_faces.data.dataset import audio_windows
    from talking_faces.utils.mp4 import Mp4Writer, side_by_side, to_uint8_video
    from talking_faces.utils.progress import progress

    check_request(req)
    if req.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {req.device} asked for but no CUDA device is available here")
    if model is None:
        model = load_method(req.ckpt)
    model.check_num_samples(req.num_samples)
    model = model.to(req.device).eval()
    meta = dataset_meta(model)
    size = int(model.config.image_size)
    if int(meta.get("size", size)) != size:
        raise UserError(
            f"{req.ckpt}: the model makes {size} px frames but its dataset meta says "
            f"{meta['size']} px crops; the checkpoint is inconsistent"
        )
    window = window_config(model)
    n_mels = check_audio_params(meta, req.ckpt)

    face = face_crop(req, size, meta)
    wave = read_speech(req.audio)
    features, num_frames = speech_features(
        wave, n_mels, window.audio_feature, window.drop_c0, window.audio_pad
    )

    identity = torch.from_numpy(face).permute(2, 0, 1).float().div(255.0)[None].to(req.device)
    generator = torch.Generator(device=req.device).manual_seed(req.seed)
    paths = output_paths(req)
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(
            progress(total=num_frames, desc=f"generate {paths[0].name}", unit="frame")
        )
        writers = [stack.enter_context(Mp4Writer(path, wave)) for path in paths]
        for start in range(0, num_frames, req.chunk_frames):
            frames = np.arange(start, min(start + req.chunk_frames, num_frames))
            audio = audio_windows(features, frames, window.audio_window, window.audio_pad)
            audio_t = torch.from_numpy(audio)[None].to(req.device)  # 1,t,W,F
            with torch.no_grad():
                samples = model.generate(identity, audio_t, req.num_samples, generator=generator)
            samples = samples[0].float().cpu()  # K,t,3,H,W
            if req.side_by_side:
                writers[0].write(to_uint8_video(side_by_side(*samples)))
            else:
                for writer, sample in zip(writers, samples, strict=True):
                    writer.write(to_uint8_video(sample))
            bar.update(len(frames))
    return paths


__all__ = [
    "CHUNK_FRAMES",
    "GenerateRequest",
    "align_face",
    "check_request",
    "face_crop",
    "generate",
    "output_paths",
    "read_landmarks",
    "read_speech",
]
