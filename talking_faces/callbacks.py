"""What a run does besides training: atomic checkpoints, provenance in them, sample videos.

``fit`` -> ``lightning.Trainer(callbacks=..., plugins=...)`` -> **AtomicCheckpointIO** (checkpoint
files), **RunInfo** (the resolved run config inside every checkpoint), **SampleVideos**
(``RUN/samples/*.mp4``: real | generated | the method's debug panels, audio muxed; also sent to
W&B).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

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
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class RunInfo(Callback):
    """Puts the resolved run config into every checkpoint (``checkpoint["run_config"]``)."""

    def __init__(self, run_config: dict[str, Any]) -> None:
        self.run_config = run_config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint):
        checkpoint["run_config"] = self.run_config


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
        panels = {}
        if hasattr(pl_module, "debug_panels"):
            n = self.num_videos
            with torch.no_grad():
                panels = pl_module.debug_panels(
                    batch["identity"][:n],
                    batch["audio"][:n],
                    generator=pl_module.eval_generator(batch_idx),
                )
        paths, captions = self.write(trainer.global_step, batch, outputs["generated"], panels)
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
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
    ):
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
