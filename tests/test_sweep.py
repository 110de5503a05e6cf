"""talking-faces sweep: the sweep file (W&B's own schema check), the plan, the executors, and
experiments/sweeps/ldm_beta.yaml run for real, killed midway and rerun (tests/sweep_data.py)."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sweep_data import ROOT, SMOKE, SWEEP, before_kill, sweep_command, sweep_env

from talking_faces.cli.main import main
from talking_faces.errors import UserError
from talking_faces.evaluation.results import load_results
from talking_faces.orchestration.sweep.spec import (
    load_sweep,
    plan_configurations,
    plan_trials,
    trial_from_agent_args,
    wandb_sweep_config,
    wandb_violations,
)

CONFIGS = [
    "experiments/base.yaml",
    "experiments/data/synthetic.yaml",
    "experiments/model/ldm_tiny.yaml",
]


pytestmark = pytest.mark.usefixtures("repo_cwd")  # configs name experiments/... (conftest.py)


def write_sweep(path: Path, **changes) -> Path:
    """A sweep file: ldm_beta.yaml's content with ``changes`` at top level (None deletes)."""
    config = yaml.safe_load((ROOT / SWEEP).read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def error_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ------------------------------------------------------------------------------ the file
def test_ldm_beta_passes_wandbs_own_sweep_config_validation() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps import SweepConfig
        from sweeps.config import schema_violations_from_proposed_config

    config = yaml.safe_load((ROOT / SWEEP).read_text())
    assert schema_violations_from_proposed_config(config) == []
    assert SweepConfig(config)["method"] == "grid"
    # and what --executor wandb registers (with seed as a parameter and the agent's command)
    registered = wandb_sweep_config(
        load_sweep(SWEEP), "runs/sweeps/ldm_beta", ["trainer.max_steps=5"]
    )
    assert schema_violations_from_proposed_config(registered) == []
    assert registered["parameters"]["seed"] == {"values": [0, 1]}
    assert "${args_json_file}" in registered["command"]


def test_wandb_schema_rejects_what_it_should(tmp_path: Path, capsys) -> None:
    bad = write_sweep(tmp_path / "bad.yaml", seeds=2)  # our key at top level: not W&B's
    assert "seeds" in error_line(capsys, ["sweep", str(bad)])
    bad = write_sweep(tmp_path / "bad2.yaml", parameters={"model.beta": {"values": 1e-6}})
    assert "not a valid W&B sweep config" in error_line(capsys, ["sweep", str(bad)])


def test_plan_of_ldm_beta() -> None:
    spec = load_sweep(SWEEP)
    assert spec.metric == "lse_c" and spec.goal == "maximize"
    assert spec.swept == ["model.beta"]
    trials = plan_trials(spec)
    assert [(t.swept["model.beta"], t.seed) for t in trials] == [
        (1e-6, 0),
        (1e-6, 1),
        (1e-4, 0),
        (1e-4, 1),
    ]
    assert len({t.name for t in trials}) == 4
    # the seeds of one configuration share its id
    assert trials[0].config_id == trials[1].config_id != trials[2].config_id


def test_nested_parameters_and_random_search(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / SWEEP).read_text())["parameters"]
    params.pop("model.beta")
    params["model"] = {
        "parameters": {
            "beta": {"distribution": "log_uniform_values", "min": 1e-7, "max": 1e-3},
            "z_dim": {"values": [4, 8]},
        }
    }
    path = write_sweep(tmp_path / "random.yaml", method="random", run_cap=3, parameters=params)
    spec = load_sweep(path)
    first, again = plan_configurations(spec), plan_configurations(spec)
    assert first == again and len(first) == 3  # seeded: a rerun plans the same trials
    assert all(1e-7 <= c["model.beta"] <= 1e-3 and c["model.z_dim"] in (4, 8) for c in first)
    assert len(plan_trials(spec)) == 6  # x 2 seeds
    no_cap = write_sweep(tmp_path / "nocap.yaml", method="random", parameters=params)
    with pytest.raises(UserError, match="run_cap"):
        load_sweep(no_cap)


