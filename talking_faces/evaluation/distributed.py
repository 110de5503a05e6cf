"""``talking-faces evaluate --devices N``: the fixed test pairs sharded over N processes.

EvaluationRequest -> **score_on_devices** (Lightning Fabric starts N processes on this machine:
gloo on CPU, NCCL on GPUs 0..N-1) -> :func:`talking_faces.evaluation.loop.score` in every process
(batch i of the pair batches on process i mod N; metric states reduced across the processes,
per-pair rows gathered in pair order) -> process 0's :class:`~talking_faces.evaluation.loop.Scored`
-> :func:`talking_faces.evaluation.evaluate.evaluate` writes the results JSON and per-clip CSV

Generation is seeded by the batch's index and the batches are those of a one-process run, so the
per-clip CSV is the same file as with one process (given the same threads per process,
``OMP_NUM_THREADS``) and the metrics are the same to the last bit: their states keep the per-pair
terms and sum them exactly, in any order (:mod:`talking_faces.metrics.exact`).
``CUDA_VISIBLE_DEVICES`` chooses the GPUs.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any

from talking_faces.errors import UserError
from talking_faces.evaluation.generated import GeneratedFolder
from talking_faces.evaluation.loop import Scored, score
from talking_faces.evaluation.pairs import PairSelection, pair_dataset
from talking_faces.evaluation.request import EvaluationRequest, window_config
from talking_faces.evaluation.scorers import build_scorers

#: how long a process waits for the others at a collective before the run fails
TIMEOUT = _dt.timedelta(minutes=30)


@dataclasses.dataclass  # not frozen: Fabric's launcher rebuilds what a process returns
class _Failure:
    """A :class:`UserError` raised in process 0, carried back to the command."""

    message: str


def _check_devices(req: EvaluationRequest) -> str:
    """The device kind (``cpu`` or ``cuda``) of a request for ``req.devices`` processes.

    Raises:
        UserError: another kind, an indexed device (``cuda:1``), more GPUs than there are.
    """
    import torch

    kind = str(req.device).split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise UserError(f"--devices {req.devices} runs on cpu or cuda, not {req.device!r}")
    if ":" in str(req.device):
        raise UserError(
            f"--device {req.device} with --devices {req.devices}: give --device {kind}; process "
            "r uses GPU r (choose the GPUs with CUDA_VISIBLE_DEVICES)"
        )
    if kind == "cuda" and torch.cuda.device_count() < req.devices:
        raise UserError(
            f"--devices {req.devices} needs {req.devices} GPUs; {torch.cuda.device_count()} "
            "are visible"
        )
    return kind


def score_on_devices(req: EvaluationRequest) -> Scored:
    """Run :func:`~talking_faces.evaluation.loop.score` in ``req.devices`` processes; return
    process 0's measurements.

    ``req.device`` chooses the kind: ``cpu`` or ``cuda`` (process r uses GPU r).

    Raises:
        UserError: an indexed device (``cuda:1``) or more GPUs than there are; any UserError of
            the evaluation itself (the same one line as with one process).
    """
    from lightning.fabric import Fabric
    from lightning.fabric.strategies import DDPStrategy

    from talking_faces.data.dataset import PreparedDataset

    kind = _check_devices(req)
    # the mistakes a user makes most (dataset, protocol, experts, generated files) stop here,
    # before any process starts, with the line one process would print
    prepared = PreparedDataset.load(req.data)
    build_scorers(
        req.protocol,
        req.data,
        req.syncnet,
        req.landmarks_model,
        req.syncnet_public,
        arcface=req.arcface,
    )
    if req.generated is not None:  # every pair's file is there
        pairs = pair_dataset(prepared, req.split, window_config(None))
        count = PairSelection.of(prepared, pairs, req.limit, req.data).count
        GeneratedFolder.match(req.generated, pairs.pairs[:count], int(prepared.meta["size"]))
    fabric = Fabric(
        accelerator=kind,
        devices=req.devices,
        strategy=DDPStrategy(start_method="spawn", timeout=TIMEOUT),
    )
    # Fabric.launch(fn, *args) passes args on to fn; its annotation names only the Fabric
    out = fabric.launch(_score_in_process, req)  # type: ignore[arg-type]
    if isinstance(out, _Failure):
        raise UserError(out.message)
    return out


def _score_in_process(fabric: Any, req: EvaluationRequest) -> Scored | None | _Failure:
    """One process of :func:`score_on_devices` (its process group is running)."""
    req = dataclasses.replace(req, device=str(fabric.device))
    try:
        return score(req)
    except UserError as exc:  # raised alike in every process: each stops before a collective
        return _Failure(str(exc))
    finally:
        # Every collective is done here. Tear the group down before the process exits: left to
        # the interpreter's shutdown, gloo's threads were sometimes destroyed while joinable
        # ("terminate called without an active exception", SIGABRT) on a loaded machine.
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


__all__ = ["TIMEOUT", "score_on_devices"]
