"""Lip-sync error: LSE-D, LSE-C and the AV offset (Prajwal et al. 2020) with SyncNet.

Generated frames ``B,T,3,H,W`` + waveform ``B,S`` -> :func:`sync_windows` (5-frame windows and
20-column MFCC windows) -> :class:`~talking_faces.nn.syncnet.SyncNet` embeddings ->
:func:`sync_distances` -> :func:`lse_from_distances` -> per-clip LSE-D / LSE-C / offset ->
:class:`LipSyncError` (mean over clips) -> results JSON.

Computed as ``joonson/syncnet_python`` (``SyncNetInstance.evaluate``) and Wav2Lip's LRS scoring
script compute it:

- video: each frame as Wav2Lip's LRS scorer (``evaluation/scores_LSE/
  SyncNetInstance_calc_scores.py``) hands it to SyncNet: an 8-bit image (our [0, 1] frames are
  rounded to 0-255, standing in for the decoded JPEG that ``cv2.imread`` returns), height x width x
  channels, BGR, resized with ``cv2.resize(frame, (224, 224))`` (bilinear, ``INTER_LINEAR``, in
  OpenCV's 8-bit fixed-point arithmetic), then cast to float 0-255 with no normalisation.
  ``mode="full"`` resizes the whole frame (Wav2Lip's script for generated clips); ``mode="crop"``
  first cuts ``crop_box`` out of each frame (face-tracked crops; the default box is the
  lower-centre square of an aligned face crop, ``x in [W/4, 3W/4)``, ``y in [H/2, H)``). The
  frames do not go through Wav2Lip's mp4 and JPEG files (the scores would then depend on their
  encoders): given the same 8-bit frames and 16-bit audio the scores are the reference script's
  (``tests/test_lse_conformance.py``, to 1e-4 on decoded clips);
- audio: the waveform at int16 scale (``round(w * 32768)``, as read from a 16-bit WAV) ->
  python_speech_features MFCC at 16 kHz (13 coefficients, 100 Hz) -> ``(13, N)``;
- ``min_len = min(T, S // 640)``; windows ``i = 0 .. min_len - 6`` (``range(min_len - 5)`` as in
  the public code: the window at ``min_len - 5`` would need MFCC column ``4 min_len - 1``, one
  past the end); video window = frames ``i..i+4``, audio window = MFCC columns ``4i..4i+19``;
- the audio embedding sequence is padded with ``vshift`` zero rows on both sides;
  ``d[i, k] = || v_i - a_{i + k - vshift} + 1e-6 ||_2`` for ``k = 0..2 vshift``;
  ``mdist[k] = mean_i d[i, k]``; LSE-D ``= min_k mdist``; LSE-C ``= median_k mdist - min_k mdist``;
  offset ``= vshift - argmin_k mdist``.

Sign of the offset (as in syncnet_python): with ``a_j = v_{j + s}`` (the mouth shape that goes
with the sound at time ``j`` is shown ``s`` frames later, i.e. the video lags the audio by ``s``)
the minimum is at ``k = vshift - s`` and the offset is ``+s``.

Scores are averaged over clips; :class:`SyncDistance` (LSE-D, lower is better) and
:class:`SyncConfidence` (LSE-C, higher is better) are the single-value views of
:class:`LipSyncError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import python_speech_features
import torch
import torch.nn.functional as F

from talking_faces import names
from talking_faces.config.choices import Choice
from talking_faces.metrics.exact import ExactSums
from talking_faces.nn.syncnet import SyncNet

SAMPLE_RATE = names.SAMPLE_RATE
SAMPLES_PER_FRAME = names.SAMPLES_PER_FRAME  # 16 kHz / 25 fps
MFCC_PER_FRAME = names.FEATURES_PER_FRAME  # 100 Hz / 25 fps
WINDOW_FRAMES = 5
WINDOW_MFCC = 20
PAIRWISE_EPS = 1e-6


class LSEMode(Choice):
    """What SyncNet sees of a frame: the whole frame, or a mouth crop (a config choice)."""

    full = "full"
    crop = "crop"


MODES = LSEMode.names()


class ChannelOrder(Choice):
    """The channel order SyncNet reads frames in (a config choice)."""

    bgr = "bgr"
    rgb = "rgb"


CHANNEL_ORDERS = ChannelOrder.names()


def syncnet_mfcc(waveform: torch.Tensor | np.ndarray) -> torch.Tensor:
    """MFCC as syncnet_python computes it: ``(S,)`` in [-1, 1] at 16 kHz -> ``(13, N)`` float32.

    The waveform is brought to int16 scale (rounded and clipped, as a 16-bit WAV holds it) and
    passed to ``python_speech_features.mfcc`` with its defaults (25 ms window, 10 ms hop, 13
    coefficients, c0 replaced by log energy); the result is transposed to coefficients x time.

    >>> syncnet_mfcc(torch.zeros(16000)).shape
    torch.Size([13, 99])
    """
    wave = waveform.detach().cpu().double().numpy() if torch.is_tensor(waveform) else waveform
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"waveform must be 1-D (S,), got shape {wave.shape}")
    pcm = np.clip(np.round(wave * 32768.0), -32768, 32767)
    mfcc = python_speech_features.mfcc(pcm, SAMPLE_RATE)
    return torch.from_numpy(np.ascontiguousarray(mfcc.T)).float()


def _default_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    return (width // 4, height // 2, width - width // 4, height)


def _frames_to_syncnet(
    frames: torch.Tensor,
    image_size: int,
    mode: str,
    crop_box: Sequence[int] | None,
    channel_order: str,
) -> torch.Tensor:
    """``T,3,H,W`` in [0,1] -> ``T,3,s,s`` 0-255 floats as SyncNet sees them (on ``frames``'
    device): rounded to 8 bits, cropped (``mode="crop"``), put in ``channel_order`` and resized by
    ``cv2.resize`` with ``INTER_LINEAR`` on each uint8 height x width x channels frame."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    x = (frames.detach().float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    if mode == "crop":
        x0, y0, x1, y1 = (int(v) for v in (crop_box or _default_crop_box(*x.shape[-2:])))
        if not (0 <= x0 < x1 <= x.shape[-1] and 0 <= y0 < y1 <= x.shape[-2]):
            raise ValueError(f"crop_box {(x0, y0, x1, y1)} is outside {tuple(x.shape[-2:])} frames")
        x = x[..., y0:y1, x0:x1]
    if channel_order == "bgr":
        x = x.flip(1)
    if tuple(x.shape[-2:]) != (image_size, image_size):
        hwc = np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())
        size = (int(image_size), int(image_size))
        resized = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in hwc])
        x = torch.from_numpy(resized).permute(0, 3, 1, 2).to(frames.device)
    return x.float()


