"""Progress bars for long work (tqdm on stderr; quiet when ``TALKING_FACES_QUIET=1``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar with the framework's defaults (stderr, smoothing, disabled when quiet)."""
    kwargs.setdefault("disable", os.environ.get("TALKING_FACES_QUIET") == "1")
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("smoothing", 0.1)
    return tqdm(iterable, **kwargs)
