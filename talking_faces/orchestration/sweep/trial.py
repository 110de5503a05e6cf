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

import contextlib
import datetime as _dt
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talking_faces.errors import UserError
from talking_faces.utils.io import remove_stale_temporaries, write_json_atomic, write_text_atomic

TRIAL_FILE = "trial.json"
PROVENANCE_FILE = "provenance.json"
RESULTS_FILE = "results.json"
FAILED_FILE = "failed.json"
FIT_DONE_FILE = "fit.done"
LOCK_FILE = ".lock"
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


class ProcessRegistry:
    """The trial commands running now, so an interrupted sweep can stop them all."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)
        if self.stopping.is_set():
            proc.terminate()

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop_all(self, grace_s: float = 20.0) -> None:
        """Terminate every running command, then kill what is left after ``grace_s``."""
        self.stopping.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + grace_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()


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


def is_locked(folder: str | Path) -> bool:
    """Whether a runner (this process or another) holds the trial's lock now."""
    path = Path(folder) / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


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


@contextlib.contextmanager
def trial_lock(folder: Path) -> Iterator[int | None]:
    """Hold the trial's lock; yields its file descriptor, or None if another runner has it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------ run
def trial_env(threads: int) -> dict[str, str]:
    """The environment of a trial's commands: its share of CPU threads, quiet progress."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["TALKING_FACES_QUIET"] = "1"
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    return env


def _run_command(
    argv: Sequence[str],
    job: TrialJob,
    log_path: Path,
    lock_fd: int,
    registry: ProcessRegistry | None,
) -> int:
    cmd = [sys.executable, "-m", "talking_faces", *argv]
    with open(log_path, "a") as log:
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        log.write(f"\n== {stamp} OMP_NUM_THREADS={job.threads} {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=job.cwd,
            env=trial_env(job.threads),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(lock_fd,),  # the lock stays held while the command lives
        )
        if registry is not None:
            registry.add(proc)
        try:
            return proc.wait()
        except BaseException:  # interrupted (e.g. a cancelled submitit job): stop the command too
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            if registry is not None:
                registry.discard(proc)


def last_error(log_path: Path) -> str:
    """The command's last ``error: ...`` line (our one-line errors), else its last line."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln and not ln.startswith("== ")]
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or [""])[-1][:300]


def fit_complete(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` trained to its end: ``last.ckpt`` at ``trainer.max_steps``
    (any step when the run is bounded by ``max_time`` or epochs instead).

    A SIGTERM stops Lightning's loop early with exit status 0, so the status alone does not say.
    """
    import torch
    import yaml

    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return False
    try:
        trainer = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("trainer", {})
    except (OSError, yaml.YAMLError):
        return False
    max_steps = int(trainer.get("max_steps") or -1)
    if max_steps <= 0 or trainer.get("max_time"):
        return True
    step = int(torch.load(last, map_location="cpu", weights_only=True).get("global_step", 0))
    return step >= max_steps


def run_trial(job: TrialJob, registry: ProcessRegistry | None = None) -> TrialOutcome:
    """Run (or finish, or skip) one trial; see the module docstring for what it writes."""
    folder = Path(job.folder)
    started = time.monotonic()
    with trial_lock(folder) as fd:
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
    "ProcessRegistry",
    "TrialJob",
    "TrialOutcome",
    "fit_complete",
    "is_locked",
    "read_trial_record",
    "results_ok",
    "run_trial",
    "trial_env",
    "trial_lock",
    "trial_status",
]
