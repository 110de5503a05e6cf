"""One ``talking-faces compare`` invocation: config -> plan -> stages -> report folder.

:class:`CompareRequest` -> **run_compare**: load and check the config (no torch), build the plan
(every fit config validated), lock the report folder, write ``config.yaml`` and
``commands.sh``, run the stages that are not finished, record the invocation in
``timings.json``, print the leaderboard. ``--dry-run`` prints the plan (each stage, finished or
not, and its command) and runs nothing.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talking_faces.errors import UserError
from talking_faces.orchestration.compare.config import (
    DEFAULT_CONFIG,
    check_raw,
    load_compare_config,
    to_plain,
)


@dataclass
class CompareRequest:
    """What ``talking-faces compare`` was asked to do."""

    config: str = DEFAULT_CONFIG
    overrides: list[str] = field(default_factory=list)
    quick: bool = False
    parallel: int | None = None
    out: str | None = None
    dry_run: bool = False

    def invoked(self) -> str:
        """The command line that makes this request."""
        parts = ["talking-faces", "compare", self.config]
        parts += ["--quick"] if self.quick else []
        parts += ["--out", self.out] if self.out else []
        return shlex.join([*parts, *self.overrides])


def cores() -> int:
    """CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _earlier_invocations(root: Path) -> list[dict[str, Any]]:
    """The invocations ``timings.json`` recorded before (kept across reruns)."""
    from talking_faces.orchestration.compare.runner import TIMINGS_FILE

    try:
        items = json.loads((root / TIMINGS_FILE).read_text()).get("invocations")
    except (OSError, json.JSONDecodeError, AttributeError):
        return []
    return list(items) if isinstance(items, list) else []


def _invocation_record(
    invocation: str, invoked: str, parallel: int, threads: int
) -> dict[str, Any]:
    """What ``timings.json`` keeps of one compare invocation (updated while it runs)."""
    return {
        "invocation": invocation,
        "command": invoked,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parallel": parallel,
        "threads": threads,
        "cores": cores(),
        "stages_run": 0,
        "wall_seconds": None,
    }


def run_compare(req: CompareRequest) -> int:
    """Run (or continue) the comparison ``req`` describes; return the exit status."""
    if req.parallel is not None and req.parallel < 1:
        raise UserError("--parallel must be at least 1")
    cfg = load_compare_config(req.config, req.overrides, req.quick)
    check_raw(cfg)
    root = Path(req.out) if req.out else Path("compare") / cfg.name

    from talking_faces.orchestration.compare.plan import build_plan
    from talking_faces.orchestration.compare.runner import StageStore, duration
    from talking_faces.orchestration.sweep.runner import default_threads

    plan = build_plan(cfg, root)
    # as many stages at once as there are cores, at most the widest step (the evaluations)
    widest = len(plan.methods) + len(plan.references)
    parallel = req.parallel or cfg.parallel or max(1, min(cores(), widest))
    threads = default_threads(parallel)
    if req.dry_run:
        print(f"# {len(plan.stages)} stages in {root}; {parallel} at a time, {threads} thread(s)")
        store = StageStore(plan)  # read only
        for s in plan.stages:
            status = "done" if store.finished(s) else "to run"
            command = shlex.join(s.command) if s.argv else "(in the compare process)"
            print(f"{s.name:<24} {status:<7} {s.key[:12]}  {command}")
        return 0

    from omegaconf import OmegaConf

    from talking_faces.orchestration.compare.report import write_leaderboard, write_report
    from talking_faces.orchestration.compare.runner import run_plan, write_commands, write_timings
    from talking_faces.orchestration.sweep.trial import trial_lock
    from talking_faces.utils.io import remove_stale_temporaries, write_text_atomic

    root.mkdir(parents=True, exist_ok=True)
    with trial_lock(root) as lock_fd:
        if lock_fd is None:
            raise UserError(
                f"another compare is running in {root} (its .lock is held); wait for it to end "
                "or pass another --out"
            )
        for sub in ("state", "videos", "curves", "work/results"):
            remove_stale_temporaries(root / sub)
        invocation = uuid.uuid4().hex[:12]
        store = StageStore(plan, invocation)
        invoked = req.invoked()
        config_yaml = OmegaConf.to_yaml(OmegaConf.create(to_plain(cfg)))
        write_text_atomic(root / "config.yaml", f"# {invoked}\n{config_yaml}")
        write_commands(plan, threads, parallel, invoked, cfg.smoke)
        done = sum(store.finished(s) for s in plan.stages)
        smoke = " (smoke run)" if cfg.smoke else ""
        print(
            f"compare {cfg.name}{smoke}: {len(plan.stages)} stages in {root} ({done} done "
            f"before, {len(plan.stages) - done} to run); {parallel} at a time, {threads} "
            "thread(s) each",
            file=sys.stderr,
            flush=True,
        )
        if plan.not_in_config:
            print(
                f"methods in MODELS without a preset in {req.config} (not run): "
                f"{', '.join(plan.not_in_config)}",
                file=sys.stderr,
            )
        history = _earlier_invocations(root)
        record = _invocation_record(invocation, invoked, parallel, threads)
        history.append(record)
        results = [s.results for s in plan.stages if s.results is not None]
        in_process = {
            "leaderboard": lambda: write_leaderboard(results, plan.layout.leaderboard, cfg.smoke),
            "report": lambda: write_report(plan, cfg, invoked),
        }
        started = time.monotonic()
        try:
            outcomes = run_plan(plan, store, parallel, threads, lock_fd, in_process, history)
        finally:
            record["wall_seconds"] = round(time.monotonic() - started, 1)
            write_timings(plan, store, history)
        left = [s.name for s in plan.stages if not store.finished(s)]
        if left:
            failed = next((o for o in outcomes if o.status != "done"), None)
            why = f" {failed.stage.name} {failed.status}: {failed.message};" if failed else ""
            print(
                f"error: {len(left)} of {len(plan.stages)} stages did not finish "
                f"({', '.join(left[:4])}{', ...' if len(left) > 4 else ''});{why} fix it and "
                "rerun the same command to continue",
                file=sys.stderr,
            )
            return 1
        print(plan.layout.leaderboard["md"].read_text())
        print(
            f"compare {cfg.name}: {len(outcomes)} stages ran in "
            f"{duration(record['wall_seconds'])}; report: {root / 'README.md'} (leaderboard.html, "
            "videos/, curves/)",
            file=sys.stderr,
        )
    return 0


__all__ = ["CompareRequest", "cores", "run_compare"]
