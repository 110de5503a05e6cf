"""Talking-face methods, found by name.

Batch -> **MODELS[model.name]** (a :class:`~talking_faces.models.base.TalkingFaceModule`) ->
generated clips.

``MODELS`` is a plain dict from the config's ``model.name`` to the class; configs never hold
import paths. :func:`trainable` also knows the evaluation experts (``talking_faces.experts``), so
``talking-faces fit`` trains them the same way. :func:`load_model` rebuilds a trained model from a
checkpoint alone.

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

import difflib
import importlib
import os
from typing import Any

import torch

from talking_faces.errors import UserError
from talking_faces.models.amie import AMIE
from talking_faces.models.base import ModelConfig, TalkingFaceModule
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
    "create_model",
    "load_model",
    "register_model",
    "trainable",
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


def _experts() -> dict[str, type]:
    try:
        module = importlib.import_module("talking_faces.experts")
    except ImportError:
        return {}
    return dict(getattr(module, "EXPERTS", {}))


def trainable() -> dict[str, type]:
    """Every class ``fit`` can train: the methods in MODELS (plugins included) and the
    evaluation experts."""
    load_plugins()
    return {**_experts(), **MODELS}


def model_class(name: str) -> type:
    """The class registered under ``name``; a :class:`UserError` naming the closest otherwise."""
    classes = trainable()
    if name not in classes:
        close = difflib.get_close_matches(name, list(classes), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(f"unknown model.name '{name}'{hint}; known: {', '.join(sorted(classes))}")
    return classes[name]


def create_model(name: str, config: Any = None, **overrides: Any) -> Any:
    """Build the model ``name`` from a config mapping and/or keyword overrides."""
    return model_class(name)(config, **overrides)


def load_model(ckpt_path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """Rebuild a model from a ``fit`` checkpoint (architecture from its hyper-parameters).

    The checkpoint is read with ``weights_only=True``. The returned module is in eval mode;
    ``model.run_config`` holds the resolved run config saved with it and ``model.dataset_meta``
    the training dataset's ``meta.json`` (each ``None`` when the checkpoint has none).
    """
    path = os.fspath(ckpt_path)
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} does not exist; pass the .ckpt a `fit` run wrote")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise UserError(f"cannot read checkpoint {path}: {exc}".splitlines()[0]) from None
    hparams = ckpt.get("hyper_parameters") or {}
    config = hparams.get("config")
    if not isinstance(config, dict) or "name" not in config:
        raise UserError(
            f"{path} has no model config in its hyper-parameters; was it written by fit?"
        )
    model = model_class(config["name"])(config)
    model.load_state_dict(ckpt["state_dict"])
    model.run_config = ckpt.get("run_config")
    model.dataset_meta = ckpt.get("dataset_meta")
    return model.eval()
