"""``talking-faces evaluate --devices N``: the fixed test pairs sharded over N processes.

EvaluationRequest -> **evaluate_on_devices** (Lightning Fabric starts N processes on this machine:
gloo on CPU, NCCL on GPUs 0..N-1) -> :func:`talking_faces.evaluation.evaluate.evaluate` in every
process (batch i of the pair batches on process i mod N; metric states reduced across the processes,
per-pair rows gathered in pair order) -> process 0 writes the results JSON and per-clip CSV

Generation is seeded by the batch's index and the batches are those of a one-process run, so the
per-clip CSV is the same file as with one process (given the same threads per process,
``OMP_NUM_THREADS``) and the metrics are the same to float64 rounding: their states are float64
sums over pairs, which torchmetrics reduces as N partial sums, an order of addition that can change
the last bit. ``CUDA_VISIBLE_DEVICES`` chooses the GPUs.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any

from talking_faces.errors import UserError

#: how long a process waits for the others at a collective before the run fails
TIMEOUT = _dt.timedelta(minutes=30)


@dataclasses.dataclass  # not frozen: Fabric's launcher rebuilds what a process returns
class _Failure:
    """A :class:`UserError` raised in process 0, carried back to the command."""

    message: str


def evaluate_on_devices(req: Any) -> dict[str, Any]:
    """Run ``evaluate(req)`` in ``req.devices`` processes; return process 0's results.

    ``req.device`` chooses the kind: ``cpu`` or ``cuda`` (process r uses GPU r).

    Raises:
        UserError: an indexed device (``cuda:1``) or more GPUs than there are; any UserError of
            the evaluation itself (the same one line as with one process).
    """
    import torch
    from lightning.fabric import Fabric
    from lightning.fabric.strategies import DDPStrategy

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
    # the mistakes a user makes most (dataset, protocol, experts) stop here, before any process
    # starts, with the line one process would print
    from talking_faces.data.dataset import PreparedDataset
    from talking_faces.evaluation.evaluate import build_scorers

    PreparedDataset.load(req.data)
    build_scorers(req.protocol, req.data, req.syncnet, req.landmarks_model, req.syncnet_public)
    fabric = Fabric(
        accelerator=kind,
        devices=req.devices,
        strategy=DDPStrategy(start_method="spawn", timeout=TIMEOUT),
    )
    out = fabric.launch(_evaluate_in_process, req)
    if isinstance(out, _Failure):
        raise UserError(out.message)
    return out


def _evaluate_in_process(fabric: Any, req: Any) -> dict[str, Any] | _Failure:
    """One process of :func:`evaluate_on_devices` (its process group is running)."""
    from talking_faces.evaluation.evaluate import evaluate

    req = dataclasses.replace(req, device=str(fabric.device))
    try:
        return evaluate(req)
    except UserError as exc:  # raised alike in every process: each stops before a collective
        return _Failure(str(exc))
