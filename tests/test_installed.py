"""The package as a user gets it: a wheel built from the sources, installed (not editable) into a
fresh virtual environment, its ``talking-faces`` command run from an empty folder.

The wheel is built from a copy of the sources (setuptools writes ``build/`` and ``*.egg-info``
beside what it builds) and must hold every YAML file of talking_faces/experiments. The new
environment has no pip and installs no dependencies: pip of this environment installs the wheel
into it, then a ``.pth`` file appends this environment's site-packages to its path, so torch and
the rest are found there. That adds the folder only: the ``.pth`` files in it are not run, so
the editable install's finder (``__editable__*.pth``, which maps ``talking_faces`` to the
checkout) is not installed, and ``talking_faces`` is imported from the new environment.

From an empty folder, then, every preset, protocol, compare config and sweep file must be found
in the installed package (talking_faces/config/files.py): ``compare --quick`` with ldm alone
(every stage a process of the new environment; the two other methods' presets through
``fit --print-config``), ``synth`` + ``prepare`` of a tiny corpus and its
``evaluate --baseline ground-truth --protocol synthetic`` with the experts the compare run
trained, and ``sweep experiments/sweeps/ldm_beta.yaml`` up to fit's check of its configs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "talking_faces"
#: ``compare --quick`` with ldm alone (11 of its 15 stages: synth, prepare, both experts, a fit, 4
#: evaluations, leaderboard, report); the other methods' presets are read by ``fit`` below
QUICK = ("methods.davs=null", "methods.amie=null")
OTHER_METHODS = ("davs", "amie")

pytestmark = pytest.mark.slow


def run(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def build_wheel(out: Path) -> Path:
    """The wheel of a copy of the sources (the package, pyproject.toml, README.md)."""
    src = out / "src"
    shutil.copytree(PACKAGE, src / "talking_faces", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", src, "-w", out], out)
    (wheel,) = out.glob("talking_faces-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel installed; its dependencies are this one's."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], venv.parent)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python]
    run([*pip, "install", "--no-deps", "--no-index", wheel], venv.parent)
    # after the install, so that pip saw an empty environment: this one's packages, appended
    where = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], venv)
    ours = dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib"))
    (Path(where.strip()) / "zz_dependencies.pth").write_text("\n".join(ours) + "\n")
    return venv


def user_env(venv: Path) -> dict[str, str]:
    """A user's shell with ``venv`` activated: nothing of the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        PATH=str(venv / "bin") + os.pathsep + env.get("PATH", ""),
        VIRTUAL_ENV=str(venv),
        TALKING_FACES_QUIET="1",
        OMP_NUM_THREADS="1",
        WANDB_MODE="offline",
    )
    return env


def test_the_wheel_holds_every_packaged_yaml(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    yamls = {p.relative_to(ROOT).as_posix() for p in (PACKAGE / "experiments").rglob("*.yaml")}
    assert yamls, "no YAML under talking_faces/experiments"
    assert sorted(yamls - names) == []
    assert "talking_faces/py.typed" in names
    assert not [n for n in names if n.endswith(".pth") or "__editable__" in n]


@pytest.fixture(scope="module")
def tiny_prep(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synth`` and ``prepare`` of a tiny corpus by the installed command, in an empty folder."""
    work = tmp_path_factory.mktemp("tiny")
    env, cli = user_env(installed), installed / "bin" / "talking-faces"
    run([cli, "synth", "raw", "--layout", "grid", "--speakers", "2", "--clips", "3"], work, env)
    prepare = ["prepare", "raw", "prep", "--layout", "grid", "--landmarks", "sidecar"]
    run([cli, *prepare, "--size", "64"], work, env)
    assert len(list((work / "raw").rglob("*.landmarks.npz"))) == 6
    for name in ("meta.json", "manifest.jsonl", "pairs.json"):
        assert (work / "prep" / name).is_file(), name
    return work / "prep"


def test_the_installed_copy_is_imported(installed: Path, tmp_path: Path) -> None:
    code = "import talking_faces, torch; print(talking_faces.__file__)"
    where = Path(run(["python", "-c", code], tmp_path, user_env(installed)).strip()).resolve()
    assert installed.resolve() in where.parents, f"talking_faces imported from {where}"


def test_compare_quick_and_evaluate_from_an_empty_folder(
    installed: Path, tiny_prep: Path, tmp_path: Path
) -> None:
    env, cli = user_env(installed), installed / "bin" / "talking-faces"
    run([cli, "compare", "--quick", *QUICK], tmp_path, env)
    report = tmp_path / "compare" / "synthetic-quick"
    for name in ("leaderboard.md", "leaderboard.html", "leaderboard.csv", "README.md"):
        assert (report / name).is_file(), name
    assert len(list((report / "videos").glob("*.mp4"))) == 2
    # every run was trained by the installed package (its git.json names where it ran from)
    runs = sorted((report / "work" / "runs").glob("*/git.json"))
    assert {p.parent.name for p in runs} == {"expert-syncnet", "expert-landmarks", "ldm"}
    for path in runs:
        repo = Path(json.loads(path.read_text())["repo"])
        assert repo.is_relative_to(installed.resolve()), (path, repo)

    # the ground-truth row of another dataset, scored with the experts compare trained
    experts = report / "work" / "prep" / "experts"
    evaluate = ["evaluate", "--baseline", "ground-truth", "--protocol", "synthetic"]
    evaluate += ["--data", tiny_prep, "--syncnet", experts / "syncnet.ckpt"]
    evaluate += ["--landmarks-model", experts / "landmarks.ckpt", "--out", "gt.json"]
    run([cli, *evaluate], tmp_path, env)
    results = json.loads((tmp_path / "gt.json").read_text())
    assert results["method"] == "ground-truth" and results["protocol"]["name"] == "synthetic"
    assert results["metrics"]["lmd"] == pytest.approx(0.0, abs=1e-9)
    assert (tmp_path / "gt.clips.csv").is_file()


@pytest.mark.parametrize("method", OTHER_METHODS)
def test_fit_reads_the_packaged_presets(
    installed: Path, tiny_prep: Path, tmp_path: Path, method: str
) -> None:
    configs = ["experiments/base.yaml", "experiments/data/synthetic.yaml"]
    configs.append(f"experiments/model/{method}_tiny.yaml")
    fit = ["fit", *configs, f"data.root={tiny_prep}", "--print-config"]
    printed = run([installed / "bin" / "talking-faces", *fit], tmp_path, user_env(installed))
    assert f"name: {method}" in printed


def test_sweep_finds_its_packaged_configs(installed: Path, tiny_prep: Path, tmp_path: Path) -> None:
    """The sweep file and the fit configs it names are found, and fit (a process of the new
    environment) reads them: a mistyped override is refused by fit, before any trial."""
    sweep = ["sweep", "experiments/sweeps/ldm_beta.yaml", "--data", str(tiny_prep)]
    cmd = [str(installed / "bin" / "talking-faces"), *sweep, "--out", "s", "model.betta=1"]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=user_env(installed), capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "fit refuses its config" in proc.stderr and "model.beta" in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("s/trials/*/results.json"))
