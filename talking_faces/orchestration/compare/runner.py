"""Running a compare plan: stage state, resume, stages in parallel, progress with time left.

plan (:mod:`talking_faces.orchestration.compare.plan`) -> **run_plan** -> report folder

- A stage is **finished** when ``state/<stage>.json`` records its current key and its outputs
  exist; a rerun skips it. A stage whose key changed (a new budget, an edited YAML file) is
  cleaned and run afresh; a stage that was started with the same key and killed is run again
  where it can resume (``fit ... ckpt_path=last`` goes on from its last checkpoint, ``prepare``
  keeps its finished clips).
- ``stages.jsonl`` logs every start, finish, skip, failure and interruption (with the
  invocation), ``logs/<stage>.log`` holds each command's output, ``timings.json`` the seconds of
  every stage, ``commands.sh`` the exact commands.
- Up to ``parallel`` stages run at once, each command with its share of the cores as
  ``OMP_NUM_THREADS``, through :mod:`talking_faces.orchestration.jobs` (as the sweep's
  trials are run); ``synth`` and ``prepare`` run their own worker processes with one thread
  each.
- One compare at a time per folder: the folder's ``.lock`` is held by the compare process and
  its commands (a killed compare's commands keep it until they end).
- Progress: one line when a stage starts and one when it ends, with the time elapsed and an
  estimate of the time left (the config's per-stage estimates, scheduled over the parallel
  slots, scaled by how fast this machine ran the stages that finished).
"""

from __future__ import annotations

import datetime as _dt
import heapq
import json
import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talking_faces.errors import UserError
from talking_faces.orchestration.compare.plan import Plan, Stage, leaderboard_command
from talking_faces.orchestration.jobs import (
    ProcessRegistry,
    fit_complete,
    last_error,
    run_logged,
    sigterm_as_interrupt,
    talking_faces_argv,
)
from talking_faces.utils.io import write_json_atomic, write_text_atomic

