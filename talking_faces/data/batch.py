"""The Batch contract: what every model, metric and evaluator receives.

prepared dataset -> data.dataset (one sample per window) -> **batch.collate_batch** -> Batch
-> TalkingFaceModule

A sample (one window of one clip, as ``ClipWindowDataset`` yields it) keeps frames as uint8;
:func:`collate_batch` stacks samples and turns frames into float32 in [0, 1]. The datamodule's
loaders collate to uint8 in their worker processes (a quarter of the bytes to hand over) and
convert in the receiving process (:func:`images_to_float`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypedDict, cast

import torch

#: keys of a Batch, in the order of the contract
BATCH_KEYS: tuple[str, ...] = (
    "frames",
    "identity",
    "audio",
    "waveform",
    "landmarks",
    "landmarks_valid",
    "speaker",
    "word",
    "clip_id",
    "start",
)


class Batch(TypedDict):
    """One batch of B windows of T frames (H = W = the prepared crop size).

    frames           (B, T, 3, H, W) float32 in [0, 1]  target frames
    identity         (B, 3, H, W) float32 in [0, 1]     reference face of the same speaker
    audio            (B, T, W, F) float32               per-frame audio-feature windows
    waveform         (B, T*640) float32                 16 kHz audio under the T frames
    landmarks        (B, T, 68, 2) float32              crop pixels
    landmarks_valid  (B, T) bool
    speaker          (B,) long                          index into meta["speakers"], -1 unknown
    word             (B,) long                          index into meta["words"], -1 none
    clip_id          list[str]
    start            (B,) long                          first frame of the window in its clip
    """

    frames: torch.Tensor
    identity: torch.Tensor
    audio: torch.Tensor
    waveform: torch.Tensor
    landmarks: torch.Tensor
    landmarks_valid: torch.Tensor
    speaker: torch.Tensor
    word: torch.Tensor
    clip_id: list[str]
    start: torch.Tensor


_IMAGE_KEYS: tuple[Literal["frames"], Literal["identity"]] = ("frames", "identity")


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An output tensor; in a DataLoader worker it lives in shared memory, so handing the batch
    to the main process moves no bytes (what ``default_collate`` does too)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = 1
    for n in shape:
        numel *= n
    storage = torch.UntypedStorage._new_shared(numel * torch.empty((), dtype=dtype).element_size())
    return torch.empty((0,), dtype=dtype).set_(storage).view(shape)


def images_to_float(batch: Batch) -> Batch:
    """Make uint8 ``frames`` and ``identity`` of a batch :func:`collate_batch` made with
    ``float_images=False`` float32 in [0, 1] (in place; returns ``batch``)."""
    for key in _IMAGE_KEYS:
        x = batch.get(key)
        if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
            batch[key] = x.to(torch.float32).mul_(1.0 / 255.0)  # 255 -> exactly 1.0
    return batch


def _stack(values: list[torch.Tensor], image: bool) -> torch.Tensor:
    first = values[0]
    shape = (len(values), *first.shape)
    if image and first.dtype == torch.uint8:
        out = _empty(shape, torch.float32)
        for i, v in enumerate(values):
            out[i].copy_(v).mul_(1.0 / 255.0)  # 255 maps to exactly 1.0 in float32
        return out
    out = _empty(shape, first.dtype)
    return torch.stack(values, out=out)


def collate_batch(samples: Sequence[dict[str, Any]], float_images: bool = True) -> Batch:
    """Stack samples into a :class:`Batch`.

    Tensors are stacked, ints become a long tensor, strings a list; uint8 ``frames`` and
    ``identity`` become float32 in [0, 1] (with ``float_images=False`` they stay uint8, for
    :func:`images_to_float` once the batch has left its DataLoader worker). Extra keys (e.g.
    ``kind`` of a test pair) follow the same rules. Windows of different lengths
    (``num_frames="clip"`` on clips of different lengths) cannot share a batch: use
    ``batch_size=1`` then.
    """
    if not samples:
        raise ValueError("collate_batch needs at least one sample")
    out: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"cannot batch {key!r} of different shapes {sorted(shapes)}; windows of "
                    "different lengths need batch_size=1"
                )
            out[key] = _stack(values, image=float_images and key in _IMAGE_KEYS)
        elif isinstance(first, bool):
            out[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(first, int):
            out[key] = torch.tensor(values, dtype=torch.long)
        elif isinstance(first, float):
            out[key] = torch.tensor(values, dtype=torch.float32)
        else:
            out[key] = list(values)
    return cast(Batch, out)  # the samples' fields, stacked: a Batch for window samples
