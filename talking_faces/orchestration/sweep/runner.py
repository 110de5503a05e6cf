"""``talking-faces sweep``: the sweep folder, its state, and the executor that runs the trials.

SWEEP.yaml -> load_sweep -> plan_trials -> **run_sweep**: sweep folder ``OUT/``

- ``sweep.json``: the sweep's state: file and sha256, settings, the command line's extra
  overrides, the plan's sha256 and trials, W&B sweep id when registered
- ``trials/<trial>/``: one folder per trial (see :mod:`talking_faces.orchestration.sweep.trial`)
- ``summary.md``, ``summary.csv``: each configuration, mean ± std over seeds, best first
- ``submitit/``: submitit's job logs (``--executor submitit``)

Rerunning the same command skips finished trials, waits for trials another runner holds, and
reruns failed or killed ones (a killed fit resumes from its last checkpoint). A sweep folder
belongs to one plan: a rerun with another sweep file content or other overrides is refused.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talking_faces import __version__
from talking_faces.errors import UserError
from talking_faces.names import HIGHER_IS_BETTER, last_checkpoint
from talking_faces.orchestration.jobs import (
    default_threads,
    sigterm_as_interrupt,
    talking_faces_argv,
)
from talking_faces.orchestration.sweep.executors import (
    EXECUTORS,
    SweepProgress,
    log_to_wandb,
    register_wandb,
    run_local,
    run_submitit,
)
from talking_faces.orchestration.sweep.spec import (
    SweepSpec,
    Trial,
    check_extra_overrides,
    load_sweep,
    overrides_of,
    plan_trials,
    settings_record,
    trial_from_agent_args,
    wandb_sweep_config,
    wandb_violations,
)
from talking_faces.orchestration.sweep.summary import write_summary
from talking_faces.orchestration.sweep.trial import (
    PROVENANCE_FILE,
    RESULTS_FILE,
    RUN_DIR,
    TrialJob,
    read_trial_record,
    run_trial,
    trial_status,
)
from talking_faces.utils.io import sha256_json, write_json_atomic
from talking_faces.utils.provenance import git_info

STATE_FILE = "sweep.json"
STATE_FORMAT = "talking_faces.orchestration.sweep/1"


@dataclass
class SweepRequest:
    """What ``talking-faces sweep`` was asked to do."""

    sweep: str
    executor: str = "local"
    parallel: int = 1
    out: str | None = None
    data: str | None = None
    overrides: list[str] = field(default_factory=list)
    cluster: str | None = None
    agent_trial: str | None = None


# --------------------------------------------------------------------------------- state
def plan_sha256(spec: SweepSpec, extra_overrides: Sequence[str]) -> str:
    """What fixes every trial (the parameters, the settings a trial uses, the extra overrides)."""
    s = settings_record(spec)
    return sha256_json(
        {
            "method": spec.method,
            "run_cap": spec.run_cap,
            "parameters": spec.parameters,
            "settings": {k: v for k, v in s.items() if k not in ("out", "submitit")},
            "extra_overrides": list(extra_overrides),
        }
    )


def sweep_folder(spec: SweepSpec, out: str | None) -> Path:
    """``--out``, else the file's ``talking_faces.out``, else ``runs/sweeps/<name>``."""
    return Path(out or spec.settings.out or Path("runs") / "sweeps" / spec.name)


def open_state(
    spec: SweepSpec,
    sweep_dir: Path,
    extra_overrides: Sequence[str],
    executor: str,
    trials: Sequence[Trial] | None,
) -> dict[str, Any]:
    """Create ``sweep.json`` or check that the folder's sweep is this one; return the state.

    Raises:
        UserError: the folder holds a sweep with another plan.
    """
    path = sweep_dir / STATE_FILE
    digest = plan_sha256(spec, extra_overrides)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    state: dict[str, Any] = {}
    if path.is_file():
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{path} is not valid JSON; delete it or pass another --out") from None
        if state.get("plan_sha256") != digest:
            was = " ".join(state.get("extra_overrides") or []) or "none"
            raise UserError(
                f"sweep folder {sweep_dir} holds another sweep (file {state.get('file')}, "
                f"overrides: {was}); rerun with the same sweep file and overrides to continue "
                "it, or pass another --out"
            )
    state.update(
        {
            "format": STATE_FORMAT,
            "name": spec.name,
            "file": str(spec.path),
            "file_sha256": spec.sha256,
            "method": spec.method,
            "metric": spec.metric,
            "goal": spec.goal,
            "run_cap": spec.run_cap,
            "settings": settings_record(spec),
            "extra_overrides": list(extra_overrides),
            "plan_sha256": digest,
            "updated": now,
            "package_version": __version__,
            "git_commit": git_info()["commit"],
        }
    )
    state.setdefault("created", now)
    state.setdefault("executors", [])
    if executor not in state["executors"]:
        state["executors"].append(executor)
    if trials is not None:
        state["trials"] = [
            {"name": t.name, "config_id": t.config_id, "swept": t.swept, "seed": t.seed}
            for t in trials
        ]
    write_json_atomic(path, state)
    return state


