"""Shared fixtures: one tiny synthetic GRID corpus and its prepared dataset per test session, the
same with both evaluation experts trained on it (``trained``, see expert_data.py), a local S3
server (``s3_server``, see s3_server.py), ``one_thread``, and two finished jobs that several test
files read: the ``compare --quick`` report (``quick_run``, see compare_data.py) and a smoke run of
experiments/sweeps/ldm_beta.yaml (``sweep_dir``, see sweep_data.py).

Made through the real CLI (``synth`` then ``prepare``, ``fit``), so tests that use them exercise
the whole chain; session-scoped because preparing and training take seconds to minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from compare_data import quick_compare_report
from expert_data import trained_dataset
from s3_server import S3Server, start_server
from sweep_data import ldm_beta_sweep

from talking_faces.cli.main import main


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine, OpenMP spinning makes 2 threads far slower
    for small models (modules that train or generate opt in with ``usefixtures``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
