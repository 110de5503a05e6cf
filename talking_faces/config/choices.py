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
    mfcc = "mfcc"
    logmel = "logmel"


class AudioPad(Choice):
    edge = "edge"
    zero = "zero"


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