def test_named_variants_expand_to_their_overrides(tmp_path: Path) -> None:
    """amie's ablation: one swept parameter whose values name sets of switches."""
    spec = load_sweep(ROOT / "experiments/sweeps/amie_ablation.yaml")
    assert spec.swept == ["row"] and wandb_violations(spec.config) == []
    trials = plan_trials(spec)
    assert len(trials) == 8 * 3  # the paper's seven rows and no_l1
    by_row = {t.swept["row"]: t for t in trials if t.seed == 0}
    assert by_row["baseline"].overrides["model.mi_weight"] == 0.0
    assert by_row["baseline"].overrides["model.da"] is False
    assert "row" not in by_row["full"].overrides
    assert by_row["full"].overrides["model.asymmetric"] is True
    assert by_row["full"].name == "row-full_seed0"
    assert by_row["no_l1"].overrides["model.w_l1"] == 0.0
    assert len({t.config_id for t in trials}) == 8
    config = yaml.safe_load((ROOT / "experiments/sweeps/amie_ablation.yaml").read_text())
    config["parameters"]["row"]["values"].append("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(UserError, match="'nope'"):
        load_sweep(bad)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"method": "bayes"}, "bayes"),
        ({"metric": {"name": "lse_c", "goal": "minimize"}}, "goal: maximize"),
        ({"metric": {"name": "lse_c"}}, "goal: maximize"),
    ],
)
def test_local_executor_refuses_with_one_line(tmp_path: Path, capsys, change, expected) -> None:
    path = write_sweep(tmp_path / "s.yaml", **change)
    assert expected in error_line(capsys, ["sweep", str(path), "--out", str(tmp_path / "o")])


def test_bad_settings_and_overrides(tmp_path: Path, capsys) -> None:
    params = yaml.safe_load((ROOT / SWEEP).read_text())["parameters"]
    params["talking_faces"]["value"]["seed"] = 3
    path = write_sweep(tmp_path / "typo.yaml", parameters=params)
    assert "did you mean 'seeds'" in error_line(capsys, ["sweep", str(path)])
    assert "set by the sweep" in error_line(capsys, ["sweep", SWEEP, "seed=3"])
    params = yaml.safe_load((ROOT / SWEEP).read_text())["parameters"]
    params.pop("talking_faces")
    path = write_sweep(tmp_path / "none.yaml", parameters=params)
    assert "talking_faces" in error_line(capsys, ["sweep", str(path)])


def test_a_mistyped_override_fails_before_any_trial(tmp_path: Path, trained: Path, capsys):
    out = tmp_path / "o"
    argv = ["sweep", SWEEP, "--data", str(trained), "--out", str(out), "model.betta=1"]
    line = error_line(capsys, argv)
    assert "fit refuses its config" in line and "model.beta" in line  # fit's closest-key hint
    assert not list((out / "trials").glob("*/results.json"))


def test_sweep_folder_belongs_to_one_plan(tmp_path: Path) -> None:
    from talking_faces.orchestration.sweep.runner import open_state

    spec = load_sweep(SWEEP, data=str(tmp_path / "prep"))
    open_state(spec, tmp_path, ["trainer.max_steps=5"], "local", plan_trials(spec))
    open_state(spec, tmp_path, ["trainer.max_steps=5"], "local", plan_trials(spec))  # same: fine
    with pytest.raises(UserError, match="holds another sweep"):
        open_state(spec, tmp_path, ["trainer.max_steps=6"], "local", plan_trials(spec))


# ------------------------------------------------------------------------------ W&B offline
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wandb_executor_without_server_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    argv = ["sweep", SWEEP, "--executor", "wandb", "--out", str(tmp_path / "o")]
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert "WANDB_MODE=offline" in error_line(capsys, argv)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert "not logged in to W&B" in error_line(capsys, argv)
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_free_port()}")
    assert "cannot be reached" in error_line(capsys, argv)
    assert not (tmp_path / "o" / "sweep.json").exists()  # nothing registered, nothing written


