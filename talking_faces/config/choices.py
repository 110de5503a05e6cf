"""Config choices as Enums, so OmegaConf refuses a value that is not one of them.

A :class:`Choice` is a ``str`` Enum whose member names are the values written in YAML
(``optimizer: adam``): it compares, hashes, formats and serialises (JSON) as that string, so code
that compares a config field with a string keeps working, and :func:`plain` turns a config back
into plain containers for checkpoints (``torch.load(weights_only=True)`` loads no Enum).
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any


class Choice(str, Enum):
    """One value of a closed set of config strings (member name == value)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __repr__(self) -> str:
        return repr(str(self.value))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every allowed value, in definition order."""
        return tuple(str(m.value) for m in cls)


def plain(value: Any) -> Any:
    """``value`` with every :class:`Choice` (in dicts, lists, tuples, dataclasses) as its string."""
    if isinstance(value, Choice):
        return str(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    return value


class AudioFeature(Choice):
    """Prepared audio feature a method reads (talking_faces.data.prepare.audio)."""

    #: python_speech_features MFCC, 13 with c0 = log energy
    mfcc = "mfcc"
    logmel = "logmel"
    #: the davs authors' MATLAB MFCC (savemfcc.m): Hamming, 13 filters 300-3700 Hz, lifter 22;
    #: with drop_c0 and audio_window 20 a frame's window is the authors' 20 x 12 file
    mfcc_davs = "mfcc_davs"


class AudioPad(Choice):
    """What a window reads where it runs past the clip (talking_faces.data.dataset)."""

    #: the first/last feature row repeated
    edge = "edge"
    #: feature rows of zeros
    zero = "zero"
    #: the ldm authors': the MFCC of the waveform with 1,965 zero samples on each side (mfcc only)
    zero_waveform = "zero_waveform"


class MonitorMode(Choice):
    min = "min"
    max = "max"


class OptimizerName(Choice):
    adam = "adam"
    adamw = "adamw"
    rmsprop = "rmsprop"
    sgd = "sgd"


class LRSchedule(Choice):
    constant = "constant"
    linear = "linear"
    cosine = "cosine"
