"""``talking-faces compare``: the main job. Every method on one dataset, one report.

compare config (``experiments/compare/*.yaml``, ``--quick``, ``key=value``)
  -> :mod:`~talking_faces.orchestration.compare.config` (schema and values, no torch)
  -> :mod:`~talking_faces.orchestration.compare.plan` (stages: synth, prepare, experts, fit per
     method, evaluate per method and reference row, leaderboard, report; commands and input
     keys)
  -> :mod:`~talking_faces.orchestration.compare.runner` (finished stages skipped, the rest run
     in parallel as ``talking-faces`` subprocesses through
     :mod:`~talking_faces.orchestration.jobs`, progress with the time left)
  -> :mod:`~talking_faces.orchestration.compare.report` (leaderboard files, side-by-side
     videos, curves, README)
  -> report folder ``compare/<name>/``

:func:`~talking_faces.orchestration.compare.job.run_compare` ties them together.
"""

from talking_faces.orchestration.compare.config import (
    DEFAULT_CONFIG,
    CompareConfig,
    load_compare_config,
)
from talking_faces.orchestration.compare.job import CompareRequest, run_compare

__all__ = [
    "DEFAULT_CONFIG",
    "CompareConfig",
    "CompareRequest",
    "load_compare_config",
    "run_compare",
]
