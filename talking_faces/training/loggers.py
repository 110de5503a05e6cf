"""The loggers of a run: ``metrics.csv`` always, W&B and TensorBoard on request.

run config (``logger`` section) -> **build_loggers** -> ``lightning.Trainer(logger=...)`` ->
**finish_loggers** at the end of ``fit``; results JSON of ``evaluate`` -> **add_results_to_wandb**

``metrics.csv`` sits directly in the run folder and survives a resume: the rows the killed run
logged before its checkpoint are kept, the ones after it are dropped (the resumed run logs those
steps again). W&B runs offline unless ``WANDB_MODE`` says otherwise and keep one run id per run
folder (``wandb_id.txt``), so a resumed run continues the same W&B run, and ``evaluate`` adds its
scores to the run that trained the checkpoint (``evaluate/<protocol>/<metric>`` in its summary,
the per-clip rows as a table).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeGuard, cast

import yaml
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig

from talking_faces.config.schema import to_dict
from talking_faces.errors import UserError
from talking_faces.names import METRICS_CSV
from talking_faces.utils.distributed import global_rank_from_env
from talking_faces.utils.io import atomic_path, write_text_atomic

if TYPE_CHECKING:
    from lightning.fabric.loggers.csv_logs import _ExperimentWriter
    from lightning.pytorch.loggers import WandbLogger


class _AppendingWriter(ExperimentWriter):
    """CSV writer that keeps the rows a resumed run already wrote (Lightning's deletes them)."""

    NAME_METRICS_FILE = METRICS_CSV

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
    """``metrics.csv`` directly in the run folder; appends when the run is resumed.

    Lightning saves a step's checkpoint (``on_train_batch_end``) before it logs that step's
    metrics, so a run killed between the two would lose the row of the checkpoint's last step for
    good (the resumed run starts after it). :meth:`write_step_now`, called by the step
    checkpoint callback just before it saves, writes that row first; Lightning's own call for the
    same row then writes nothing.
    """

    def __init__(self, run_dir: Path, keep_until_step: int | None) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")
        self._keep_until_step = keep_until_step
        self._written_early: tuple[int, frozenset[str]] | None = None

    def write_step_now(self, trainer: Any) -> None:
        """Write (and flush) the row Lightning will log for the training step that just ended.

        The same row as Lightning's ``update_train_step_metrics`` (its metrics, ``epoch``, the
        step it uses), under the same conditions; a no-op on other ranks than 0.
        """
        from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars

        connector = trainer._logger_connector
        if (
            trainer.fit_loop._should_accumulate()
            and trainer.lightning_module.automatic_optimization
        ):
            return
        if not connector.should_update_logs:
            return
        metrics = convert_tensors_to_scalars(connector.metrics["log"])
        if not metrics:
            return
        metrics.setdefault("epoch", trainer.current_epoch)
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        self.log_metrics(metrics, step=step)
        self.save()
        self._written_early = (step, frozenset(metrics))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self._written_early is not None and self._written_early == (step, frozenset(metrics)):
            self._written_early = None  # Lightning's call for the row written early
            return
        super().log_metrics(dict(metrics), step)

    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:  # Lightning's type of ``_experiment``
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
        wandb_logger = WandbLogger(
            project=cfg.logger.wandb_project,
            entity=cfg.logger.wandb_entity,
            name=run_dir.name,
            id=run_id,
            resume="allow",
            tags=list(cfg.logger.wandb_tags),
            save_dir=str(run_dir),
            config=to_dict(cfg),
            **_wandb_mode(),
        )
        # Lightning always passes W&B's deprecated `anonymous` setting (None when unset), which
        # makes W&B warn on every run; leaving it out changes nothing else.
        wandb_logger._wandb_init.pop("anonymous", None)
        loggers.append(wandb_logger)
    if cfg.logger.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    return loggers


class _WandbMode(TypedDict, total=False):
    """The ``wandb.init`` keyword :func:`_wandb_mode` passes (none, or ``mode``)."""

    mode: Literal["online", "offline", "disabled", "shared"]


def _wandb_mode() -> _WandbMode:
    """Offline unless the user's environment chose a mode (``WANDB_MODE``).

    Passed as ``wandb.init(mode=...)`` rather than Lightning's ``offline=True``, which sets
    ``WANDB_MODE`` for the rest of the process.
    """
    return {} if "WANDB_MODE" in os.environ else {"mode": "offline"}


def is_wandb_logger(logger: Logger) -> TypeGuard[WandbLogger]:
    """Whether ``logger`` is Lightning's ``WandbLogger`` (by class name: no W&B import)."""
    return type(logger).__name__ == "WandbLogger"


def finish_loggers(loggers: Sequence[Logger], success: bool = True) -> None:
    """End the W&B run of a finished (or failed: ``success=False``) fit.

    A process that exits without finishing its W&B run leaves an abandoned-handle traceback in
    the run's debug log and no end-of-run record. Only the process that opened the run (global
    rank 0) has one to finish.
    """
    for logger in loggers:
        if is_wandb_logger(logger) and getattr(logger, "_experiment", None):
            finish_wandb_run(logger.experiment, exit_code=0 if success else 1)


def finish_wandb_run(run: Any, exit_code: int = 0) -> None:
    """``run.finish``, then, for an offline run, its ``files/wandb-summary.json`` and
    ``files/config.yaml`` as an online run has them.

    W&B keeps an offline run's summary and config only in its ``.wandb`` log until ``wandb
    sync`` (wandb/wandb#9646); written here so the run folder can be read as it is. Files W&B
    wrote itself are left alone.
    """
    offline = bool(getattr(run, "offline", False))
    if offline:
        files = Path(run.dir)
        summary = _plain(run.summary)
        config = {k: {"value": v} for k, v in run.config.as_dict().items()}
    run.finish(exit_code=exit_code)
    if offline:
        if not (files / "wandb-summary.json").exists():
            text = json.dumps(summary, sort_keys=True, default=str)
            write_text_atomic(files / "wandb-summary.json", text + "\n")
        if config and not (files / "config.yaml").exists():
            write_text_atomic(files / "config.yaml", yaml.safe_dump(config, sort_keys=True))


def _plain(value: Any) -> Any:
    """W&B summary (nested summary dicts) as plain dicts."""
    if hasattr(value, "keys") and hasattr(value, "__getitem__"):
        return {str(k): _plain(value[k]) for k in value.keys()}  # noqa: SIM118 (no __iter__)
    return value


def wandb_run_of(ckpt: str | os.PathLike[str], run_config: Mapping[str, Any] | None) -> str | None:
    """The W&B run id of the ``fit`` run that wrote ``ckpt``, or None when it did not use W&B.

    The run folder is the checkpoint's ``RUN/checkpoints/`` parent; its ``wandb_id.txt`` holds
    the id, and ``run_config`` (the checkpoint's) says whether the run logged to W&B.
    """
    logger_cfg = (run_config or {}).get("logger") or {}
    id_file = Path(ckpt).resolve().parent.parent / "wandb_id.txt"
    if not logger_cfg.get("wandb") or not id_file.is_file():
        return None
    return id_file.read_text().strip() or None


def add_results_to_wandb(
    ckpt: str | os.PathLike[str],
    run_config: Mapping[str, Any] | None,
    results: Mapping[str, Any],
    per_clip: Sequence[Mapping[str, Any]] = (),
) -> str | None:
    """Add ``evaluate``'s results to the W&B run that trained ``ckpt`` (when there is one).

    The run is resumed (offline unless ``WANDB_MODE`` says otherwise, in the run folder's
    ``wandb/``); its summary gets ``evaluate/<protocol>/<metric>`` for every metric and
    ``evaluate/<protocol>/checkpoint`` (the file scored), and ``evaluate/<protocol>/per_clip`` is
    logged as a table of the per-clip rows. Returns the run id, or None when the checkpoint's run
    did not use W&B.
    """
    run_id = wandb_run_of(ckpt, run_config)
    if run_id is None:
        return None
    import wandb

    logger_cfg = dict((run_config or {}).get("logger") or {})
    run_dir = Path(ckpt).resolve().parent.parent
    key = f"evaluate/{(results.get('protocol') or {}).get('name', 'default')}"
    run = wandb.init(
        project=logger_cfg.get("wandb_project"),
        entity=logger_cfg.get("wandb_entity"),
        id=run_id,
        resume="allow",
        dir=str(run_dir),
        name=run_dir.name,
        settings=wandb.Settings(silent=True, console="off"),
        **_wandb_mode(),
    )
    try:
        metrics = results.get("metrics") or {}
        summary: dict[str, Any] = {
            f"{key}/{name}": value
            for name, value in metrics.items()
            if isinstance(value, (int, float))
        }
        summary[f"{key}/checkpoint"] = str(ckpt)
        run.summary.update(summary)
        if per_clip:
            columns: list[str] = []
            for row in per_clip:
                columns += [c for c in row if c not in columns]
            table = wandb.Table(
                # wandb annotates ``columns`` as the invariant list[str | int]; names are str
                columns=cast("list[str | int]", columns),
                data=[[row.get(c) for c in columns] for row in per_clip],
            )
            run.log({f"{key}/per_clip": table})
    finally:
        finish_wandb_run(run)
    return run_id


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
