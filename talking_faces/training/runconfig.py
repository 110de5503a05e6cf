"""The run config of ``talking-faces fit``: YAML files + overrides validated against the registry.

``talking-faces fit CONFIG... [key=value ...]`` -> **load_config** -> validated DictConfig ->
:func:`talking_faces.training.fit.fit`

This is the one place where the generic composition of :mod:`talking_faces.config.schema` meets the
registry of trainable classes (:func:`talking_faces.registry.model_class`: the methods in ``MODELS``
and the evaluation experts), which keeps :mod:`talking_faces.config.schema` free of model imports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from talking_faces.config.schema import compose_config
from talking_faces.registry import model_class

if TYPE_CHECKING:
    from talking_faces.models.base import TrainableModule


def _model_config(name: str) -> type:
    cls: type[TrainableModule] = model_class(name)  # what the registry holds
    return cls.Config


def load_config(
    paths: Sequence[str | os.PathLike[str]], overrides: Sequence[str] = ()
) -> DictConfig:
    """Compose YAML files (left to right) and ``key=value`` overrides into a validated config.

    The ``model`` section is checked against ``MODELS[model.name].Config`` (or an expert's).
    See :func:`talking_faces.config.schema.compose_config` for the rules and the errors raised.
    """
    return compose_config(paths, overrides, _model_config)
