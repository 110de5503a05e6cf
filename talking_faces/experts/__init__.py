"""Evaluation experts: networks the metric suite needs, trained by the framework on any dataset.

prepared dataset -> ``talking-faces fit experiments/experts/<name>.yaml data.root=PREP``
-> ``PREP/experts/<name>.ckpt`` -> :func:`talking_faces.registry.load_expert` -> evaluate (LSE
with the SyncNet expert, LMD with the landmark expert) -> results JSON (which expert, its sha256)

``EXPERTS`` maps the config's ``model.name`` to the expert's LightningModule class, as
:data:`talking_faces.models.MODELS` does for the methods; both sit on one trainable base and one
registry (:mod:`talking_faces.registry`), so ``fit`` trains both kinds the same way.
"""

from __future__ import annotations

from talking_faces.experts.base import (
    EXPERTS_DIR,
    ExpertConfig,
    ExpertModule,
    expert_path,
    export_checkpoint,
)
from talking_faces.experts.landmarks import LandmarkExpert, LandmarkRegressor
from talking_faces.experts.syncnet import ScalableSyncNet, SyncNetExpert

EXPERTS: dict[str, type[ExpertModule]] = {
    "syncnet": SyncNetExpert,
    "landmarks": LandmarkExpert,
}

#: the command that trains each expert on a prepared dataset (shown when one is missing)
TRAIN_COMMANDS: dict[str, str] = {
    name: f"talking-faces fit experiments/experts/{name}.yaml data.root={{prep}}"
    for name in EXPERTS
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
]