STAGES_LOG = "stages.jsonl"
TIMINGS_FILE = "timings.json"
COMMANDS_FILE = "commands.sh"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    s = int(round(max(seconds, 0.0)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{sec:02d}s" if m else f"{sec}s"


# ------------------------------------------------------------------------------ stage state
class StageStore:
    """``state/<stage>.json`` (finished, with its key), ``state/<stage>.started.json`` and the
    event log ``stages.jsonl``."""

    def __init__(self, plan: Plan, invocation: str | None = None) -> None:
        """``invocation`` None: read only (``--dry-run``), nothing is created."""
        self.plan = plan
        self.dir = plan.layout.state
        if invocation is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = plan.layout.root / STAGES_LOG
        self.invocation = invocation
        self._lock = threading.Lock()

    def record(self, stage: Stage) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / f"{stage.name}.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def finished(self, stage: Stage) -> bool:
        """The stage ran to its end with its current key, and its outputs are there."""
        rec = self.record(stage)
        return (
            rec is not None
            and rec.get("key") == stage.key
            and all(p.exists() for p in stage.outputs)
        )

    def begin(self, stage: Stage) -> bool:
        """Mark ``stage`` started; clean its outputs first unless it was started before with
        the same key (then it resumes). Returns whether it resumes."""
        started = self.dir / f"{stage.name}.started.json"
        try:
            resumes = json.loads(started.read_text()).get("key") == stage.key
        except (OSError, json.JSONDecodeError):
            resumes = False
        (self.dir / f"{stage.name}.json").unlink(missing_ok=True)
        if not resumes:
            for path in stage.clean:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        write_json_atomic(started, {"key": stage.key, "started": _now()})
        return resumes

    def finish(self, stage: Stage, seconds: float) -> None:
        write_json_atomic(
            self.dir / f"{stage.name}.json",
            {
                "key": stage.key,
                "finished": _now(),
                "seconds": round(seconds, 2),
                "command": stage.command if stage.argv else None,
                "invocation": self.invocation,
            },
        )

    def event(self, stage: Stage, event: str, **extra: Any) -> None:
        line = {
            "time": time.time(),
            "event": event,
            "stage": stage.name,
            "key": stage.key,
            "invocation": self.invocation,
            "pid": os.getpid(),
            **extra,
        }
        with self._lock, open(self.log_path, "a") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_events(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The events of ``stages.jsonl`` in a report folder (a torn last line is skipped)."""
    path = Path(root) / STAGES_LOG
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


# --------------------------------------------------------------------------------- outputs
def write_commands(plan: Plan, threads: int, parallel: int, invoked: str, smoke: bool) -> None:
    """``commands.sh``: every stage's exact command, in run order."""
    lines = [
        "#!/usr/bin/env bash",
        f"# The stages of `{invoked}`, in run order.",
        f"# Stages whose dependencies were done ran {parallel} at a time, each with",
        f"# OMP_NUM_THREADS={threads} (synth and prepare with 1: they start their own worker",
        "# processes). Run from the folder compare ran in (config paths are relative to it).",
        "set -euo pipefail",
        "",
    ]
    for s in plan.stages:
        head = f"# {s.name}" + (f" ({s.detail})" if s.detail else "")
        if s.deps:
            head += f"; after {', '.join(s.deps)}"
        lines.append(head)
        if s.kind == "leaderboard":
            banner = " (without the smoke-run banner)" if smoke else ""
            lines.append(
                "# run inside the compare process through talking_faces.reporting.leaderboard; "
                f"this command writes the same tables{banner}"
            )
            lines.append(shlex.join(leaderboard_command(plan)))
        elif s.kind == "report":
            lines.append(
                "# run inside the compare process: talking_faces.orchestration.compare.report "
                "writes the side-by-side videos, curves/ and README.md"
            )
        else:
            lines.append(shlex.join(s.command))
        lines.append("")
    write_text_atomic(plan.layout.root / COMMANDS_FILE, "\n".join(lines))


def write_timings(plan: Plan, store: StageStore, invocations: list[dict[str, Any]]) -> None:
    """``timings.json``: per stage the seconds of the run that finished it, and each compare
    invocation's wall time."""
    stages: dict[str, dict[str, Any]] = {}
    for s in plan.stages:
        rec = store.record(s) if store.finished(s) else None
        stages[s.name] = {
            "kind": s.kind,
            "detail": s.detail,
            "estimate_s": round(s.estimate_s, 1),
            "seconds": rec.get("seconds") if rec else None,
            "finished": rec.get("finished") if rec else None,
        }
    done: list[float] = [v["seconds"] for v in stages.values() if v["seconds"] is not None]
    write_json_atomic(
        plan.layout.root / TIMINGS_FILE,
        {
            "stages": stages,
            "stage_seconds_total": round(sum(done), 1),
            "invocations": invocations,
        },
    )


# -------------------------------------------------------------------------------- progress
def time_left(
    plan: Plan,
    done: set[str],
    running: dict[str, float],
    parallel: int,
    factor: float,
) -> float:
    """Seconds until every stage is done: the stages not done, with their estimates times
    ``factor`` (a running one: what is left of it), placed greedily on ``parallel`` slots after
    their dependencies, in the order :func:`run_plan` starts them (longest chain first)."""
    finish: dict[str, float] = {}
    slots: list[float] = []
    for name, elapsed in running.items():
        rest = max(plan[name].estimate_s * factor - elapsed, 1.0)
        finish[name] = rest
        slots.append(rest)
    slots += [0.0] * max(parallel - len(slots), 0)
    heapq.heapify(slots)
    ahead = critical_path_seconds(plan)
    for s in sorted(plan.stages, key=lambda s: -ahead[s.name]):
        if s.name in done or s.name in running:
            continue
        ready = max((finish.get(d, 0.0) for d in s.deps), default=0.0)
        start = max(heapq.heappop(slots), ready)
        finish[s.name] = start + s.estimate_s * factor
        heapq.heappush(slots, finish[s.name])
    return max(finish.values(), default=0.0)


@dataclass
class Progress:
    """The compare's progress lines (stderr)."""

    plan: Plan
    parallel: int
    done: set[str]
    started_at: float = field(default_factory=time.monotonic)
    #: actual and estimated seconds of the stages that ran to their end in this invocation
    measured: list[tuple[float, float]] = field(default_factory=list)
    running: dict[str, float] = field(default_factory=dict)
    #: stages that will not run now (they failed, or a stage before them did)
    dropped: set[str] = field(default_factory=set)

    @property
    def factor(self) -> float:
        if not self.measured:
            return 1.0
        actual = sum(a for a, _ in self.measured)
        estimate = sum(e for _, e in self.measured)
        return actual / max(estimate, 1e-6)

    def _left(self) -> float:
        now = time.monotonic()
        running = {n: now - t for n, t in self.running.items()}
        gone = self.done | self.dropped
        return time_left(self.plan, gone, running, self.parallel, self.factor)

    def start(self, stage: Stage, resumes: bool) -> None:
        self.running[stage.name] = time.monotonic()
        what = f" ({stage.detail})" if stage.detail else ""
        again = ", resuming" if resumes else ""
        est = duration(stage.estimate_s * self.factor)
        print(f"{'start':<7}{stage.name}{what}{again}; about {est}", file=sys.stderr, flush=True)

    def end(self, stage: Stage, status: str, seconds: float, message: str = "") -> None:
        self.running.pop(stage.name, None)
        if status == "done":
            self.done.add(stage.name)
            self.measured.append((seconds, stage.estimate_s))
        total = len(self.plan.stages)
        elapsed = duration(time.monotonic() - self.started_at)
        tail = f"; {message}" if message else ""
        print(
            f"{status:<7}{stage.name} in {duration(seconds)} · {len(self.done)}/{total} stages "
            f"done · elapsed {elapsed} · about {duration(self._left())} left{tail}",
            file=sys.stderr,
            flush=True,
        )


# ------------------------------------------------------------------------------ execution
@dataclass
class StageOutcome:
    stage: Stage
    status: str  # done | failed | interrupted
    seconds: float
    message: str = ""


def _run_command(
    stage: Stage,
    log_path: Path,
    threads: int,
    lock_fd: int,
    registry: ProcessRegistry,
) -> int:
    """Run the stage's command as ``python -m talking_faces ...``, output to ``log_path``."""
    return run_logged(
        talking_faces_argv(stage.argv),
        log_path,
        threads,
        lock_fd,
        stamp=_now(),
        shown=shlex.join(stage.command),
        registry=registry,
    )


def _verify(stage: Stage) -> str:
    """Why a stage whose command exited 0 is not finished ('' when it is)."""
    missing = [p for p in stage.outputs if not p.exists()]
    if missing:
        return f"it did not write {missing[0]}"
    if stage.run_dir is not None and not fit_complete(stage.run_dir):
        return "its fit stopped before trainer.max_steps (stopped from outside?)"
    if stage.results is not None:
        from talking_faces.evaluation.results import load_results

        try:
            load_results(stage.results)
        except UserError as exc:
            return str(exc)
    return ""


def _after(plan: Plan, name: str) -> set[str]:
    """Every stage that depends on ``name``, directly or not."""
    out: set[str] = set()
    for s in plan.stages:  # dependencies come first
        if name in s.deps or out & set(s.deps):
            out.add(s.name)
    return out


@dataclass
class _Run:
    """What :func:`run_plan` keeps while it runs: the stages finished, waiting, running, and
    those that will not run now (``blocked``: failed, or after a failed one)."""

    plan: Plan
    store: StageStore
    parallel: int
    threads: int
    lock_fd: int
    in_process: dict[str, Callable[[], None]]
    invocations: list[dict[str, Any]]
    done: set[str]
    progress: Progress
    registry: ProcessRegistry = field(default_factory=ProcessRegistry)
    pending: list[Stage] = field(default_factory=list)
    running: dict[Future, Stage] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    outcomes: list[StageOutcome] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ran: int = 0


def run_plan(
    plan: Plan,
    store: StageStore,
    parallel: int,
    threads: int,
    lock_fd: int,
    in_process: dict[str, Callable[[], None]],
    invocations: list[dict[str, Any]],
) -> list[StageOutcome]:
    """Run every stage of ``plan`` that is not finished, dependencies first, up to
    ``parallel`` at a time; return the outcomes of the stages that ran.

    ``in_process`` runs the stages without a command (by kind); ``invocations`` is what
    ``timings.json`` records, the last one this invocation (its ``stages_run`` and
    ``wall_seconds`` kept up to date).
    """
    done = _skip_finished(plan, store)
    run = _Run(
        plan,
        store,
        parallel,
        threads,
        lock_fd,
        in_process,
        invocations,
        done,
        Progress(plan, parallel, set(done)),
    )
    # the longest chain first: among the stages that are ready, the one with the most estimated
    # seconds still ahead of it (itself and the longest path through what depends on it) starts
    # first, so the longest fit does not start last and run alone at the end
    ahead = critical_path_seconds(plan)
    run.pending = sorted(
        (s for s in plan.stages if s.name not in done), key=lambda s: -ahead[s.name]
    )
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="stage")
    try:
        with sigterm_as_interrupt():
            while run.pending or run.running:
                _submit_ready(run, pool)
                if not run.running:
                    break
                finished, _ = wait(list(run.running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    _record_outcome(run, run.running.pop(fut), fut)
    except BaseException:
        run.registry.stop_all()
        for stage in run.running.values():
            store.event(stage, "interrupted")
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return run.outcomes


def critical_path_seconds(plan: Plan) -> dict[str, float]:
    """Per stage: its estimate plus the longest chain of estimates through the stages that
    depend on it (the least time from its start to the end of the plan)."""
    after: dict[str, list[str]] = {s.name: [] for s in plan.stages}
    for s in plan.stages:
        for d in s.deps:
            after[d].append(s.name)
    out: dict[str, float] = {}
    for s in reversed(plan.stages):  # dependencies come first, so dependents are done here
        out[s.name] = s.estimate_s + max((out[n] for n in after[s.name]), default=0.0)
    return out


def _skip_finished(plan: Plan, store: StageStore) -> set[str]:
    """The stages finished before (each logged as skipped)."""
    done = {s.name for s in plan.stages if store.finished(s)}
    for s in plan.stages:
        if s.name in done:
            store.event(s, "skip")
    return done


def _submit_ready(run: _Run, pool: ThreadPoolExecutor) -> None:
    """Start the waiting stages whose dependencies are done, while a slot is free; drop those
    after a stage that will not run now."""
    for stage in list(run.pending):
        if len(run.running) >= run.parallel:
            break
        if any(d in run.blocked for d in stage.deps):
            run.pending.remove(stage)
            run.blocked.add(stage.name)
            run.progress.dropped.add(stage.name)
            continue
        if all(d in run.done for d in stage.deps):
            run.pending.remove(stage)
            run.running[pool.submit(_run_stage, run, stage)] = stage


def _run_stage(run: _Run, stage: Stage) -> StageOutcome:
    """One stage: marked started (cleaned unless it resumes), its command or in-process step,
    its outputs checked, marked finished."""
    t0 = time.monotonic()
    resumes = run.store.begin(stage)
    run.store.event(stage, "start", resumes=resumes)
    run.progress.start(stage, resumes)
    log_path = run.plan.layout.logs / f"{stage.name}.log"
    if stage.argv:
        threads = run.threads if stage.threads == "share" else 1
        code = _run_command(stage, log_path, threads, run.lock_fd, run.registry)
        if run.registry.stopping.is_set():
            return StageOutcome(stage, "interrupted", time.monotonic() - t0)
        if code != 0:
            return StageOutcome(
                stage,
                "failed",
                time.monotonic() - t0,
                f"exit {code}: {last_error(log_path)} (log: {log_path})",
            )
    else:
        try:
            run.in_process[stage.kind]()
        except UserError as exc:
            return StageOutcome(stage, "failed", time.monotonic() - t0, str(exc))
    why = _verify(stage)
    if why:
        return StageOutcome(stage, "failed", time.monotonic() - t0, why)
    seconds = time.monotonic() - t0
    run.store.finish(stage, seconds)
    return StageOutcome(stage, "done", seconds)


def _record_outcome(run: _Run, stage: Stage, fut: Future) -> None:
    """A stage that ended: its event, what depends on it dropped if it did not finish, the
    progress line, this invocation's ``timings.json`` so far (a killed compare leaves its last
    state)."""
    try:
        outcome = fut.result()
    except Exception as exc:  # a bug or an OS error in one stage: record it
        outcome = StageOutcome(stage, "failed", 0.0, f"{type(exc).__name__}: {exc}")
    run.outcomes.append(outcome)
    run.store.event(
        stage,
        {"done": "finish", "failed": "fail"}.get(outcome.status, outcome.status),
        seconds=round(outcome.seconds, 2),
        message=outcome.message,
    )
    if outcome.status == "done":
        run.done.add(stage.name)
        run.ran += 1
    else:
        run.blocked.add(stage.name)
        run.progress.dropped.add(stage.name)
        run.progress.dropped.update(_after(run.plan, stage.name))
    run.progress.end(stage, outcome.status, outcome.seconds, outcome.message)
    run.invocations[-1]["stages_run"] = run.ran
    run.invocations[-1]["wall_seconds"] = round(time.monotonic() - run.started, 1)
    write_timings(run.plan, run.store, run.invocations)


__all__ = [
    "COMMANDS_FILE",
    "STAGES_LOG",
    "TIMINGS_FILE",
    "Progress",
    "StageOutcome",
    "StageStore",
    "critical_path_seconds",
    "duration",
    "read_events",
    "run_plan",
    "time_left",
    "write_commands",
    "write_timings",
]
