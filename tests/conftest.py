"""Shared fixtures: one tiny synthetic GRID corpus and its prepared dataset per test session, the
same with both evaluation experts trained on it (``trained``, see expert_data.py), a local S3
server (``s3_server``, see s3_server.py), ``one_thread``, ``repo_cwd``, and two finished jobs that
several test files read: the ``compare --quick`` report (``quick_run``, see compare_data.py)
and a smoke run of experiments/sweeps/ldm_beta.yaml (``sweep_dir``, see sweep_data.py).

Made through the real CLI (``synth`` then ``prepare``, ``fit``), so tests that use them exercise
the whole chain; session-scoped because preparing and training take seconds to minutes.

``make test`` runs the suite on two pytest-xdist workers (``-n 2``; ``--dist loadgroup`` is in
pyproject.toml's addopts). Every worker is its own session: a session fixture is built once per
worker that needs it, under that worker's own base temp dir, so two workers never share a path;
the one exception is ``trained``, which every worker needs and which takes minutes: the first
worker builds it in the run's shared temp dir under a file lock and the others read it
(expert_data.py). The hooks below keep that cheap and the cores busy:

- a worker gets ``cores // workers`` torch threads (one each on 2 cores: two workers with two
  OpenMP threads each on 2 cores are far slower than one each);
- every test that reads ``quick_run`` runs on one worker, and every test that reads
  ``sweep_dir`` on one worker (one xdist group each: those jobs take minutes, so they are built
  once per run), and the tests of a module that has a module-scoped fixture run on one worker;
- those two groups are handed out first, then the modules and tests marked slow, then the rest,
  so that the long chains start at once and the short tests fill the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from compare_data import quick_compare_report
from expert_data import trained_dataset
from s3_server import S3Server, start_server
from sweep_data import ldm_beta_sweep

from talking_faces.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
#: session fixtures that run a whole job (minutes): each of them is built by one worker only
SHARED_JOBS = ("quick_run", "sweep_dir")
#: variables a process group's launcher leaves in the parent (Lightning sets MASTER_PORT when it
#: spawns): restored after every test, so that later launches pick a free port again
RENDEZVOUS = ("MASTER_ADDR", "MASTER_PORT")
#: set on a worker whose grouped tests did not get their group (pytest_collection_finish)
GROUPS_LOST = pytest.StashKey[bool]()


def _worker_count() -> int:
    """pytest-xdist's worker count (1 when the suite runs in this process alone)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def pytest_configure(config: pytest.Config) -> None:
    if "PYTEST_XDIST_WORKER" in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        threads = max(1, (cores or os.cpu_count() or 1) // _worker_count())
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # for the processes tests start


def _xdist_group(item: pytest.Item) -> str | None:
    """The group ``item`` has to share a worker with: the shared job it reads, else its module
    when a module-scoped fixture of it is in the item's fixtures."""
    names = set(getattr(item, "fixturenames", ()))
    for job in SHARED_JOBS:
        if job in names:
            return job
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    if any(d and d[-1].scope == "module" for d in defs):
        return item.nodeid.split("::", 1)[0]
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    groups = {}
    for item in items:
        group = _xdist_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        groups[item.nodeid] = group or item.nodeid
    rank: dict[str, int] = {}
    for item in items:
        key = groups[item.nodeid]
        if key in SHARED_JOBS:
            rank[key] = SHARED_JOBS.index(key)
        elif item.get_closest_marker("slow") is not None:
            rank[key] = min(rank.get(key, len(SHARED_JOBS)), len(SHARED_JOBS))
        else:
            rank.setdefault(key, len(SHARED_JOBS) + 1)
    items.sort(key=lambda item: rank[groups[item.nodeid]])  # stable: collection order within


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under ``--dist loadgroup``, note whether xdist gave the grouped tests their group (it
    appends ``@group`` to the node id, which pytest 9.2 ignores: pyproject.toml pins pytest below
    it); if not, they fail in setup with that message rather than run ungrouped."""
    if "PYTEST_XDIST_WORKER" in os.environ and session.config.getvalue("loadgroup"):
        grouped = [i for i in session.items if i.get_closest_marker("xdist_group")]
        session.config.stash[GROUPS_LOST] = any("@" not in i.nodeid for i in grouped)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.config.stash.get(GROUPS_LOST, False) and item.get_closest_marker("xdist_group"):
        pytest.fail(
            f"pytest-xdist did not put this test in its xdist_group: pytest {pytest.__version__} "
            "and this pytest-xdist do not work together (pytest-dev/pytest-xdist#1386); install "
            "the versions pyproject.toml's dev extra names",
            pytrace=False,
        )


@pytest.fixture(scope="session", autouse=True)
def _landmark_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The reference-landmark cache of every evaluation in this run (and of the processes tests
    start) in the run's temp folder, shared by the workers, never in ~/.cache: a run reads no entry
    an earlier run wrote (talking_faces/evaluation/landmark_cache.py)."""
    from talking_faces.evaluation.landmark_cache import CACHE_ENV

    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent
    os.environ[CACHE_ENV] = str(root / "landmark-cache")


@pytest.fixture(autouse=True)
def _restore_rendezvous() -> Iterator[None]:
    before = {key: os.environ.get(key) for key in RENDEZVOUS}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine, OpenMP spinning makes 2 threads far slower
    for small models (modules that train or generate opt in with ``usefixtures``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def repo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test runs from the repository root, as the README's commands do: compare configs and
    sweep files name their YAML files relative to it (``experiments/...``; from another folder
    they are the installed package's, tests/test_installed.py)."""
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared dataset with ``experts/syncnet.ckpt`` and ``experts/landmarks.ckpt``."""
    return trained_dataset(tmp_path_factory)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report folder of ``compare --quick``, killed midway and rerun (compare_data.py)."""
    return quick_compare_report(tmp_path_factory)


@pytest.fixture(scope="session")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory, trained: Path) -> Path:
    """experiments/sweeps/ldm_beta.yaml on ``trained``, a few steps per trial, killed and rerun
    (sweep_data.py)."""
    return ldm_beta_sweep(tmp_path_factory, trained)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's standalone S3 server on 127.0.0.1 and a free port (see s3_server.py)."""
    server = start_server(tmp_path_factory.mktemp("s3") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def synthetic_grid_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw GRID-layout corpus: 2 speakers x 3 clips of 75 frames, 128 px, with sidecars."""
    raw = tmp_path_factory.mktemp("synthetic") / "grid_raw"
    args = ["synth", str(raw), "--layout", "grid", "--speakers", "2", "--clips", "3"]
    assert main([*args, "--size", "128"]) == 0
    return raw


@pytest.fixture(scope="session")
def prepared_grid(synthetic_grid_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synthetic_grid_raw`` prepared at 64 px with its sidecar landmarks."""
    prep = tmp_path_factory.mktemp("prepared") / "grid"
    args = ["prepare", str(synthetic_grid_raw), str(prep), "--layout", "grid"]
    assert main([*args, "--landmarks", "sidecar", "--size", "64"]) == 0
    return prep
