"""Exact resume under DDP: the state each rank holds for itself, saved for every rank.

fit (``fit.build_callbacks`` adds **RankGeneratorStates**) -> checkpoint (rank 0 writes it, holding
every rank's state) -> ``ckpt_path=last`` -> each rank gets its own state back

Lightning writes a checkpoint from global rank 0 only, so a module hook that stores per-process
state (``TalkingFaceModule.on_save_checkpoint`` stores ``train_generator_state``) stores rank 0's;
on resume every rank would continue with rank 0's training-noise generator and draw the noise
rank 0 draws, so a resumed 2-process run would leave the uninterrupted one at the first step. The
other state of a resumed run is the same on every rank or restored per rank by Lightning and
LitData: weights and optimizer (identical across DDP ranks), the loop counters, and the
``StreamingDataLoader`` state (the samples each rank has yielded, equal on every rank because
LitData gives ranks equal shares; the epoch and seed decide each rank's part).

:class:`RankGeneratorStates` gathers every rank's generator state into the checkpoint when any
rank saves (``Trainer.save_checkpoint`` runs the hooks on every rank, which makes the gather
safe) and, on resume, gives each rank its own state back once the module has created its
generator (``on_fit_start``), before the first training batch. A checkpoint written with another
number of processes cannot say which state belongs to which new rank: each rank then keeps the
module's own choice (rank 0's state, or a fresh seed) and the log says so.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from talking_faces.utils.distributed import all_gather_objects

log = logging.getLogger("talking_faces.training.resume")

#: checkpoint key: list over global ranks of ``train_generator.get_state()`` (uint8 tensors)
STATES_KEY = "rank_train_generator_states"


class RankGeneratorStates(Callback):
    """Save every rank's ``pl_module.train_generator`` state; restore each rank's own on resume.

    Modules without a ``train_generator`` attribute (the evaluation experts) are left alone.
    """

    def __init__(self) -> None:
        self._pending: torch.Tensor | None = None

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        gen = getattr(pl_module, "train_generator", None)
        state = gen.get_state() if isinstance(gen, torch.Generator) else None
        # every rank takes part in the gather, also one whose generator is not set yet
        states = all_gather_objects(state)
        if any(s is not None for s in states):
            checkpoint[STATES_KEY] = states

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get(STATES_KEY)
        self._pending = None
        if not states:
            return
        if len(states) != trainer.world_size:
            if trainer.global_rank == 0:
                log.warning(
                    "the checkpoint was written by %d processes and this run has %d: the "
                    "training-noise generators are not restored per rank, so the resumed run "
                    "draws other noise than an uninterrupted one",
                    len(states),
                    trainer.world_size,
                )
            return
        self._pending = states[trainer.global_rank]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gen = getattr(pl_module, "train_generator", None)
        if self._pending is not None and isinstance(gen, torch.Generator):
            gen.set_state(self._pending)
        self._pending = None