# ---------------------------------------------------------------------------------- jobs
def trial_job(
    spec: SweepSpec, trial: Trial, sweep_dir: Path, extra_overrides: Sequence[str], threads: int
) -> TrialJob:
    """The commands of ``trial`` and what its results record about the sweep."""
    s = spec.settings
    folder = sweep_dir / "trials" / trial.name
    fit_argv = (
        "fit",
        *s.configs,
        f"data.root={s.data}",
        *overrides_of(trial.overrides),
        *extra_overrides,
        f"seed={trial.seed}",
        f"out={folder}",
        f"name={RUN_DIR}",
        "ckpt_path=last",
    )
    evaluate_argv = (
        "evaluate",
        last_checkpoint(str(folder / RUN_DIR)),
        "--data",
        s.data,
        "--protocol",
        s.protocol,
        "--samples",
        str(s.samples),
        "--videos",
        str(s.videos),
        "--batch-size",
        str(s.eval_batch_size),
        "--seed",
        str(trial.seed),
        "--out",
        str(folder / RESULTS_FILE),
        "--provenance",
        str(folder / PROVENANCE_FILE),
    )
    sweep = {
        "name": spec.name,
        "file": str(spec.path),
        "sha256": spec.sha256,
        "method": spec.method,
        "metric": spec.metric,
        "goal": spec.goal,
        "trial": trial.name,
        "config_id": trial.config_id,
        "overrides": trial.overrides,
        "swept": trial.swept,
        "seed": trial.seed,
        "extra_overrides": list(extra_overrides),
    }
    record = {
        **sweep,
        "threads": threads,
        "fit": ["talking-faces", *fit_argv],
        "evaluate": ["talking-faces", *evaluate_argv],
    }
    return TrialJob(
        name=trial.name,
        folder=str(folder),
        cwd=os.getcwd(),
        fit_argv=fit_argv,
        evaluate_argv=evaluate_argv,
        threads=threads,
        record=record,
        provenance={"sweep": sweep},
    )


def check_fit_config(job: TrialJob) -> None:
    """Let ``fit --print-config`` check one trial's config before any trial starts, so a
    mistyped override fails at once with fit's own message (unknown key, closest valid one)."""
    proc = subprocess.run(
        talking_faces_argv([*job.fit_argv, "--print-config"]),
        cwd=job.cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "TALKING_FACES_QUIET": "1"},
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if ln.startswith("error:")), None)
        reason = (reason or (lines[-1] if lines else f"exit {proc.returncode}")).removeprefix(
            "error: "
        )
        raise UserError(f"trial {job.name}: fit refuses its config: {reason}")


