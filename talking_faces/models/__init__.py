"""Talking-face methods, found by name.

Batch -> **MODELS[model.name]** (a :class:`~talking_faces.models.base.TalkingFaceModule`) ->
generated clips.

``MODELS`` is a plain dict from the config's ``model.name`` to the class; configs never hold
import paths. The one registry of everything ``fit`` trains (these methods and the evaluation
experts) and the checkpoint loaders are in :mod:`talking_faces.registry`, which sits above both.

Methods written outside this package are added with :func:`register_model`, from a module that
the framework imports on start (docs/adding-a-method.md):

- an installed package declaring the entry point group ``talking_faces.models`` (``toy =
  "my_package.toy:ToyMethod"`` in its ``pyproject.toml``), or
- any importable module named in the environment variable ``TALKING_FACES_PLUGINS``
  (comma-separated), which calls ``register_model("toy", ToyMethod)`` when imported.

Either way every process sees them (the CLI, DDP ranks, sweep trials), and checkpoints of such a
method load wherever the plugin is importable.
"""

from __future__ import annotations

import importlib
import os

from talking_faces.errors import UserError
from talking_faces.models.amie import AMIE
from talking_faces.models.base import ModelConfig, TalkingFaceModule, TrainableModule
from talking_faces.models.davs import DAVS
from talking_faces.models.ldm import LDM

MODELS: dict[str, type[TalkingFaceModule]] = {
    "ldm": LDM,
    "davs": DAVS,
    "amie": AMIE,
}

__all__ = [
    "MODELS",
    "ModelConfig",
    "TalkingFaceModule",
    "TrainableModule",
    "load_plugins",
    "register_model",
]

#: environment variable naming plugin modules to import (comma-separated)
PLUGINS_ENV = "TALKING_FACES_PLUGINS"
#: entry point group of installed packages that add methods
ENTRY_POINT_GROUP = "talking_faces.models"
_plugins_loaded: set[str] = set()


def register_model(name: str, cls: type) -> type:
    """Add method ``cls`` (a :class:`TalkingFaceModule` subclass) under ``name`` to MODELS.

    Returns ``cls``, so it can decorate the class. Registering another class under a taken name
    is an error; registering the same class again is a no-op (a module imported twice).
    """
    if not (isinstance(cls, type) and issubclass(cls, TalkingFaceModule)):
        raise TypeError(f"{cls!r} is not a TalkingFaceModule subclass")
    if name in MODELS and MODELS[name] is not cls:
        raise UserError(f"model.name '{name}' is taken by {MODELS[name].__module__}; pick another")
    MODELS[name] = cls
    return cls


def load_plugins() -> None:
    """Import the plugin modules of :data:`PLUGINS_ENV` and the ``talking_faces.models`` entry
    points (once each per process)."""
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        if name in _plugins_loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UserError(
                f"{PLUGINS_ENV} names module {name!r}, which cannot be imported ({exc}); put its "
                "folder on PYTHONPATH or install it"
            ) from None
        _plugins_loaded.add(name)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry:{ep.name}"
        if key in _plugins_loaded:
            continue
        register_model(ep.name, ep.load())
        _plugins_loaded.add(key)
