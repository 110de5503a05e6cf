"""Evaluation experts: networks the metric suite needs, trained by the framework on any dataset.

prepared dataset -> ``talking-faces fit experiments/experts/<name>.yaml data.root=PREP``
-> ``PREP/experts/<name>.ckpt`` -> **load_expert** -> evaluate (LSE with the SyncNet expert, LMD
with the landmark expert) -> results JSON (which expert, its sha256)

``EXPERTS`` maps the config's ``model.name`` to the expert's LightningModule class, as
:data:`talking_faces.models.MODELS` does for the methods; ``fit`` trains both kinds the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from talking_faces.errors import UserError
from talking_faces.experts.base import (
    EXPERTS_DIR,
    ExpertConfig,
    ExpertModule,
    expert_path,
    export_checkpoint,
)
from talking_faces.experts.landmarks import LandmarkExpert, LandmarkRegressor
from talking_faces.experts.syncnet import ScalableSyncNet, SyncNetExpert
from talking_faces.utils.io import sha256_file

EXPERTS: dict[str, type[ExpertModule]] = {
    "syncnet": SyncNetExpert,
    "landmarks": LandmarkExpert,
}

#: the command that trains each expert on a prepared dataset (shown when one is missing)
TRAIN_COMMANDS: dict[str, str] = {
    "syncnet": "talking-faces fit experiments/experts/syncnet.yaml data.root={prep}",
    "landmarks": "talking-faces fit experiments/experts/landmarks.yaml data.root={prep}",
}

__all__ = [
    "EXPERTS",
    "EXPERTS_DIR",
    "TRAIN_COMMANDS",
    "ExpertConfig",
    "ExpertModule",
    "LandmarkExpert",
    "LandmarkRegressor",
    "ScalableSyncNet",
    "SyncNetExpert",
    "expert_path",
    "export_checkpoint",
    "load_expert",
]


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
    if not path.is_file():
        raise UserError(f"expert checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise UserError(f"cannot read expert checkpoint {path}: {exc}".splitlines()[0]) from None
    config = (ckpt.get("hyper_parameters") or {}).get("config") if isinstance(ckpt, dict) else None
    found = config.get("name") if isinstance(config, dict) else None
    if found not in EXPERTS:
        raise UserError(
            f"{path} is not an expert checkpoint (model {found!r}); experts are "
            f"{', '.join(EXPERTS)}, trained with "
            "`talking-faces fit experiments/experts/<name>.yaml data.root=PREP`"
        )
    if name is not None and found != name:
        raise UserError(f"{path} holds the {found!r} expert, not {name!r}")
    expert = EXPERTS[found](config)
    expert.load_state_dict(ckpt["state_dict"])
    return expert.eval(), sha256_file(path)
