"""Talking-face methods, found by name.

Batch -> **MODELS[model.name]** (a :class:`~talking_faces.models.base.TalkingFaceModule`) ->
generated clips.

``MODELS`` is a plain dict from the config's ``model.name`` to the class; configs never hold
import paths. :func:`trainable` also knows the evaluation experts (``talking_faces.experts``), so
``talking-faces fit`` trains them the same way. :func:`load_model` rebuilds a trained model from a
checkpoint alone.
"""

from __future__ import annotations

import difflib
import importlib
import os
from typing import Any

import torch

from talking_faces.errors import UserError
from talking_faces.models.base import ModelConfig, TalkingFaceModule
from talking_faces.models.ldm import LDM

MODELS: dict[str, type[TalkingFaceModule]] = {
    "ldm": LDM,
}

__all__ = ["MODELS", "ModelConfig", "TalkingFaceModule", "create_model", "load_model", "trainable"]


def _experts() -> dict[str, type]:
    try:
        module = importlib.import_module("talking_faces.experts")
    except ImportError:
        return {}
    return dict(getattr(module, "EXPERTS", {}))


def trainable() -> dict[str, type]:
    """Every class ``fit`` can train: the methods in MODELS and the evaluation experts."""
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
    ``model.run_config`` holds the resolved run config saved with it (or ``None``).
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
    return model.eval()
