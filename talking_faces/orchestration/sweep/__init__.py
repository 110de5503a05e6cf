"""Ablation sweeps: many ``fit`` + ``evaluate`` trials from one W&B sweep file, with seeds.

SWEEP.yaml (W&B sweep config + the ``talking_faces`` constant parameter)
  -> :mod:`~talking_faces.orchestration.sweep.spec` (schema check, grid / random plan x seeds)
  -> :mod:`~talking_faces.orchestration.sweep.runner` (sweep folder and state, executor choice)
  -> :mod:`~talking_faces.orchestration.sweep.executors` (local processes |
     submitit jobs | W&B agents)
  -> :mod:`~talking_faces.orchestration.sweep.trial` (one trial: fit, then evaluate,
     as subprocesses through :mod:`~talking_faces.orchestration.jobs`)
  -> results JSON per trial (with the sweep in its ``provenance``)
  -> :mod:`~talking_faces.orchestration.sweep.summary` (summary.md / summary.csv) and the
  leaderboard
"""

from talking_faces.orchestration.sweep.runner import SweepRequest, run_sweep
from talking_faces.orchestration.sweep.spec import SweepSpec, Trial, load_sweep, plan_trials
from talking_faces.orchestration.sweep.trial import TrialJob, run_trial

__all__ = [
    "SweepRequest",
    "SweepSpec",
    "Trial",
    "TrialJob",
    "load_sweep",
    "plan_trials",
    "run_sweep",
    "run_trial",
]