def _agent_args(spec, trial) -> dict:
    """What `wandb agent` writes to ${args_json_file} for this trial (W&B's own code)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    params = {k: {"value": v} for k, v in trial.overrides.items()}
    params["talking_faces"] = {"value": spec.config["parameters"]["talking_faces"]["value"]}
    params["seed"] = {"value": trial.seed}
    return json.loads(create_sweep_command_args({"args": params})["args_json"][0])


def test_agent_parameters_name_the_planned_trial() -> None:
    spec = load_sweep(SWEEP)
    for trial in plan_trials(spec):
        assert trial_from_agent_args(spec, _agent_args(spec, trial)) == trial
    args = _agent_args(spec, plan_trials(spec)[0])
    args["model.gamma"] = 1
    with pytest.raises(UserError, match="model.gamma"):
        trial_from_agent_args(spec, args)


# ------------------------------------------------------------------------------ real runs
def _trial_log_commands(folder: Path, stage: str) -> int:
    lines = (folder / "trial.log").read_text().splitlines()
    return sum(1 for ln in lines if ln.startswith("== ") and f" talking_faces {stage} " in ln)


@pytest.mark.slow
def test_killed_sweep_rerun_finishes_every_trial_once(sweep_dir: Path) -> None:
    state = json.loads((sweep_dir / "sweep.json").read_text())
    names = [t["name"] for t in state["trials"]]
    assert len(names) == 4 and state["extra_overrides"] == SMOKE
    assert sorted(p.name for p in (sweep_dir / "trials").iterdir()) == sorted(names)
    killed = before_kill(sweep_dir)
    assert 1 <= len(killed["finished"]) < 4, "the kill did not land midway"
    for name in names:
        folder = sweep_dir / "trials" / name
        results = load_results(folder / "results.json")[0]
        sweep = results["provenance"]["sweep"]
        assert sweep["trial"] == name and sweep["name"] == "ldm_beta"
        assert sweep["seed"] == results["seed"] == int(name.rsplit("seed", 1)[1])
        assert sweep["overrides"]["model.beta"] in (1e-6, 1e-4)
        assert sweep["extra_overrides"] == SMOKE
        with open(folder / "results.clips.csv", newline="") as f:
            pairs = [int(r["pair"]) for r in csv.DictReader(f)]
        assert pairs == list(range(results["pairs"]["evaluated"]))
        # resumed, not repeated: every training step logged once
        with open(folder / "run" / "metrics.csv", newline="") as f:
            steps = [r["step"] for r in csv.DictReader(f) if r.get("train/loss")]
        assert len(steps) == len(set(steps))
        assert (folder / "results.videos").is_dir() and results["videos"]
        if name in killed["finished"]:  # finished before the kill: skipped by the rerun
            assert (folder / "results.json").stat().st_mtime == killed["mtimes"][name]
            assert _trial_log_commands(folder, "evaluate") == 1
    summary = (sweep_dir / "summary.md").read_text()
    assert summary.count("| 2/2 |") == 2 and "**lse_c**" in summary
    with open(sweep_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model.beta"] for r in rows] in (["1e-06", "0.0001"], ["0.0001", "1e-06"])
    assert all(r["done"] == "2" and r["lse_c_std"] for r in rows)
    means = [float(r["lse_c_mean"]) for r in rows]
    assert means == sorted(means, reverse=True)  # best first for goal maximize


@pytest.mark.slow
def test_a_rerun_of_a_finished_sweep_runs_nothing(sweep_dir: Path, trained: Path) -> None:
    mtimes = {p: p.stat().st_mtime for p in sweep_dir.glob("trials/*/results.json")}
    cmd = sweep_command(trained, sweep_dir, "--parallel", "2")
    proc = subprocess.run(cmd, cwd=ROOT, env=sweep_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 done" in proc.stderr and "0 to run" in proc.stderr
    assert {p: p.stat().st_mtime for p in sweep_dir.glob("trials/*/results.json")} == mtimes


@pytest.mark.slow
def test_submitit_and_wandb_agent_run_the_same_trial(
    sweep_dir: Path, trained: Path, tmp_path: Path
) -> None:
    from talking_faces.orchestration.sweep.executors import SweepProgress, run_submitit
    from talking_faces.orchestration.sweep.runner import trial_job

    spec = load_sweep(SWEEP, data=str(trained))
    # a trial that ran uninterrupted in the local sweep
    trial = next(
        t
        for t in plan_trials(spec)
        if _trial_log_commands(sweep_dir / "trials" / t.name, "fit") == 1
    )
    local_folder = sweep_dir / "trials" / trial.name
    local = load_results(local_folder / "results.json")[0]
    threads = json.loads((local_folder / "trial.json").read_text())["threads"]

    # submitit's local executor: a job in its own process running the same trial
    out = tmp_path / "submitit-sweep"
    job = trial_job(spec, trial, out, SMOKE, threads)
    outcomes = run_submitit([job], 1, SweepProgress("t", 1, 0), out / "submitit", "local", {})
    assert [o.status for o in outcomes] == ["done"], outcomes
    assert json.loads((Path(job.folder) / "submitit.json").read_text())["cluster"] == "local"
    remote = load_results(Path(job.folder) / "results.json")[0]
    assert remote["metrics"] == local["metrics"]
    assert remote["provenance"]["sweep"]["overrides"] == local["provenance"]["sweep"]["overrides"]

    # a W&B agent's run: the parameters file the agent writes, the command the sweep registers
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(_agent_args(spec, trial)))
    out = tmp_path / "agent-sweep"
    cmd = [sys.executable, "-m", "talking_faces", "sweep", SWEEP, "--data", str(trained)]
    cmd += ["--out", str(out), "--agent-trial", str(args_file), *SMOKE]
    env = {**sweep_env(), "WANDB_MODE": "offline", "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    agent = load_results(out / "trials" / trial.name / "results.json")[0]
    assert agent["metrics"] == local["metrics"]
    assert list((out / "trials" / trial.name / "wandb").glob("offline-run-*"))
    assert (out / "summary.md").is_file()
