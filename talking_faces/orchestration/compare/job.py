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
import shlex
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talking_faces.errors import UserError
from talking_faces.orchestration.compare.config import (
    DEFAULT_CONFIG,
    CompareConfig,
    check_raw,
    load_compare_config,
    to_plain,
)
from talking_faces.orchestration.jobs import cores, default_threads, folder_lock

if TYPE_CHECKING:
    from talking_faces.orchestration.compare.plan import Plan
    from talking_faces.orchestration.compare.runner import StageOutcome, StageStore


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

    plan = build_plan(cfg, root)
    # as many stages at once as there are cores, at most the widest step (the evaluations)
    widest = len(plan.methods) + len(plan.references)
    parallel = req.parallel or cfg.parallel or max(1, min(cores(), widest))
    threads = default_threads(parallel)
    if req.dry_run:
        _print_dry_run(plan, root, parallel, threads)
        return 0
    root.mkdir(parents=True, exist_ok=True)
    with folder_lock(root) as lock_fd:
        if lock_fd is None:
            raise UserError(
                f"another compare is running in {root} (its .lock is held); wait for it to end "
                "or pass another --out"
            )
        return _run_locked(req, cfg, plan, parallel, threads, lock_fd)


def _print_dry_run(plan: Plan, root: Path, parallel: int, threads: int) -> None:
    """``--dry-run``: each stage, finished or not, and its command."""
    from talking_faces.orchestration.compare.runner import StageStore

    print(f"# {len(plan.stages)} stages in {root}; {parallel} at a time, {threads} thread(s)")
    store = StageStore(plan)  # read only
    for s in plan.stages:
        status = "done" if store.finished(s) else "to run"
        command = shlex.join(s.command) if s.argv else "(in the compare process)"
        print(f"{s.name:<24} {status:<7} {s.key[:12]}  {command}")


def _run_locked(
    req: CompareRequest,
    cfg: CompareConfig,
    plan: Plan,
    parallel: int,
    threads: int,
    lock_fd: int,
) -> int:
    """The compare in its locked report folder: files written first, the stages, the end."""
    from talking_faces.orchestration.compare.report import write_leaderboard, write_report
    from talking_faces.orchestration.compare.runner import run_plan, write_timings

    invocation = uuid.uuid4().hex[:12]
    invoked = req.invoked()
    store = _start_folder(plan, cfg, invocation, invoked, parallel, threads)
    _announce(req, cfg, plan, store, parallel, threads)
    history = _earlier_invocations(plan.layout.root)
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
    return _report_end(cfg, plan, store, outcomes, record)


def _start_folder(
    plan: Plan, cfg: CompareConfig, invocation: str, invoked: str, parallel: int, threads: int
) -> StageStore:
    """Stale temporaries removed, ``config.yaml`` and ``commands.sh`` written; the stage store
    of this invocation."""
    from omegaconf import OmegaConf

    from talking_faces.orchestration.compare.runner import StageStore, write_commands
    from talking_faces.utils.io import remove_stale_temporaries, write_text_atomic

    root = plan.layout.root
    for sub in ("state", "videos", "curves", "work/results"):
        remove_stale_temporaries(root / sub)
    store = StageStore(plan, invocation)
    config_yaml = OmegaConf.to_yaml(OmegaConf.create(to_plain(cfg)))
    write_text_atomic(root / "config.yaml", f"# {invoked}\n{config_yaml}")
    write_commands(plan, threads, parallel, invoked, cfg.smoke)
    return store


def _announce(
    req: CompareRequest,
    cfg: CompareConfig,
    plan: Plan,
    store: StageStore,
    parallel: int,
    threads: int,
) -> None:
    """The opening lines (stderr): stages done and to run, the methods left out."""
    done = sum(store.finished(s) for s in plan.stages)
    smoke = " (smoke run)" if cfg.smoke else ""
    print(
        f"compare {cfg.name}{smoke}: {len(plan.stages)} stages in {plan.layout.root} ({done} done "
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


def _report_end(
    cfg: CompareConfig,
    plan: Plan,
    store: StageStore,
    outcomes: list[StageOutcome],
    record: dict[str, Any],
) -> int:
    """The closing lines: the stages left and why (exit 1), else the leaderboard (exit 0)."""
    from talking_faces.orchestration.compare.runner import duration

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
    from talking_faces.orchestration.compare.report import data_identity_line

    print(plan.layout.leaderboard["md"].read_text())
    print(f"compare {cfg.name}: {data_identity_line(plan, cfg)}", file=sys.stderr)
    print(
        f"compare {cfg.name}: {len(outcomes)} stages ran in "
        f"{duration(record['wall_seconds'])}; report: {plan.layout.root / 'README.md'} "
        "(leaderboard.html, videos/, curves/)",
        file=sys.stderr,
    )
    return 0


__all__ = ["CompareRequest", "run_compare"]
