"""The one registry of everything ``fit`` trains, and the one checkpoint loader.

config ``model.name`` -> **model_class** -> a method (:data:`talking_faces.models.MODELS`, plugins
included) or an evaluation expert (:data:`talking_faces.experts.EXPERTS`), both
:class:`~talking_faces.models.base.TrainableModule` subclasses; a checkpoint -> **load_model** /
**load_expert** -> the network in eval mode.

This module sits above ``models/`` and ``experts/`` (it imports both; neither imports it), so the
registry needs no import by name and an import error inside a method or an expert surfaces as the
error it is, not as an unknown ``model.name``.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import torch

from talking_faces.errors import UserError
from talking_faces.experts import EXPERTS
from talking_faces.models import MODELS, load_plugins
from talking_faces.utils.io import sha256_file

__all__ = ["create_model", "load_expert", "load_model", "model_class", "trainable"]


def trainable() -> dict[str, type]:
    """Every class ``fit`` can train: the methods in MODELS (plugins included) and the
    evaluation experts."""
    load_plugins()
    return {**EXPERTS, **MODELS}


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


def read_checkpoint(
    path: str | os.PathLike[str], what: str, hint: str, map_location: Any = "cpu"
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(checkpoint, model config or None)`` of a file read with ``weights_only=True``.

    Raises:
        UserError: the file is missing or unreadable (``what`` names it, ``hint`` says what to
            pass instead).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{what} {path} does not exist; {hint}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise UserError(f"cannot read {what} {path}: {exc}".splitlines()[0]) from None
    if not isinstance(ckpt, dict):
        return {}, None
    config = (ckpt.get("hyper_parameters") or {}).get("config")
    return ckpt, config if isinstance(config, dict) and "name" in config else None


def _build(cls: type, ckpt: dict[str, Any], config: dict[str, Any]) -> Any:
    model = cls(config)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def load_model(ckpt_path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """Rebuild a model from a ``fit`` checkpoint (architecture from its hyper-parameters).

    The checkpoint is read with ``weights_only=True``. The returned module is in eval mode;
    ``model.run_config`` holds the resolved run config saved with it and ``model.dataset_meta``
    the training dataset's ``meta.json`` (each ``None`` when the checkpoint has none).
    """
    path = os.fspath(ckpt_path)
    hint = "pass the .ckpt a `fit` run wrote"
    ckpt, config = read_checkpoint(path, "checkpoint", hint, map_location)
    if config is None:
        raise UserError(
            f"{path} has no model config in its hyper-parameters; was it written by fit?"
        )
    model = _build(model_class(config["name"]), ckpt, config)
    model.run_config = ckpt.get("run_config")
    model.dataset_meta = ckpt.get("dataset_meta")
    return model


def load_expert(path: str | os.PathLike[str], name: str | None = None) -> tuple[Any, str]:
    """Rebuild an expert from a checkpoint (the exported slim file or a ``fit`` checkpoint).

    Args:
        path: the checkpoint.
        name: the expected expert (``syncnet`` or ``landmarks``); None accepts either.

    Returns:
        ``(expert in eval mode, sha256 of the file)``.

    Raises:
        UserError: the file is missing, unreadable, or holds another kind of network.
    """
    path = Path(path)
    hint = "train it with `talking-faces fit experiments/experts/<name>.yaml data.root=PREP`"
    ckpt, config = read_checkpoint(path, "expert checkpoint", hint)
    found = config["name"] if config is not None else None
    if config is None or found not in EXPERTS:
        raise UserError(
            f"{path} is not an expert checkpoint (model {found!r}); experts are "
            f"{', '.join(EXPERTS)}, trained with "
            "`talking-faces fit experiments/experts/<name>.yaml data.root=PREP`"
        )
    if name is not None and found != name:
        raise UserError(f"{path} holds the {found!r} expert, not {name!r}")
    return _build(EXPERTS[found], ckpt, config), sha256_file(path)
