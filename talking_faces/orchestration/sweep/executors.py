"""Where trials run: local processes, submitit (SLURM) jobs, or W&B agents.

trial jobs -> **run_local** (threads that each run a trial's commands as subprocesses) |
**run_submitit** (one submitit job per trial) | **register_wandb** (the W&B server hands trials
to ``wandb agent`` processes, which run ``talking-faces sweep ... --agent-trial``) -> trial
folders -> summary

Every executor runs a trial through :func:`talking_faces.orchestration.sweep.trial.run_trial`. The
local and submitit executors keep at most ``parallel`` trials running and show one progress line
(trials done / running / failed, ETA); a trial that another runner holds (a second sweep command, a
job left from an interrupted one) is waited for, then taken over if it did not finish.
"""

from __future__ import annotations

import contextlib
import netrc
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from talking_faces.errors import UserError
from talking_faces.orchestration.jobs import ProcessRegistry, is_locked
from talking_faces.orchestration.sweep.trial import TrialJob, TrialOutcome, results_ok, run_trial
from talking_faces.utils.io import write_json_atomic
from talking_faces.utils.progress import progress

EXECUTORS = ("local", "submitit", "wandb")
WANDB_DEFAULT_URL = "https://api.wandb.ai"


class SweepProgress:
    """The live line: trials done of all (with tqdm's rate and ETA), running, failed; one
    printed line per trial that ends."""

    def __init__(self, name: str, total: int, done: int) -> None:
        self.bar = progress(total=total, initial=done, desc=f"sweep {name}", unit="trial")
        # a terminal gets a ticking clock; a log file only a line when something changes
        fp = getattr(self.bar, "fp", None)  # absent when the bar is disabled (quiet)
        self.live = bool(fp is not None and getattr(fp, "isatty", lambda: False)())
        self.running = 0
        self.failed = 0
        self._shown = ""
        self.refresh(0)

    def refresh(self, running: int) -> None:
        self.running = running
        text = f"{running} running, {self.failed} failed"
        if text != self._shown:
            self._shown = text
            self.bar.set_postfix_str(text, refresh=True)
        elif self.live:
            self.bar.refresh()

    def finished(self, outcome: TrialOutcome) -> None:
        if outcome.status == "done":
            self.bar.update(1)
            if not outcome.skipped:
                self.bar.write(
                    f"done   {outcome.name} ({_duration(outcome.seconds)})", file=sys.stderr
                )
        elif outcome.status == "failed":
            self.failed += 1
            self.bar.write(f"failed {outcome.name}: {outcome.message}", file=sys.stderr)
        self.refresh(self.running)

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _failed(job: TrialJob, exc: BaseException) -> TrialOutcome:
    return TrialOutcome(job.name, "failed", message=f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------- scheduler
def _schedule(
    jobs: Sequence[TrialJob],
    parallel: int,
    prog: SweepProgress,
    start: Callable[[TrialJob], Any],
    poll: Callable[[Any], TrialOutcome | None],
    stop: Callable[[list[Any]], None],
) -> list[TrialOutcome]:
    """Keep up to ``parallel`` trials running: ``start(job)`` returns a handle, ``poll(handle)``
    its outcome once ended (else None), ``stop(handles)`` ends them when interrupted."""
    queue = deque(jobs)
    running: dict[int, tuple[TrialJob, Any]] = {}
    elsewhere: list[TrialJob] = []  # held by another runner: wait, then take over
    outcomes: list[TrialOutcome] = []
    try:
        while queue or running or elsewhere:
            while queue and len(running) < parallel:
                job = queue.popleft()
                handle = start(job)
                running[id(handle)] = (job, handle)
            for job in list(elsewhere):
                if not is_locked(job.folder):
                    elsewhere.remove(job)
                    if results_ok(job.folder):
                        outcome = TrialOutcome(job.name, "done", skipped=True)
                        outcomes.append(outcome)
                        prog.finished(outcome)
                    else:
                        queue.append(job)
            ended = False
            for key, (job, handle) in list(running.items()):
                polled = poll(handle)
                if polled is None:
                    continue
                outcome = polled
                ended = True
                del running[key]
                if outcome.status == "busy":
                    elsewhere.append(job)
                    continue
                outcomes.append(outcome)
                prog.finished(outcome)
            prog.refresh(len(running) + len(elsewhere))
            if not ended:
                time.sleep(0.5)
    except BaseException:
        stop([h for _, h in running.values()])
        raise
    return outcomes


def run_local(jobs: Sequence[TrialJob], parallel: int, prog: SweepProgress) -> list[TrialOutcome]:
    """Run ``jobs`` as local processes, ``parallel`` trials at a time."""
    registry = ProcessRegistry()
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="trial")

    def start(job: TrialJob) -> tuple[TrialJob, Future]:
        return job, pool.submit(run_trial, job, registry)

    def poll(handle: tuple[TrialJob, Future]) -> TrialOutcome | None:
        job, fut = handle
        if not fut.done():
            return None
        try:
            return fut.result()
        except Exception as exc:  # a bug or an OS error in one trial: record it, go on
            return _failed(job, exc)

    def stop(handles: list) -> None:
        registry.stop_all()
        pool.shutdown(wait=True, cancel_futures=True)

    try:
        return _schedule(jobs, parallel, prog, start, poll, stop)
    finally:
        pool.shutdown(wait=True)