def num_sync_windows(num_frames: int, num_samples: int) -> int:
    """Number of SyncNet windows for a clip: ``min(T, S // 640) - 5`` (may be <= 0)."""
    return min(num_frames, num_samples // SAMPLES_PER_FRAME) - WINDOW_FRAMES


def sync_windows(
    frames: torch.Tensor,
    waveform: torch.Tensor,
    image_size: int = 224,
    mode: str = "full",
    crop_box: Sequence[int] | None = None,
    channel_order: str = "bgr",
) -> tuple[torch.Tensor, torch.Tensor]:
    """SyncNet inputs for one clip.

    Args:
        frames: ``T,3,H,W`` float in [0, 1], RGB, 25 fps.
        waveform: ``(S,)`` float in [-1, 1], 16 kHz, aligned with the frames.
        image_size: SyncNet lip input size (224 for the public weights).
        mode: ``"full"`` (whole frame resized) or ``"crop"`` (``crop_box`` then resized).
        crop_box: ``(x0, y0, x1, y1)`` in frame pixels for ``mode="crop"``; default the
            lower-centre square ``(W/4, H/2, 3W/4, H)`` of an aligned face crop.
        channel_order: ``"bgr"`` as the public weights expect, or ``"rgb"``.

    Returns:
        ``video`` ``N,3,5,s,s`` float 0-255 (a strided view over the frames) and ``audio``
        ``N,1,13,20``, with ``N = min(T, S // 640) - 5``.

    Raises:
        ValueError: the clip is too short for one window.
    """
    n = num_sync_windows(frames.shape[0], waveform.shape[-1])
    if n < 1:
        raise ValueError(
            f"clip too short for SyncNet: {frames.shape[0]} frames and {waveform.shape[-1]} "
            f"samples; needs at least {WINDOW_FRAMES + 1} frames and "
            f"{(WINDOW_FRAMES + 1) * SAMPLES_PER_FRAME} samples"
        )
    x = _frames_to_syncnet(frames, image_size, mode, crop_box, channel_order)
    # T,3,s,s -> 3,T,s,s -> 3,T-4,s,s,5 -> T-4,3,5,s,s
    video = x.transpose(0, 1).unfold(1, WINDOW_FRAMES, 1).permute(1, 0, 4, 2, 3)[:n]
    mfcc = syncnet_mfcc(waveform).to(frames.device)
    audio = mfcc.unfold(1, WINDOW_MFCC, MFCC_PER_FRAME).transpose(0, 1)[:n].unsqueeze(1)
    if audio.shape[0] < n:  # only when S is not a whole number of frames' worth of audio
        raise ValueError(f"waveform of {waveform.shape[-1]} samples gives too few MFCC columns")
    return video, audio


def sync_distances(
    video_emb: torch.Tensor, audio_emb: torch.Tensor, vshift: int = 15
) -> torch.Tensor:
    """Distances between each video embedding and the audio embeddings around it.

    Args:
        video_emb: ``N,D``; audio_emb: ``N,D`` (window ``i`` of each describes the same 0.2 s).
        vshift: largest shift tried, in frames.

    Returns:
        ``N, 2*vshift+1`` with ``d[i, k] = ||v_i - a_{i+k-vshift} + 1e-6||_2``, where audio
        embeddings outside ``0..N-1`` are zero rows (``torch.nn.functional.pairwise_distance``).
    """
    if video_emb.shape != audio_emb.shape or video_emb.ndim != 2:
        raise ValueError(
            f"embeddings must both be N,D; got {tuple(video_emb.shape)} {tuple(audio_emb.shape)}"
        )
    padded = F.pad(audio_emb, (0, 0, vshift, vshift))
    candidates = padded.unfold(0, 2 * vshift + 1, 1)  # N, D, 2*vshift+1
    diff = video_emb.unsqueeze(-1) - candidates + PAIRWISE_EPS
    return torch.linalg.vector_norm(diff, dim=1)


def lse_from_distances(dists: torch.Tensor) -> dict[str, float]:
    """``N, 2*vshift+1`` distances -> ``{"lse_d", "lse_c", "offset"}`` for one clip.

    ``mdist = dists.mean(0)``; ``lse_d = min mdist``; ``lse_c = median mdist - min mdist``
    (``torch.median``; the count is odd so it is the middle value); ``offset = vshift - argmin``.

    >>> d = torch.tensor([[3.0, 1.0, 2.0], [5.0, 1.0, 4.0]])
    >>> lse_from_distances(d)
    {'lse_d': 1.0, 'lse_c': 2.0, 'offset': 0}
    """
    if dists.ndim != 2 or dists.shape[1] % 2 != 1:
        raise ValueError(f"distances must be N, 2*vshift+1; got {tuple(dists.shape)}")
    vshift = (dists.shape[1] - 1) // 2
    mdist = dists.double().mean(0)
    minval, minidx = torch.min(mdist, 0)
    return {
        "lse_d": float(minval),
        "lse_c": float(torch.median(mdist) - minval),
        "offset": int(vshift - minidx),
    }


def _chunks(counts: Sequence[int], batch_size: int) -> Iterator[list[tuple[int, int, int]]]:
    """Split clips of ``counts`` windows into batches: lists of ``(clip, start, stop)``."""
    chunk: list[tuple[int, int, int]] = []
    room = batch_size
    for clip, n in enumerate(counts):
        start = 0
        while start < n:
            take = min(n - start, room)
            chunk.append((clip, start, start + take))
            start += take
            room -= take
            if room == 0:
                yield chunk
                chunk, room = [], batch_size
    if chunk:
        yield chunk


@torch.no_grad()
def _embed_clips(
    syncnet: SyncNet, windows: list[tuple[torch.Tensor, torch.Tensor]], batch_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Embed all clips' windows in shared batches -> per clip ``(N_c,D) video, (N_c,D) audio``."""
    device = next(syncnet.parameters()).device
    was_training = syncnet.training
    syncnet.eval()
    try:
        video_out, audio_out = [], []
        for chunk in _chunks([v.shape[0] for v, _ in windows], batch_size):
            video = torch.cat([windows[c][0][a:b] for c, a, b in chunk]).to(device)
            audio = torch.cat([windows[c][1][a:b] for c, a, b in chunk]).to(device)
            video_out.append(syncnet.forward_lip(video))
            audio_out.append(syncnet.forward_aud(audio))
    finally:
        syncnet.train(was_training)
    counts = [v.shape[0] for v, _ in windows]
    return list(
        zip(torch.cat(video_out).split(counts), torch.cat(audio_out).split(counts), strict=True)
    )


def lip_sync_errors(
    syncnet: SyncNet,
    frames: torch.Tensor,
    waveform: torch.Tensor,
    vshift: int = 15,
    mode: str = "full",
    batch_size: int = 64,
    crop_box: Sequence[int] | None = None,
    channel_order: str = "bgr",
) -> torch.Tensor:
    """Per-clip LSE for a batch: ``B,T,3,H,W`` frames + ``B,S`` waveform -> ``B,3`` float64.

    Columns are ``lse_d, lse_c, offset``. Windows of all clips share SyncNet batches.
    """
    if frames.ndim != 5 or waveform.ndim != 2 or frames.shape[0] != waveform.shape[0]:
        raise ValueError(
            f"expected frames B,T,3,H,W and waveform B,S; got {tuple(frames.shape)} "
            f"and {tuple(waveform.shape)}"
        )
    windows = [
        sync_windows(f, w, syncnet.image_size, mode, crop_box, channel_order)
        for f, w in zip(frames, waveform, strict=True)
    ]
    rows = []
    for video_emb, audio_emb in _embed_clips(syncnet, windows, batch_size):
        scores = lse_from_distances(sync_distances(video_emb.float(), audio_emb.float(), vshift))
        rows.append([scores["lse_d"], scores["lse_c"], scores["offset"]])
    return torch.tensor(rows, dtype=torch.float64)


def lip_sync_error(
    syncnet: SyncNet,
    frames: torch.Tensor,
    waveform: torch.Tensor,
    vshift: int = 15,
    mode: str = "full",
    batch_size: int = 64,
    crop_box: Sequence[int] | None = None,
    channel_order: str = "bgr",
) -> dict[str, float]:
    """LSE for one clip: ``T,3,H,W`` frames in [0,1] + ``(S,)`` 16 kHz waveform ->
    ``{"lse_d", "lse_c", "offset"}``."""
    row = lip_sync_errors(
        syncnet, frames[None], waveform[None], vshift, mode, batch_size, crop_box, channel_order
    )[0]
    return {"lse_d": float(row[0]), "lse_c": float(row[1]), "offset": int(row[2])}


class LipSyncError(ExactSums):
    """LSE-D, LSE-C and AV offset averaged over clips.

    ``update(frames B,T,3,H,W in [0,1], waveform B,S)``; ``compute()`` ->
    ``{"lse_d", "lse_c", "offset", "abs_offset"}`` (means over clips). ``batch_values`` holds the
    latest update's per-clip ``B,3`` (lse_d, lse_c, offset), local to this process.

    The SyncNet is a submodule (moved with ``.to()``) and is run in eval mode.
    """

    is_differentiable = False
    higher_is_better: bool | None = None
    full_state_update = False
    clips: torch.Tensor  # a state registered with add_state

    def __init__(
        self,
        syncnet: SyncNet,
        vshift: int = 15,
        mode: str = "full",
        batch_size: int = 64,
        crop_box: Sequence[int] | None = None,
        channel_order: str = "bgr",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.syncnet = syncnet.eval()
        self.vshift = int(vshift)
        self.mode = mode
        self.batch_size = int(batch_size)
        self.crop_box = tuple(crop_box) if crop_box is not None else None
        self.channel_order = channel_order
        for name in ("lse_d_sum", "lse_c_sum", "offset_sum", "abs_offset_sum"):
            self.add_sum_state(name)
        self.add_state("clips", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.batch_values = torch.empty(0, 3, dtype=torch.float64)

    def update(
        self,
        frames: torch.Tensor,
        waveform: torch.Tensor,
        crop_box: Sequence[int] | None = None,
    ) -> None:
        """``frames`` ``B,T,3,H,W`` in [0,1], ``waveform`` ``B,S``; ``crop_box`` overrides the
        constructor's box for this batch (``mode="crop"``)."""
        rows = lip_sync_errors(
            self.syncnet,
            frames,
            waveform,
            self.vshift,
            self.mode,
            self.batch_size,
            crop_box if crop_box is not None else self.crop_box,
            self.channel_order,
        ).to(self.clips.device)
        self.batch_values = rows
        self.add_terms("lse_d_sum", rows[:, 0])
        self.add_terms("lse_c_sum", rows[:, 1])
        self.add_terms("offset_sum", rows[:, 2])
        self.add_terms("abs_offset_sum", rows[:, 2].abs())
        self.clips += rows.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.clips
        return {
            "lse_d": self.exact_sum("lse_d_sum") / n,
            "lse_c": self.exact_sum("lse_c_sum") / n,
            "offset": self.exact_sum("offset_sum") / n,
            "abs_offset": self.exact_sum("abs_offset_sum") / n,
        }


class SyncDistance(LipSyncError):
    """LSE-D (mean over clips of the minimum mean SyncNet distance); lower is better."""

    higher_is_better = False

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        return self.exact_sum("lse_d_sum") / self.clips


class SyncConfidence(LipSyncError):
    """LSE-C (mean over clips of median minus minimum mean distance); higher is better."""

    higher_is_better = True

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        return self.exact_sum("lse_c_sum") / self.clips
