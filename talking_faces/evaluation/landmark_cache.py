"""The real frames' landmarks, kept between evaluations.

LMD compares the landmarks of the scored frames with those the landmark model finds in the real
frames (``lmd_reference: expert``). The real frames of a test pair are the same in every
evaluation of a dataset (every method, seed, baseline and sweep trial), and so are their
landmarks under one landmark model: ``evaluate`` keeps them in a cache folder and reads them back
instead of running the model again on the real side (the scored side always runs).

An entry is found only by everything that decides its values:

- the landmark model: its record in the results (kind and the sha256 of its weights, dlib's box
  setting) and the batch size it predicts in;
- the code that runs it: :data:`CACHE_VERSION` (raised whenever landmark prediction changes) and
  the package version;
- the arithmetic: torch's version, its CPU kernels (``torch.backends.cpu.get_cpu_capability()``:
  AVX2, AVX512, ...) and its thread count, so an entry is what this process would compute, to the
  bit;
- the frames: a 128-bit xxHash (XXH3) of their bytes, with their shape and dtype.

Only CPU evaluations use it (on a GPU the model costs less than moving the frames to hash them).
The folder is ``$TALKING_FACES_LANDMARK_CACHE``, else ``$XDG_CACHE_HOME/talking_faces/landmarks``
(default ``~/.cache/talking_faces/landmarks``); ``TALKING_FACES_LANDMARK_CACHE=off`` turns it
off. Each entry is one ``.npy`` file (``N,68,2`` float32: 544 bytes per frame), written to a
temporary name and renamed, so a reader never sees half a file; one that cannot be read or has
the wrong shape is computed again and replaced. Deleting the folder at any time is safe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from talking_faces import __version__
from talking_faces.errors import UserError
from talking_faces.utils.assets import user_cache_home
from talking_faces.utils.io import atomic_path, sha256_json

#: environment variable naming the cache folder (``off``: no cache)
CACHE_ENV = "TALKING_FACES_LANDMARK_CACHE"
#: raised whenever the landmark models' prediction code changes what they return
CACHE_VERSION = 1
#: values of :data:`CACHE_ENV` that turn the cache off
_OFF = {"off", "0", "no", "false", "none"}


def cache_root() -> Path | None:
    """The cache folder, or None when :data:`CACHE_ENV` turns it off."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env.lower() in _OFF:
        return None
    if env:
        return Path(env).expanduser()
    return user_cache_home() / "landmarks"


def model_key(record: dict[str, Any], batch_size: int | None) -> str:
    """The part of every entry's key that the landmark model and this process decide."""
    described = {
        "model": record,
        "batch_size": batch_size,
        "cache_version": CACHE_VERSION,
        "package": __version__,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
    return sha256_json(described)[:32]


def frames_key(frames: Tensor) -> str:
    """XXH3-128 of ``frames``' bytes, shape and dtype."""
    import xxhash

    array = np.ascontiguousarray(frames.detach().cpu().numpy())
    digest = xxhash.xxh3_128()
    digest.update(f"{tuple(array.shape)}|{array.dtype.str}|".encode())
    digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


class ReferenceLandmarkCache:
    """The reference landmarks of one landmark model in one process (see the module doc).

    Args:
        root: the cache folder (:func:`cache_root`).
        key: :func:`model_key` of the model.
    """

    def __init__(self, root: Path, key: str) -> None:
        self.folder = root / key
        #: entries read, and batches computed (and stored), by this process
        self.read = 0
        self.computed = 0
        #: entries that could not be written (a read-only or full disk: the evaluation goes on)
        self.write_errors = 0

    @classmethod
    def for_model(
        cls, record: dict[str, Any] | None, batch_size: int | None, device: str | torch.device
    ) -> ReferenceLandmarkCache | None:
        """The cache of a landmark model with results record ``record`` on ``device``, or None
        (the cache is off, the device is not the CPU, or the model has no sha256 to key on)."""
        root = cache_root()
        if root is None or torch.device(device).type != "cpu":
            return None
        if not record or not record.get("sha256"):
            return None
        return cls(root, model_key(record, batch_size))

    def _path(self, frames: Tensor) -> Path:
        key = frames_key(frames)
        return self.folder / key[:2] / f"{key}.npy"

    def landmarks(self, frames: Tensor, model: Any) -> Tensor:
        """``model``'s landmarks of ``frames`` (``B,T,3,H,W``) as ``B,T,68,2``: read from the
        cache, else computed by ``model`` (``N,3,H,W`` -> ``N,68,2``) and stored."""
        b, t = frames.shape[:2]
        path = self._path(frames)
        try:
            stored = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            stored = None
        if stored is not None and stored.shape == (b * t, 68, 2) and stored.dtype == np.float32:
            self.read += 1
            return torch.from_numpy(stored).view(b, t, 68, 2).to(frames.device)
        points = model(frames.flatten(0, 1))
        self.computed += 1
        self._store(path, points)
        return points.view(b, t, 68, 2)

    def _store(self, path: Path, points: Tensor) -> None:
        array = np.ascontiguousarray(points.detach().cpu().numpy())
        if array.dtype != np.float32:
            return  # not what a reader accepts: nothing stored
        try:
            with atomic_path(path) as tmp:
                np.save(tmp, array, allow_pickle=False)
        except (OSError, UserError):  # read-only, or full (UserError): the evaluation goes on
            self.write_errors += 1

    def record(self) -> dict[str, Any]:
        """What the results' ``timing`` says of it."""
        return {
            "folder": str(self.folder),
            "batches_read": self.read,
            "batches_computed": self.computed,
            "write_errors": self.write_errors,
        }


__all__ = ["CACHE_ENV", "CACHE_VERSION", "ReferenceLandmarkCache", "cache_root", "model_key"]