def run_submitit(
    jobs: Sequence[TrialJob],
    parallel: int,
    prog: SweepProgress,
    folder: Path,
    cluster: str | None,
    parameters: dict[str, Any],
) -> list[TrialOutcome]:
    """Run ``jobs`` as submitit jobs (SLURM, or submitit's ``local`` / ``debug`` executors),
    at most ``parallel`` at a time; each job's id is kept in ``<trial>/submitit.json``."""
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)
    params = {"timeout_min": 24 * 60, **parameters}
    try:
        executor.update_parameters(**params)
    except (ValueError, TypeError, NameError) as exc:
        raise UserError(
            f"submitit parameters {sorted(params)}: {str(exc).splitlines()[0]} (set them in the "
            "sweep file's talking_faces.submitit)"
        ) from None

    def start(job: TrialJob) -> tuple[TrialJob, Any]:
        sub = executor.submit(run_trial, job)
        write_json_atomic(
            Path(job.folder) / "submitit.json",
            {"job_id": str(sub.job_id), "cluster": executor.cluster, "folder": str(folder)},
        )
        return job, sub

    def poll(handle: tuple[TrialJob, Any]) -> TrialOutcome | None:
        job, sub = handle
        if executor.cluster != "debug" and not sub.done():
            return None
        try:
            return sub.result()
        except Exception as exc:  # the job failed outside run_trial (killed, timed out)
            return _failed(job, exc)

    def stop(handles: list) -> None:
        for _, sub in handles:
            with contextlib.suppress(Exception):
                sub.cancel()

    return _schedule(jobs, parallel, prog, start, poll, stop)


# ---------------------------------------------------------------------------------- W&B
def check_wandb_ready() -> str:
    """The W&B server's URL, once a sweep can be registered there.

    Raises:
        UserError: W&B switched off (``WANDB_MODE``), no login, or the server unreachable; each
            in one line saying what to do.
    """
    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("offline", "dryrun", "disabled"):
        raise UserError(
            f"WANDB_MODE={mode}: --executor wandb registers the sweep on a W&B server; unset "
            "WANDB_MODE and `wandb login`, or run the trials here with --executor local"
        )
    url = os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_URL)
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if not os.environ.get("WANDB_API_KEY") and not _netrc_has(host):
        raise UserError(
            f"not logged in to W&B ({url}: no WANDB_API_KEY and no ~/.netrc entry): run "
            "`wandb login` first, or run the trials here with --executor local"
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"W&B server {url} cannot be reached ({reason}); check the network or "
            "WANDB_BASE_URL, or run the trials here with --executor local"
        ) from None
    return url


def _netrc_has(host: str) -> bool:
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def register_wandb(config: dict[str, Any]) -> tuple[str, str]:
    """Register ``config`` with the W&B server; return ``(sweep id, agent command)``."""
    check_wandb_ready()
    import wandb

    project = config.get("project") or "talking_faces"
    entity = config.get("entity")
    try:
        sweep_id = wandb.sweep(sweep=config, project=project, entity=entity)
    except Exception as exc:
        raise UserError(f"W&B refused the sweep: {str(exc).splitlines()[0]}") from None
    path = "/".join(p for p in (entity, project, sweep_id) if p)
    return sweep_id, f"wandb agent {path}"


def log_to_wandb(results: dict[str, Any], params: dict[str, Any], folder: Path) -> None:
    """Send a finished trial's scores to its W&B run (the agent's run: ``wandb.init`` picks the
    sweep and run from the environment the agent set)."""
    import wandb

    scores = {k: v for k, v in results["metrics"].items() if isinstance(v, (int, float))}
    for k, v in (results.get("method_metrics") or {}).items():
        if isinstance(v, (int, float)):
            scores[f"method_metrics.{k}"] = v
    run = wandb.init(config=params, dir=str(folder), job_type="sweep-trial")
    try:
        run.log(scores)
        run.summary.update(scores)
    finally:
        run.finish()


__all__ = [
    "EXECUTORS",
    "SweepProgress",
    "check_wandb_ready",
    "log_to_wandb",
    "register_wandb",
    "run_local",
    "run_submitit",
]
