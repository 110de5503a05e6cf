"""Writing clips as mp4 with their audio: sample videos of fit, evaluate and generate.

generated frames (+ waveform) -> **Mp4Writer** (frames streamed in chunks) or **write_clip_mp4**
(a whole clip) -> ``.mp4`` (H.264 + AAC)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np
import torch

from talking_faces import names
from talking_faces.utils.io import atomic_path

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import OutputContainer
    from av.video.stream import VideoStream

#: video frame rate and audio sample rate of every prepared dataset
FPS = names.FPS
SAMPLE_RATE = 16000


class Mp4Writer:
    """An mp4 (H.264 + AAC) written frame chunk by frame chunk, atomically.

    Frames go to a temporary file beside ``path`` that is renamed to ``path`` when the ``with``
    block ends without an exception (and deleted otherwise), so a killed run never leaves a
    half-written video under the final name. The audio is muxed as the video advances: after each
    :meth:`write` the waveform up to the end of the frames written so far is encoded, so audio and
    video packets interleave; whatever audio is left when the block ends (audio longer than the
    video) is encoded then. Frames with an odd height or width are padded by one edge pixel
    (yuv420p needs even sizes).

    Args:
        path: the ``.mp4`` to write.
        waveform: mono float samples in [-1, 1] at ``sample_rate`` (None: no audio stream).

    Example::

        with Mp4Writer("out.mp4", waveform) as writer:
            for chunk in chunks:  # each (t, H, W, 3) uint8
                writer.write(chunk)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        waveform: np.ndarray | None = None,
        fps: int = FPS,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        self.path = Path(path)
        self.fps = int(fps)
        self.sample_rate = int(sample_rate)
        self.waveform = (
            np.clip(np.asarray(waveform, dtype=np.float32).reshape(-1), -1.0, 1.0)
            if waveform is not None and np.size(waveform)
            else None
        )
        self.frames_written = 0
        self._samples_written = 0
        self._stack: contextlib.ExitStack | None = None
        self._container: OutputContainer | None = None
        self._video: VideoStream | None = None
        self._audio: AudioStream | None = None

    def __enter__(self) -> Mp4Writer:
        import av

        stack = contextlib.ExitStack()
        tmp = stack.enter_context(atomic_path(self.path))
        self._container = stack.enter_context(av.open(str(tmp), mode="w", format="mp4"))
        self._stack = stack
        return self

    def write(self, frames: np.ndarray) -> None:
        """Encode ``frames`` (``t,H,W,3`` uint8; every chunk of one size) and the audio under
        them."""
        import av

        if self._container is None:
            raise RuntimeError("Mp4Writer.write outside its `with` block")
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be t,H,W,3 uint8, got {frames.shape} {frames.dtype}")
        h, w = frames.shape[1:3]
        if h % 2 or w % 2:
            frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        video = self._video
        if video is None:
            video = self._open_streams(self._container, frames.shape[2], frames.shape[1])
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self._container.mux(packet)
        self.frames_written += len(frames)
        self._write_audio(self.frames_written * self.sample_rate // self.fps)

    def _open_streams(self, container: OutputContainer, width: int, height: int) -> VideoStream:
        vs = container.add_stream("libx264", rate=self.fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"crf": "18", "preset": "veryfast"}
        self._video = vs
        if self.waveform is not None:
            self._audio = container.add_stream("aac", rate=self.sample_rate)
            self._audio.layout = "mono"
        return vs

    def _write_audio(self, until: int) -> None:
        import av

        audio, waveform, container = self._audio, self.waveform, self._container
        if audio is None or waveform is None or container is None:
            return  # an audio stream exists only with a waveform, in an open container
        until = min(until, len(waveform))
        if until <= self._samples_written:
            return
        chunk = waveform[self._samples_written : until][None]
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
        af.sample_rate = self.sample_rate
        af.pts = self._samples_written
        for packet in audio.encode(af):
            container.mux(packet)
        self._samples_written = until

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        if exc_type is not None:
            self._container = self._video = self._audio = None
            stack.__exit__(exc_type, exc, tb)  # closes the file and deletes it
            return
        with stack:  # closes the file, then renames it into place (deletes it if this raises)
            video, container = self._video, self._container
            if video is None or container is None:  # a video stream implies the container
                raise ValueError(f"no frames were written to {self.path}")
            for packet in video.encode():
                container.mux(packet)
            if self._audio is not None and self.waveform is not None:  # audio implies a waveform
                self._write_audio(len(self.waveform))
                for packet in self._audio.encode():
                    container.mux(packet)
        self._container = self._video = self._audio = None


def write_clip_mp4(
    path: str | os.PathLike[str],
    video: np.ndarray,
    waveform: np.ndarray | None,
    fps: int = FPS,
    sample_rate: int = SAMPLE_RATE,
) -> None:
    """Write ``video`` (``T,H,W,3`` uint8) as H.264 with ``waveform`` (float, mono) as AAC.

    Written atomically (see :class:`Mp4Writer`).
    """
    with Mp4Writer(path, waveform, fps, sample_rate) as writer:
        writer.write(video)


def to_uint8_video(frames: torch.Tensor) -> np.ndarray:
    """``T,3,H,W`` float in [0,1] -> ``T,H,W,3`` uint8 (rounded)."""
    return (frames.float().clamp(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def side_by_side(*panels: torch.Tensor) -> torch.Tensor:
    """Panels ``...,3,H,W`` of equal shape joined left to right: ``...,3,H,W*len(panels)``."""
    return torch.cat([p.float().cpu() for p in panels], dim=-1)
