"""What the experts share: their config base, optimizer, and the export of a trained expert.

prepared dataset -> ``talking-faces fit experiments/experts/<name>.yaml data.root=PREP``
-> **expert checkpoint exported to PREP/experts/<name>.ckpt** (+ ``.sha256``) -> evaluate

Experts are LightningModules built like the methods in :mod:`talking_faces.models`: a ``Config``
dataclass (deriving from :class:`~talking_faces.models.base.ModelConfig`, so ``fit`` fills
``image_size`` and the audio shape from the dataset the same way) and a constructor
``Cls(config=None, **overrides)``. When training ends, rank 0 writes the best checkpoint (or the
last weights when no checkpoint callback ran) as a slim file holding only ``state_dict`` and
``hyper_parameters`` to ``export_path`` (default ``<data.root>/experts/<name>.ckpt``), atomically,
with its sha256 beside it; that is where ``talking-faces evaluate`` looks for the dataset's experts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from talking_faces import names
from talking_faces.config.choices import OptimizerName
from talking_faces.models.base import ModelConfig, TrainableModule
from talking_faces.models.optim import build_optimizer, build_scheduler
from talking_faces.utils.io import atomic_path, sha256_file, write_text_atomic

#: folder inside a prepared dataset where its trained experts live
EXPERTS_DIR = names.EXPERTS_DIR


@dataclass
class ExpertConfig(ModelConfig):
    """Fields every expert has (on top of :class:`ModelConfig`'s optimizer settings)."""

    optimizer: OptimizerName = OptimizerName.adamw
    lr: float = 1e-3
    weight_decay: float = 1e-4
    #: cosine learning-rate decay to 2% over this many optimizer steps (0: lr_schedule applies)
    lr_decay_steps: int = 0
    #: write the trained expert to ``export_path`` when training ends
    export: bool = True
    #: where to export; default ``<data.root>/experts/<name>.ckpt`` (local datasets only)
    export_path: str | None = None


def expert_path(prepared: str | os.PathLike[str], name: str) -> Path:
    """Default location of the expert ``name`` trained on the prepared dataset ``prepared``."""
    return Path(prepared) / EXPERTS_DIR / f"{name}.ckpt"


def export_checkpoint(source: dict[str, Any], dest: str | os.PathLike[str]) -> str:
    """Write the slim expert file ``dest`` (state_dict + hyper_parameters) and ``dest.sha256``.

    Returns the sha256 of the written file.
    """
    slim = {
        "state_dict": {k: v.detach().cpu() for k, v in source["state_dict"].items()},
        "hyper_parameters": source["hyper_parameters"],
        "talking_faces_expert": source["hyper_parameters"]["config"]["name"],
    }
    dest = Path(dest)
    # into an open file, not a path: torch.save names the archive's records after a path's stem
    # (here the random temporary name), which would give the same weights another sha256
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        torch.save(slim, f)
    digest = sha256_file(dest)
    write_text_atomic(dest.with_name(dest.name + ".sha256"), f"{digest}  {dest.name}\n")
    return digest


class ExpertModule(TrainableModule):
    """Base of the experts: the trainable base (config, hyper-parameters) plus their optimizer
    schedule and the export at the end of ``fit``."""

    Config: ClassVar[type] = ExpertConfig

    def configure_optimizers(self) -> Any:
        c = self.config
        opt = build_optimizer(self, c)
        if c.lr_decay_steps <= 0:
            sched = build_scheduler(opt, c, int(self.trainer.max_steps or 0))
            if sched is None:
                return opt
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=c.lr_decay_steps, eta_min=c.lr * 0.02
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}

    # ------------------------------------------------------------------------------ export
    def resolve_export_path(self) -> Path | None:
        """Where this expert is exported after ``fit``; None when it cannot or should not be."""
        if not self.config.export:
            return None
        if self.config.export_path:
            return Path(self.config.export_path)
        dm = getattr(self.trainer, "datamodule", None)
        root = getattr(dm, "root", None)
        if root is None or "://" in str(root) or not Path(root).is_dir():
            return None
        return expert_path(root, self.config.name)

    def on_fit_end(self) -> None:
        dest = self.resolve_export_path()
        if dest is None or not self.trainer.is_global_zero:
            return
        cb = self.trainer.checkpoint_callback
        best = getattr(cb, "best_model_path", "") if cb is not None else ""
        if best and Path(best).is_file():
            source = torch.load(best, map_location="cpu", weights_only=True)
        else:
            source = {"state_dict": self.state_dict(), "hyper_parameters": dict(self.hparams)}
        digest = export_checkpoint(source, dest)
        print(f"exported {self.config.name} expert to {dest} (sha256 {digest[:12]})")
