"""A step checkpoint is written after its step's row of metrics.csv (StepCheckpoint, RunCSVLogger).

Lightning saves a step checkpoint before it logs the step's metrics; a run killed in between
lost that row for good (its resumed run starts after it). Checked here deterministically: at the
moment each checkpoint is saved, metrics.csv already holds every step the checkpoint has trained.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from talking_faces.training.callbacks import StepCheckpoint
from talking_faces.training.loggers import RunCSVLogger


class _Regression(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _RowsAtSave(L.Callback):
    """The steps metrics.csv holds each time a checkpoint is saved."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.seen: list[tuple[int, set[int]]] = []

    def on_save_checkpoint(self, trainer: L.Trainer, *_: object) -> None:
        path = self.run_dir / "metrics.csv"
        steps: set[int] = set()
        if path.is_file():
            with open(path, newline="") as f:
                steps = {int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")}
        self.seen.append((trainer.global_step, steps))


def test_checkpoint_saved_after_its_steps_metrics(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(40, 3), torch.randn(40, 1))
    probe = _RowsAtSave(tmp_path)
    trainer = L.Trainer(
        max_steps=9,
        logger=RunCSVLogger(tmp_path, None),
        callbacks=[
            StepCheckpoint(
                dirpath=tmp_path / "ckpt", save_top_k=0, save_last=True, every_n_train_steps=3
            ),
            probe,
        ],
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(_Regression(), DataLoader(data, batch_size=4))
    assert [step for step, _ in probe.seen] == [3, 6, 9]
    for step, logged in probe.seen:
        assert set(range(step)) <= logged, (step, sorted(logged))
    # Lightning's own call for the rows written early wrote nothing twice
    with open(tmp_path / "metrics.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert steps == list(range(9))
