"""Which process is this: global rank as launchers announce it, before any process group exists.

``fit`` (run folder writes on rank 0 only), loggers (one W&B id file) -> **global_rank_from_env**
"""

from __future__ import annotations

import os


def global_rank_from_env() -> int:
    """This process's global rank as launchers announce it (0 when not distributed)."""
    for var in ("RANK", "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    # Lightning's subprocess launcher sets LOCAL_RANK/NODE_RANK on the processes it starts
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")) or 0)
    return local + node * 10_000  # only "is it zero" matters here
