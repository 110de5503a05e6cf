"""What a run does besides training: atomic checkpoints, provenance in them, sample videos.

``fit`` -> ``lightning.Trainer(callbacks=..., plugins=...)`` -> **AtomicCheckpointIO** (checkpoint
files), **RunInfo** (the resolved run config and the dataset's ``meta.json`` inside every
checkpoint), **StepProgressBar** (training progress in steps of ``max_steps``), **SampleVideos**
(``RUN/samples/*.mp4``: real | generated | the method's debug panels, audio muxed; also sent to
W&B).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf
from lightning.pytorch.plugins.io import TorchCheckpointIO

from talking_faces.training.loggers import RunCSVLogger, is_wandb_logger
from talking_faces.utils.io import atomic_path
from talking_faces.utils.mp4 import side_by_side, to_uint8_video, write_clip_mp4


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and renamed, so a kill never leaves half a file."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        path = Path(path)
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        # an open file, not a path: torch.save would name the archive's records after the
        # temporary file's random name, so equal checkpoints would differ in their sha256
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)


class StepCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every N training steps, written after the step's row of ``metrics.csv``.

    Lightning's ModelCheckpoint saves a step's checkpoint before the step's metrics are logged; a
    kill in between would leave a resumed run's ``metrics.csv`` without that step. Here the row
    is written first (:meth:`RunCSVLogger.write_step_now`).
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        n = self._every_n_train_steps
        if (
            n >= 1
            and trainer.global_step % n == 0
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            for logger in trainer.loggers:
                if isinstance(logger, RunCSVLogger):
                    logger.write_step_now(trainer)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, idx)


class RunInfo(Callback):
    """Puts the resolved run config (``checkpoint["run_config"]``) and the training dataset's
    ``meta.json`` (``checkpoint["dataset_meta"]``: crop size, alignment template, audio-feature
    parameters, which ``talking-faces generate`` needs to prepare new inputs the same way) into
    every checkpoint."""

    def __init__(
        self, run_config: dict[str, Any], dataset_meta: Mapping[str, Any] | None = None
    ) -> None:
        self.run_config = run_config
        self.dataset_meta = dict(dataset_meta) if dataset_meta is not None else None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint):
        checkpoint["run_config"] = self.run_config
        if self.dataset_meta is not None:
            checkpoint["dataset_meta"] = self.dataset_meta


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar counting training steps out of ``trainer.max_steps`` (with the
    elapsed time and the time left), instead of batches of the current epoch.

    Runs are budgeted in steps, and on a small dataset an epoch is a few batches: Lightning's
    own bar then reads "Epoch 57: 3/4" and says nothing about how far the run is. This one reads
    ``train step: 40%|... | 230/576 [01:02<01:33, ...]`` with Lightning's metrics after it, and
    a resumed run starts at its checkpoint's step. The rate averages the whole run (validation
    included), so the time left counts the validations still to come. Without ``max_steps``
    the total is Lightning's estimate of the run's steps (none when the run is unbounded).
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total: int | float | None
        if trainer.max_steps is not None and trainer.max_steps > 0:
            total = trainer.max_steps
        else:
            total = convert_inf(trainer.estimated_stepping_batches)
        self.train_progress_bar = Tqdm(
            desc="train step",
            total=total,
            initial=trainer.global_step,
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        """One bar for the whole run: nothing to reset at an epoch boundary."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Nothing to show at an epoch boundary (the metrics follow every step)."""

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        bar = self.train_progress_bar
        step = trainer.global_step
        if bar is not None and self._should_update(step, bar.total):
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the run folder names the run; its empty version says nothing
        return metrics


class _WithDebugPanels(Protocol):
    """What :class:`SampleVideos` calls on a module that has ``debug_panels`` (a method)."""

    def debug_panels(
        self, identity: torch.Tensor, audio: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]: ...

    def eval_generator(self, batch_idx: int, dataloader_idx: int = 0) -> torch.Generator: ...


class SampleVideos(Callback):
    """Every ``every_n_val`` validations, write real | generated clips of the first val batch."""

    def __init__(self, folder: Path, every_n_val: int, num_videos: int) -> None:
        self.folder = Path(folder)
        self.every_n_val = every_n_val
        self.num_videos = num_videos
        self.validations = 0

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if (
            batch_idx != 0
            or dataloader_idx != 0
            or trainer.sanity_checking
            or not trainer.is_global_zero
            or self.every_n_val <= 0
            or self.validations % self.every_n_val != 0
            or not isinstance(outputs, Mapping)
            or "generated" not in outputs
        ):
            return
        panels: dict[str, torch.Tensor] = {}
        if hasattr(pl_module, "debug_panels"):
            module = cast(_WithDebugPanels, pl_module)
            n = self.num_videos
            with torch.no_grad():
                panels = module.debug_panels(
                    batch["identity"][:n],
                    batch["audio"][:n],
                    generator=module.eval_generator(batch_idx),
                )
        paths, captions = self.write(trainer.global_step, batch, outputs["generated"], panels)
        for logger in trainer.loggers:
            if is_wandb_logger(logger):
                logger.log_video(
                    "val/samples",
                    videos=paths,
                    step=trainer.global_step,
                    caption=captions,
                    format=["mp4"] * len(paths),
                )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validations += 1

    def write(
        self,
        step: int,
        batch: Mapping[str, Any],
        generated: torch.Tensor,
        panels: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[list[str], list[str]]:
        """Write up to ``num_videos`` mp4 files (real | generated | ``panels``, each
        ``N,T,3,H,W`` in [0,1]); return their paths and captions."""
        n = self.num_videos
        extra = dict(panels or {})
        side = side_by_side(
            batch["frames"][:n], generated[:n], *(p[:n] for p in extra.values())
        )  # N,T,3,H,W*panels
        names = " | ".join(["real", "generated", *extra])
        wave = batch.get("waveform")
        ids = batch.get("clip_id") or [str(i) for i in range(len(side))]
        paths, captions = [], []
        for i, clip in enumerate(side):
            path = self.folder / f"step{step:07d}-{i}.mp4"
            audio = wave[i].float().cpu().numpy() if wave is not None else None
            write_clip_mp4(path, to_uint8_video(clip), audio)
            paths.append(str(path))
            captions.append(f"{ids[i]} ({names}), step {step}")
        return paths, captions
