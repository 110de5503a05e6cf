"""talking-faces compare: its configs, its plan and keys, and ``compare --quick`` run for real.

The quick run goes through the real CLI as a subprocess, once per session: it is killed (SIGKILL
to its process group: compare and its stage commands) once a stage has finished and a later one
is running, preferably a fit that has written a checkpoint, then the same command finishes it.
The report folder it leaves is what the other slow tests check (the ``quick_run`` fixture of
conftest.py, built by tests/compare_data.py; notebooks/02_compare.ipynb reads it too).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from compare_data import METHODS, ROOT, quick_command, quick_env

from talking_faces.cli.main import main
from talking_faces.evaluation.results import load_results
from talking_faces.orchestration.compare.config import load_compare_config
from talking_faces.orchestration.compare.plan import build_plan
from talking_faces.orchestration.compare.report import SMOKE_TITLE
from talking_faces.orchestration.compare.runner import (
    critical_path_seconds,
    read_events,
    time_left,
)

SYNTHETIC = "experiments/compare/synthetic.yaml"
REFERENCES = ("ground-truth", "static", "shuffled")


pytestmark = pytest.mark.usefixtures("repo_cwd")  # configs name experiments/... (conftest.py)


def error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ---------------------------------------------------------------------------------- configs
def test_synthetic_config_and_its_quick_section() -> None:
    cfg = load_compare_config(SYNTHETIC)
    assert cfg.name == "synthetic" and not cfg.smoke and cfg.raw is None
    s = cfg.synth
    assert s is not None and (s.layout, s.speakers, s.clips, s.size) == ("grid", 4, 20, 128)
    assert (cfg.prepare.size, cfg.prepare.landmarks) == (64, "sidecar")
    budgets = {m: p.max_steps for m, p in cfg.active_methods.items()}
    assert budgets == {"ldm": 1500, "davs": 2500, "amie": 2200}
    assert cfg.seeds == 3  # the default comparison: mean ± std over three training seeds
    assert cfg.methods["ldm"].samples == 3 and cfg.evaluate.protocol == "synthetic"
    assert all(p.max_steps is None and not p.overrides for p in cfg.experts.values())

    quick = load_compare_config(SYNTHETIC, quick=True)
    assert quick.smoke and quick.name == "synthetic-quick" and quick.seeds == 1
    assert all(p.max_steps < 50 for p in quick.active_methods.values())


@pytest.mark.parametrize(
    ("config", "layout", "size", "data_yaml"),
    [("grid", "grid", 128, "grid"), ("lrw", "lrw", 256, "lrw")],
)
def test_real_data_configs_build_a_valid_plan(
    tmp_path: Path, config: str, layout: str, size: int, data_yaml: str
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    cfg = load_compare_config(f"experiments/compare/{config}.yaml", [f"raw={raw}"])
    # every fit config is validated the way `fit` validates it while the plan is built
    plan = build_plan(cfg, tmp_path / "out")
    names = [s.name for s in plan.stages]
    assert "synth" not in names and names[0] == "prepare"
    assert plan.methods == list(METHODS)
    prepare = plan["prepare"].argv
    assert prepare[1] == str(raw)
    assert prepare[prepare.index("--landmarks") + 1] == "fan"
    assert prepare[prepare.index("--layout") + 1] == layout
    assert prepare[prepare.index("--size") + 1] == str(size)
    for m in METHODS:
        argv = plan[f"fit-{m}"].argv
        assert f"experiments/model/{m}.yaml" in argv  # the paper preset
        assert f"experiments/data/{data_yaml}.yaml" in argv
        assert "experiments/trainer/gpu.yaml" in argv
        ev = plan[f"evaluate-{m}"].argv
        assert ev[ev.index("--protocol") + 1] == "default"
    for e in ("syncnet", "landmarks"):
        assert "experiments/trainer/gpu.yaml" in plan[f"expert-{e}"].argv


@pytest.mark.parametrize("config", ["grid", "lrw"])
def test_real_data_config_without_raw_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config: str
) -> None:
    path = f"experiments/compare/{config}.yaml"
    assert "raw=/path/to/it" in error_line(capsys, ["compare", path])
    missing = tmp_path / "nowhere"
    line = error_line(capsys, ["compare", path, f"raw={missing}"])
    assert str(missing) in line and "does not exist" in line


def test_bad_configs_and_arguments_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = error_line(capsys, ["compare", "methods.ldm.max_step=5"])
    assert "methods.ldm.max_step" in line and "methods.ldm.max_steps" in line
    assert "prepare.size" in error_line(capsys, ["compare", "prepare.sise=32"])
    assert "max_steps" in error_line(capsys, ["compare", "methods.davs.max_steps=many"])
    assert "does not exist" in error_line(capsys, ["compare", str(tmp_path / "none.yaml")])
    assert "quick" in error_line(capsys, ["compare", "experiments/compare/grid.yaml", "--quick"])
    assert "--parallel" in error_line(capsys, ["compare", "--parallel", "0"])
    assert "not key=value" in error_line(capsys, ["compare", SYNTHETIC, "stray"])
    assert "--seeds" in error_line(capsys, ["compare", "--seeds", "0"])
    assert "seeds" in error_line(capsys, ["compare", "seeds=0"])
    line = error_line(capsys, ["compare", "expected_data_identity=abc"])
    assert "expected_data_identity" in line and "hex" in line
    line = error_line(
        capsys, ["compare", "methods.nosuch.configs=[a.yaml]", "methods.nosuch.max_steps=1"]
    )
    assert "nosuch" in line and "MODELS" in line
    # budgets are steps: a wall-clock limit is refused
    ten_minutes = "methods.ldm.overrides=[trainer.max_time='00:00:10:00']"
    assert "trainer.max_time" in error_line(capsys, ["compare", ten_minutes])


def test_config_errors_come_before_torch_is_imported(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from talking_faces.cli.main import main\n"
        "codes = [main(['compare', 'experiments/compare/grid.yaml']),\n"
        "         main(['compare', 'experiments/compare/lrw.yaml', 'raw=/nowhere']),\n"
        "         main(['compare', 'methods.ldm.max_step=3'])]\n"
        "print(codes, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == "[2, 2, 2] False", proc.stderr
    assert [ln[:7] for ln in proc.stderr.strip().splitlines()] == ["error: "] * 3


# --------------------------------------------------------------------------- plan and keys
def test_a_new_budget_changes_the_keys_of_that_method_and_what_follows(tmp_path: Path) -> None:
    base = build_plan(load_compare_config(SYNTHETIC, quick=True), tmp_path)
    other = build_plan(
        load_compare_config(SYNTHETIC, ["methods.ldm.max_steps=7"], quick=True), tmp_path
    )
    changed = {s.name for s in base.stages if s.key != other[s.name].key}
    assert changed == {"fit-ldm", "evaluate-ldm", "leaderboard", "report"}
    # the SyncNet expert scores the evaluations; the methods' fits only use the landmark one
    other = build_plan(
        load_compare_config(SYNTHETIC, ["experts.syncnet.max_steps=9"], quick=True), tmp_path
    )
    changed = {s.name for s in base.stages if s.key != other[s.name].key}
    evaluations = {f"evaluate-{n}" for n in (*METHODS, *REFERENCES)}
    assert changed == {"expert-syncnet", *evaluations, "leaderboard", "report"}
    # a moved report folder keeps its keys (paths enter them relative to the folder)
    moved = build_plan(load_compare_config(SYNTHETIC, quick=True), tmp_path / "elsewhere")
    assert [s.key for s in moved.stages] == [s.key for s in base.stages]
    # dependencies come first; evaluations need both experts
    order = [s.name for s in base.stages]
    for s in base.stages:
        assert all(order.index(d) < order.index(s.name) for d in s.deps)
    assert {"expert-syncnet", "expert-landmarks"} <= set(base["evaluate-static"].deps)
    # a method left out by an override is not planned
    without = build_plan(
        load_compare_config(SYNTHETIC, ["methods.davs=null"], quick=True), tmp_path
    )
    assert without.methods == ["ldm", "amie"] and "fit-davs" not in {s.name for s in without.stages}


def test_seeds_plan_one_run_per_method_and_seed(tmp_path: Path) -> None:
    one = build_plan(load_compare_config(SYNTHETIC, quick=True), tmp_path)
    three = build_plan(load_compare_config(SYNTHETIC, ["seeds=3"], quick=True), tmp_path)
    names = {s.name for s in three.stages}
    for m in METHODS:
        assert {f"fit-{m}", f"fit-{m}-seed1", f"fit-{m}-seed2"} <= names
        for seed, run in ((0, m), (1, f"{m}-seed1"), (2, f"{m}-seed2")):
            fit, ev = three[f"fit-{run}"], three[f"evaluate-{run}"]
            assert f"seed={seed}" in fit.argv and f"name={run}" in fit.argv
            assert fit.run_dir is not None and fit.run_dir.name == run
            assert ev.argv[ev.argv.index("--seed") + 1] == str(seed) and fit.name in ev.deps
            assert ev.results is not None and ev.results.name == f"{run}.json"
    # the references and the experts keep the config's seed; the first seed's stages keep their
    # keys (a finished one-seed compare resumes into a three-seed one)
    assert all(three[f"evaluate-{r}"].argv[-5] == "0" for r in REFERENCES)
    kept = {s.name: s.key for s in one.stages if s.kind not in ("leaderboard", "report")}
    assert kept.items() <= {s.name: s.key for s in three.stages}.items()
    assert len(three.stages) == len(one.stages) + 2 * 2 * len(METHODS)


def test_the_longest_chain_starts_first(tmp_path: Path) -> None:
    plan = build_plan(load_compare_config(SYNTHETIC), tmp_path)
    ahead = critical_path_seconds(plan)
    fits = sorted((s for s in plan.stages if s.kind == "fit"), key=lambda s: -ahead[s.name])
    longest = max(plan.stages, key=lambda s: s.estimate_s if s.kind == "fit" else 0)
    assert fits[0] is longest
    # a stage's chain holds the one after it: synth's is the longest of all
    assert ahead["synth"] == max(ahead.values())
    assert ahead["fit-ldm"] > plan["fit-ldm"].estimate_s


def test_time_left_schedules_the_estimates_on_the_parallel_slots(tmp_path: Path) -> None:
    plan = build_plan(load_compare_config(SYNTHETIC, quick=True), tmp_path)
    for s in plan.stages:
        s.estimate_s = 10.0
    serial = time_left(plan, set(), {}, 1, 1.0)
    assert serial == pytest.approx(10.0 * len(plan.stages))
    # synth, prepare, the experts (2 at once), 3 fits (2 + 1), 6 evaluations, leaderboard, report
    assert time_left(plan, set(), {}, 2, 1.0) == pytest.approx(10.0 * 10)
    done = {s.name for s in plan.stages[:-1]}
    assert time_left(plan, done, {}, 2, 2.0) == pytest.approx(20.0)
    assert time_left(plan, done - {"leaderboard"}, {"leaderboard": 4.0}, 2, 1.0) == 16.0


def test_readme_starts_with_the_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    assert first is not None
    assert first.group(1).split() == ["make", "test", "make", "compare"]
    assert "compare:" in (ROOT / "Makefile").read_text()


# ------------------------------------------------------------------------------ quick run
@pytest.mark.slow
def test_killed_quick_run_finishes_with_no_stage_run_twice(quick_run: Path) -> None:
    before = json.loads((quick_run.parent / "before_kill.json").read_text())
    first = before[0]["invocation"]
    finished_before = {e["stage"] for e in before if e["event"] == "finish"}
    started_before = {e["stage"] for e in before if e["event"] == "start"}
    killed = started_before - finished_before
    assert finished_before and killed, "the kill did not land midway"
    events = read_events(quick_run)
    second = [e for e in events if e["invocation"] != first]
    assert {e["invocation"] for e in second} and len({e["invocation"] for e in second}) == 1
    started_again = {e["stage"] for e in second if e["event"] == "start"}
    assert not started_again & finished_before, "a finished stage ran again"
    assert killed <= started_again
    assert {e["stage"] for e in second if e["event"] == "skip"} == finished_before
    finishes = [e["stage"] for e in events if e["event"] == "finish"]
    stages = [
        json.loads(p.read_text()) for p in sorted((quick_run / "state").glob("*.started.json"))
    ]
    assert len(finishes) == len(set(finishes)) == len(stages) == 15
    for stage in killed & {f"fit-{m}" for m in METHODS}:  # a killed fit went on from its checkpoint
        start = next(e for e in second if e["stage"] == stage and e["event"] == "start")
        assert start["resumes"] is True
        with open(quick_run / "work" / "runs" / stage[4:] / "metrics.csv", newline="") as f:
            steps = [r["step"] for r in csv.DictReader(f) if r.get("train/loss")]
        assert steps and len(steps) == len(set(steps))  # every step logged once


@pytest.mark.slow
def test_quick_report_folder(quick_run: Path) -> None:
    # the leaderboard: every method and reference row, marked as a smoke run
    md = (quick_run / "leaderboard.md").read_text()
    assert md.splitlines()[0] == f"# Leaderboard: {SMOKE_TITLE}"
    rows = {ln.split("|")[2].strip() for ln in md.splitlines() if ln.startswith("| ")}
    assert set(METHODS) | set(REFERENCES) <= rows
    page = (quick_run / "leaderboard.html").read_text()
    assert f"<title>Leaderboard: {SMOKE_TITLE}</title>" in page
    assert f"<h1>Leaderboard: {SMOKE_TITLE}</h1>" in page and 'class="note banner"' in page
    with open(quick_run / "leaderboard.csv", newline="") as f:
        labels = {r["label"] for r in csv.DictReader(f)}
    assert set(METHODS) | set(REFERENCES) <= labels
    readme = (quick_run / "README.md").read_text()
    assert SMOKE_TITLE in readme.splitlines()[0] and "## Against the static frame" in readme
    # the quick config's expected data identity is what this machine prepared
    expected = load_compare_config(SYNTHETIC, quick=True).expected_data_identity
    assert expected is not None
    assert f"Data identity {expected[:12]} matches the config's expected_data_identity" in readme
    assert "trained with one seed (0)" in readme

    # side-by-side videos: real | ldm | davs | amie, names above, the pair's audio
    import av

    videos = sorted((quick_run / "videos").glob("*.mp4"))
    ldm = load_results(quick_run / "work" / "results" / "ldm.json")[0]
    assert len(videos) == len(ldm["videos"]) == 2
    for path in videos:
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            assert c.streams.audio and c.streams.audio[0].codec_context.sample_rate == 16000
        assert len(frames) == 75
        assert frames[0].shape == (64 + 12, 64 * 4, 3)

    # the picture of frames: the names strip, then one row per time of real | every method
    from PIL import Image

    from talking_faces.orchestration.compare.report import (
        LABEL_HEIGHT,
        PICTURE_FRAMES,
        PICTURE_SCALE,
    )

    with Image.open(quick_run / "frames.png") as img:
        assert img.size == (
            64 * 4 * PICTURE_SCALE,
            (LABEL_HEIGHT + 64 * len(PICTURE_FRAMES)) * PICTURE_SCALE,
        )
    assert "![frames of every method beside the real clip](frames.png)" in readme

    # curves of every run, and the validation metrics the methods share
    curves = {p.stem for p in (quick_run / "curves").glob("*.png")}
    assert curves == {
        "expert-syncnet",
        "expert-landmarks",
        *[f"fit-{m}" for m in METHODS],
        "validation",
    }

    # the exact commands, timings of every stage and both invocations
    commands = (quick_run / "commands.sh").read_text()
    for name in ("synth", "prepare", "fit", "evaluate", "leaderboard"):
        assert f"talking-faces {name} " in commands
    assert commands.count("talking-faces evaluate ") == 6
    timings = json.loads((quick_run / "timings.json").read_text())
    assert all(v["seconds"] is not None for v in timings["stages"].values())
    killed, rerun = timings["invocations"][:2]
    assert killed["stages_run"] >= 1 and rerun["stages_run"] == 15 - killed["stages_run"]
    assert rerun["wall_seconds"] > 0


@pytest.mark.slow
def test_rerun_of_a_finished_compare_runs_nothing(quick_run: Path) -> None:
    mtimes = {p: p.stat().st_mtime for p in quick_run.glob("leaderboard.*")}
    proc = subprocess.run(
        quick_command(quick_run), cwd=ROOT, env=quick_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(15 done before, 0 to run)" in proc.stderr
    assert {p: p.stat().st_mtime for p in quick_run.glob("leaderboard.*")} == mtimes
    last = read_events(quick_run)[-1]["invocation"]
    assert {e["event"] for e in read_events(quick_run) if e["invocation"] == last} == {"skip"}
    # a new budget for one method: only its stages and what follows them would run
    proc = subprocess.run(
        quick_command(quick_run, "methods.davs.max_steps=13", "--dry-run"),
        cwd=ROOT,
        env=quick_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    to_run = {ln.split()[0] for ln in proc.stdout.splitlines() if " to run " in ln}
    assert to_run == {"fit-davs", "evaluate-davs", "leaderboard", "report"}


def _rerun_elsewhere(quick_run: Path, stage: str, tmp_path: Path, flag: str) -> None:
    """The recorded command of ``stage`` with its output moved under ``tmp_path``."""
    argv = json.loads((quick_run / "state" / f"{stage}.json").read_text())["command"][1:]
    if flag == "out=":
        argv = [f"out={tmp_path}" if a.startswith("out=") else a for a in argv]
    else:
        argv[argv.index(flag) + 1] = str(tmp_path / "again.json")
    proc = subprocess.run(
        [sys.executable, "-m", "talking_faces", *argv],
        cwd=ROOT,
        env=quick_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_a_killed_and_resumed_fit_ends_where_an_uninterrupted_one_does(
    quick_run: Path, tmp_path: Path
) -> None:
    """The resumed fit stage, run again from scratch by its recorded command, ends with the
    same weights: a killed compare gives the leaderboard an uninterrupted one gives."""
    import torch

    before = json.loads((quick_run.parent / "before_kill.json").read_text())
    finished = {e["stage"] for e in before if e["event"] == "finish"}
    resumed = sorted(
        {e["stage"] for e in before if e["event"] == "start" and e["stage"].startswith("fit-")}
        - finished
    )
    stage = resumed[0] if resumed else "fit-davs"  # the kill landed after every fit
    _rerun_elsewhere(quick_run, stage, tmp_path, "out=")
    method = stage.removeprefix("fit-")
    ckpts = [
        d / method / "checkpoints" / "last.ckpt" for d in (quick_run / "work" / "runs", tmp_path)
    ]
    a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in ckpts)
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key


@pytest.mark.slow
def test_evaluate_stage_is_deterministic(quick_run: Path, tmp_path: Path) -> None:
    """The evaluate stage of the stochastic method (K samples) run again with its recorded
    command gives the same numbers: the leaderboard of a config and seed is reproducible."""
    _rerun_elsewhere(quick_run, "evaluate-ldm", tmp_path, "--out")
    again = load_results(tmp_path / "again.json")[0]
    first = load_results(quick_run / "work" / "results" / "ldm.json")[0]
    assert again["num_samples"] == first["num_samples"] == 2
    assert again["metrics"] == first["metrics"]
