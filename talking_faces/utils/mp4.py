"""Writing clips as mp4 with their audio: sample videos of fit, evaluate and generate.

generated frames (+ waveform) -> **write_clip_mp4** -> ``.mp4`` (H.264 + AAC)
"""

from __future__ import annotations

import os

import numpy as np
import torch

from talking_faces.utils.io import atomic_path

#: video frame rate and audio sample rate of every prepared dataset
FPS = 25
SAMPLE_RATE = 16000


def write_clip_mp4(
    path: str | os.PathLike[str],
    video: np.ndarray,
    waveform: np.ndarray | None,
    fps: int = FPS,
    sample_rate: int = SAMPLE_RATE,
) -> None:
    """Write ``video`` (``T,H,W,3`` uint8) as H.264 with ``waveform`` (float, mono) as AAC.

    Written atomically; H and W must be even (yuv420p).
    """
    import av

    t, h, w, _ = video.shape
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        vs = container.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": "18", "preset": "veryfast"}
        audio_stream = None
        if waveform is not None and waveform.size:
            audio_stream = container.add_stream("aac", rate=sample_rate)
            audio_stream.layout = "mono"
        for frame in video:
            for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in vs.encode():
            container.mux(packet)
        if audio_stream is not None:
            samples = np.clip(waveform.astype(np.float32), -1.0, 1.0)[None]
            af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            af.sample_rate = sample_rate
            af.pts = 0
            for packet in audio_stream.encode(af):
                container.mux(packet)
            for packet in audio_stream.encode():
                container.mux(packet)


def to_uint8_video(frames: torch.Tensor) -> np.ndarray:
    """``T,3,H,W`` float in [0,1] -> ``T,H,W,3`` uint8 (rounded)."""
    return (frames.float().clamp(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def side_by_side(*panels: torch.Tensor) -> torch.Tensor:
    """Panels ``...,3,H,W`` of equal shape joined left to right: ``...,3,H,W*len(panels)``."""
    return torch.cat([p.float().cpu() for p in panels], dim=-1)
