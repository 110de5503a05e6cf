"""One trial of a sweep: ``talking-faces fit`` then ``talking-faces evaluate``, as subprocesses.

sweep plan -> **TrialJob** (argv, folder, threads) -> **run_trial** -> trial folder:

- ``trial.json``: the trial (sweep, overrides, seed, the exact fit and evaluate commands)
- ``provenance.json``: what the results JSON records about the sweep (``evaluate --provenance``)
- ``run/``: the fit run folder (config, checkpoints, metrics.csv, samples)
- ``results.json``, ``results.clips.csv``, ``results.videos/``: what evaluate wrote
- ``trial.log``: the commands' output; ``failed.json`` when a command failed

A trial is finished exactly when ``results.json`` is there and valid (evaluate writes it
atomically, after the CSV and the videos). A trial holds an exclusive lock on ``.lock`` while it
runs, shared with its fit and evaluate processes (the file stays locked while any of them lives),
so two runners never work on one trial. A killed trial is resumed: fit runs with
``ckpt_path=last`` and goes on from the last checkpoint (or starts again when there was none).
Every executor (local threads, submitit jobs, W&B agents) runs trials through :func:`run_trial`.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talking_faces.errors import UserError
from talking_faces.orchestration.jobs import (
    ProcessRegistry,
    fit_complete,
    folder_lock,
    is_locked,
    last_error,
    run_logged,
    talking_faces_argv,
)
from talking_faces.utils.io import remove_stale_temporaries, write_json_atomic, write_text_atomic

TRIAL_FILE = "trial.json"
PROVENANCE_FILE = "provenance.json"
RESULTS_FILE = "results.json"
FAILED_FILE = "failed.json"
FIT_DONE_FILE = "fit.done"
LOG_FILE = "trial.log"
RUN_DIR = "run"


@dataclass(frozen=True)
class TrialJob:
    """Everything needed to run one trial, in plain values (picklable for submitit)."""

    name: str
    folder: str
    cwd: str
    fit_argv: tuple[str, ...]
    evaluate_argv: tuple[str, ...]
    threads: int
    #: the trial record written to ``trial.json``
    record: dict[str, Any] = field(default_factory=dict)
    #: the results' ``provenance`` (``provenance.json``)
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialOutcome:
    """How a :func:`run_trial` call ended: ``done`` (results written now or before: ``skipped``),
    ``failed`` (a command exited non-zero; ``message`` says which and why), ``busy`` (another
    runner holds the trial), ``interrupted`` (stopped; resumable)."""

    name: str
    status: str
    seconds: float = 0.0
    skipped: bool = False
    message: str = ""


# --------------------------------------------------------------------------------- status
def results_ok(folder: str | Path) -> bool:
    """Whether the trial in ``folder`` finished: a valid ``results.json``."""
    from talking_faces.evaluation.results import load_results

    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        return False
    try:
        load_results(path)
    except UserError:
        return False
    return True


def trial_status(folder: str | Path) -> str:
    """``done``, ``running`` (locked), ``failed`` (``failed.json``) or ``pending``."""
    folder = Path(folder)
    if results_ok(folder):
        return "done"
    if is_locked(folder):
        return "running"
    if (folder / FAILED_FILE).is_file():
        return "failed"
    return "pending"


# ------------------------------------------------------------------------------------ run
def _run_command(
    argv: Sequence[str],
    job: TrialJob,
    log_path: Path,
    lock_fd: int,
    registry: ProcessRegistry | None,
) -> int:
    """One of the trial's commands, run in ``job.cwd`` with its output in ``trial.log``."""
    cmd = talking_faces_argv(argv)
    return run_logged(
        cmd,
        log_path,
        job.threads,
        lock_fd,
        stamp=_dt.datetime.now().isoformat(timespec="seconds"),
        shown=" ".join(cmd),
        registry=registry,
        cwd=job.cwd,
    )


def run_trial(job: TrialJob, registry: ProcessRegistry | None = None) -> TrialOutcome:
    """Run (or finish, or skip) one trial; see the module docstring for what it writes."""
    folder = Path(job.folder)
    started = time.monotonic()
    with folder_lock(folder) as fd:
        if fd is None:
            return TrialOutcome(job.name, "busy")
        if results_ok(folder):
            return TrialOutcome(job.name, "done", skipped=True)
        (folder / FAILED_FILE).unlink(missing_ok=True)
        remove_stale_temporaries(folder)
        write_json_atomic(folder / TRIAL_FILE, job.record)
        write_json_atomic(folder / PROVENANCE_FILE, job.provenance)
        log_path = folder / LOG_FILE
        run_dir = folder / RUN_DIR

        def stopped() -> bool:
            return registry is not None and registry.stopping.is_set()

        for stage, argv in (("fit", job.fit_argv), ("evaluate", job.evaluate_argv)):
            if stage == "fit" and (folder / FIT_DONE_FILE).is_file():
                continue
            code = _run_command(argv, job, log_path, fd, registry)
            if code != 0 and registry is not None:
                time.sleep(0.5)  # a Ctrl-C reaches the commands and the sweep at the same time
            if stopped():
                return TrialOutcome(job.name, "interrupted", time.monotonic() - started)
            if code == 0 and stage == "fit" and not fit_complete(run_dir):
                # a SIGTERM from outside: resumable, not failed
                return TrialOutcome(job.name, "interrupted", time.monotonic() - started)
            if code == 0 and stage == "evaluate" and not results_ok(folder):
                code = 1
            if code != 0:
                reason = last_error(log_path)
                write_json_atomic(
                    folder / FAILED_FILE,
                    {"stage": stage, "returncode": code, "reason": reason, "log": LOG_FILE},
                )
                return TrialOutcome(
                    job.name,
                    "failed",
                    time.monotonic() - started,
                    message=f"{stage} exited {code}: {reason}",
                )
            if stage == "fit":
                write_text_atomic(folder / FIT_DONE_FILE, "ok\n")
        return TrialOutcome(job.name, "done", time.monotonic() - started)


def read_trial_record(folder: str | Path) -> dict[str, Any] | None:
    """``trial.json`` of a trial folder, or None."""
    path = Path(folder) / TRIAL_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


__all__ = [
    "TrialJob",
    "TrialOutcome",
    "read_trial_record",
    "results_ok",
    "run_trial",
    "trial_status",
]
