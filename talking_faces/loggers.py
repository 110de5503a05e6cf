"""The loggers of a run: ``metrics.csv`` always, W&B and TensorBoard on request.

run config (``logger`` section) -> **build_loggers** -> ``lightning.Trainer(logger=...)``

``metrics.csv`` sits directly in the run folder and survives a resume: the rows the killed run
logged before its checkpoint are kept, the ones after it are dropped (the resumed run logs those
steps again). W&B runs offline unless ``WANDB_MODE`` says otherwise and keep one run id per run
folder (``wandb_id.txt``), so a resumed run continues the same W&B run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig

from talking_faces.config import to_dict
from talking_faces.errors import UserError
from talking_faces.utils.distributed import global_rank_from_env
from talking_faces.utils.io import atomic_path, write_text_atomic


class _AppendingWriter(ExperimentWriter):
    """CSV writer that keeps the rows a resumed run already wrote (Lightning's deletes them)."""

    def __init__(self, log_dir: str, keep_until_step: int | None) -> None:
        self._keep_until_step = keep_until_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        import csv

        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if self._keep_until_step is None:  # a fresh run: start the file over
            path.unlink()
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            keys = list(reader.fieldnames or [])
            # rows from the checkpoint's step on were logged by the killed run after it saved;
            # the resumed run logs them again
            rows = [r for r in reader if int(float(r.get("step") or 0)) < self._keep_until_step]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = keys


class RunCSVLogger(CSVLogger):
    """``metrics.csv`` directly in the run folder; appends when the run is resumed."""

    def __init__(self, run_dir: Path, keep_until_step: int | None) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")
        self._keep_until_step = keep_until_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(self.log_dir, self._keep_until_step)
        return self._experiment


def build_loggers(cfg: DictConfig, run_dir: Path, resume_step: int | None) -> list[Logger]:
    loggers: list[Logger] = [RunCSVLogger(run_dir, resume_step)]
    if cfg.logger.wandb:
        from lightning.pytorch.loggers import WandbLogger

        id_file = run_dir / "wandb_id.txt"
        if id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            run_id = f"{run_dir.name}-{int(time.time())}"
            if global_rank_from_env() == 0:
                write_text_atomic(id_file, run_id + "\n")
        loggers.append(
            WandbLogger(
                project=cfg.logger.wandb_project,
                entity=cfg.logger.wandb_entity,
                name=run_dir.name,
                id=run_id,
                resume="allow",
                tags=list(cfg.logger.wandb_tags),
                save_dir=str(run_dir),
                # offline unless the user's environment chose a mode
                offline="WANDB_MODE" not in os.environ,
                config=to_dict(cfg),
            )
        )
    if cfg.logger.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    return loggers


def check_loggers(cfg: DictConfig) -> None:
    """Fail before anything is written when an optional logger's package is missing."""
    import importlib.util

    if cfg.logger.tensorboard and not any(
        importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")
    ):
        raise UserError(
            "logger.tensorboard=true needs the tensorboard package: pip install tensorboard"
        )
    if cfg.logger.wandb and importlib.util.find_spec("wandb") is None:
        raise UserError("logger.wandb=true needs the wandb package: pip install wandb")