# ----------------------------------------------------------------------------------- run
def run_sweep(req: SweepRequest) -> int:
    """Run (or continue, or register) the sweep ``req`` describes; return the exit status."""
    if req.executor not in EXECUTORS:
        raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}, got {req.executor!r}")
    if req.parallel < 1:
        raise UserError("--parallel must be at least 1")
    spec = load_sweep(req.sweep, req.data)
    extras = check_extra_overrides(req.overrides)
    check_metric(spec)
    sweep_dir = sweep_folder(spec, req.out)
    if req.agent_trial is not None:
        return agent_trial(spec, sweep_dir, extras, req.agent_trial)
    if req.executor == "wandb":
        return register(spec, sweep_dir, extras)
    if req.cluster is not None and req.executor != "submitit":
        raise UserError("--cluster applies to --executor submitit")

    trials = plan_trials(spec)
    open_state(spec, sweep_dir, extras, req.executor, trials)
    threads = default_threads(req.parallel)
    if req.executor == "submitit" and "cpus_per_task" in spec.settings.submitit:
        threads = int(spec.settings.submitit["cpus_per_task"])
    jobs = [trial_job(spec, t, sweep_dir, extras, threads) for t in trials]
    status = {j.name: trial_status(j.folder) for j in jobs}
    todo = [j for j in jobs if status[j.name] != "done"]
    counts = {s: list(status.values()).count(s) for s in ("done", "running", "failed", "pending")}
    if todo:
        check_fit_config(todo[0])
    print(
        f"sweep {spec.name}: {len(jobs)} trials in {sweep_dir} ({counts['done']} done, "
        f"{counts['running']} running elsewhere, {counts['failed']} failed before, "
        f"{counts['pending']} to run); {req.parallel} at a time, {threads} threads each",
        file=sys.stderr,
    )
    outcomes = []
    if todo:
        prog = SweepProgress(spec.name, len(jobs), counts["done"])
        try:
            with sigterm_as_interrupt():
                if req.executor == "local":
                    outcomes = run_local(todo, req.parallel, prog)
                else:
                    outcomes = run_submitit(
                        todo,
                        req.parallel,
                        prog,
                        sweep_dir / "submitit",
                        req.cluster,
                        dict(spec.settings.submitit),
                    )
        except KeyboardInterrupt:
            prog.close()
            write_summary(spec, trials, sweep_dir, extras)
            raise
        prog.close()
    md, csv_path, rows = write_summary(spec, trials, sweep_dir, extras)
    print(md.read_text())
    print(f"wrote {md} and {csv_path}", file=sys.stderr)
    failed = [o for o in outcomes if o.status == "failed"]
    left = [j.name for j in jobs if trial_status(j.folder) != "done"]
    if failed or left:
        print(
            f"error: {len(left)} of {len(jobs)} trials did not finish "
            f"({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}); see their trial.log "
            "under trials/, then rerun the same command to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def check_metric(spec: SweepSpec) -> None:
    """The target metric's goal agrees with its direction (``lse_c`` is better higher, ...)."""
    if spec.metric is None:
        return
    direction = HIGHER_IS_BETTER.get(spec.metric)
    if direction is None:
        return
    want = "maximize" if direction else "minimize"
    if spec.goal != want:
        raise UserError(
            f"sweep file {spec.path}: {spec.metric} is better when "
            f"{'higher' if direction else 'lower'}, but metric.goal is {spec.goal} "
            f"(W&B's default when goal is absent); set goal: {want}"
        )


def register(spec: SweepSpec, sweep_dir: Path, extras: Sequence[str]) -> int:
    """``--executor wandb``: register the sweep with W&B and print the agent command."""
    config = wandb_sweep_config(spec, str(sweep_dir), extras)
    violations = wandb_violations(config)
    if violations:  # our additions (seed, command) must keep it valid
        raise UserError(f"the sweep config for W&B is not valid: {violations[0]}")
    sweep_id, agent = register_wandb(config)
    state = open_state(spec, sweep_dir, extras, "wandb", None)
    state["wandb"] = {"sweep_id": sweep_id, "agent": agent, "config": config}
    write_json_atomic(sweep_dir / STATE_FILE, state)
    print(f"registered W&B sweep {sweep_id}; start agents (on machines that share {sweep_dir}):")
    print(f"  {agent}")
    return 0


def discovered_trials(spec: SweepSpec, sweep_dir: Path) -> list[Trial]:
    """Trials found in the sweep folder (the plan of W&B-run sweeps lives on the server)."""
    trials = []
    for folder in sorted((sweep_dir / "trials").glob("*")):
        record = read_trial_record(folder)
        if record and record.get("sha256") is not None:
            trials.append(
                Trial(
                    name=record["trial"],
                    overrides=record["overrides"],
                    swept=record["swept"],
                    seed=int(record["seed"]),
                    config_id=record["config_id"],
                )
            )
    return trials


def agent_trial(spec: SweepSpec, sweep_dir: Path, extras: Sequence[str], args_file: str) -> int:
    """What a W&B agent runs for one of its runs: the trial its parameters name (written by the
    agent to ``${args_json_file}``), through :func:`run_trial`, then the scores to W&B."""
    from talking_faces.evaluation.results import load_results

    try:
        args = json.loads(Path(args_file).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read the W&B agent's parameters {args_file}: {exc}") from None
    if not isinstance(args, dict):
        raise UserError(f"{args_file} does not hold a JSON object of parameters")
    trial = trial_from_agent_args(spec, args)
    open_state(spec, sweep_dir, extras, "wandb-agent", None)
    job = trial_job(spec, trial, sweep_dir, extras, default_threads(1))
    outcome = run_trial(job)
    if outcome.status == "busy":
        raise UserError(f"trial {trial.name} is being run by another process; not run twice")
    trials = discovered_trials(spec, sweep_dir)
    write_summary(spec, trials, sweep_dir, extras)
    if outcome.status != "done":
        print(f"error: trial {trial.name} {outcome.status}: {outcome.message}", file=sys.stderr)
        return 1
    results = load_results(Path(job.folder) / RESULTS_FILE)[0]
    log_to_wandb(results, args, Path(job.folder))
    print(f"trial {trial.name}: results in {Path(job.folder) / RESULTS_FILE}")
    return 0


__all__ = [
    "STATE_FILE",
    "SweepRequest",
    "agent_trial",
    "check_fit_config",
    "discovered_trials",
    "open_state",
    "plan_sha256",
    "run_sweep",
    "sweep_folder",
    "trial_job",
]
