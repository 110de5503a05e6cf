"""Which process is this, and what the others hold: ranks as launchers announce them, and a
gather that is a no-op in one process.

``fit`` (run folder writes on rank 0 only), loggers (one W&B id file) -> **global_rank_from_env**;
``resume.RankGeneratorStates``, ``distributed_eval`` -> **all_gather_objects**

:func:`global_rank_from_env` answers before any process group exists, by the rule Lightning's
trainer uses to choose its cluster environment: SLURM when the job was started with ``srun`` (or
``sbatch``) and is not an interactive shell (``SLURM_PROCID``), torchrun / torchelastic
(``RANK``), MPI launchers (``PMI_RANK``, ``OMPI_COMM_WORLD_RANK``), else Lightning's own launcher,
which starts the other processes of a node with ``LOCAL_RANK`` set and takes the node's index
from ``NODE_RANK`` (``GROUP_RANK`` under torchrun).
"""

from __future__ import annotations

import os
import warnings
from typing import Any


def global_rank_from_env() -> int:
    """This process's global rank as launchers announce it (0 when not distributed).

    Under Lightning's own launcher only "is it zero" is exact: the value for another process is
    ``LOCAL_RANK + 10000 * NODE_RANK`` (the number of processes per node is not in the
    environment yet).
    """
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    with warnings.catch_warnings():
        # detect() warns when srun exists but is not used; the trainer says it again
        warnings.simplefilter("ignore")
        slurm = SLURMEnvironment.detect()
    if slurm and os.environ.get("SLURM_PROCID", "").isdigit():
        return int(os.environ["SLURM_PROCID"])
    if TorchElasticEnvironment.detect() and os.environ.get("RANK", "").isdigit():
        return int(os.environ["RANK"])
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    if os.environ.get("RANK", "").isdigit():  # a launcher that sets the torch.distributed variables
        return int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")) or 0)
    return local + node * 10_000


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]``: every rank's picklable ``obj`` on every rank.

    ``[obj]`` when no ``torch.distributed`` process group is running. Every rank of the group must
    call it (it is a collective).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
