"""A small synthetic prepared dataset with both experts trained on it, built once per session.

The expert configs are the real ones, shortened (fewer steps; no similarity jitter for the
landmark expert); benchmarks/README.md has the full-length numbers.

Built through the real commands (``synth``, ``prepare``, ``fit`` of the expert configs) by the
``trained`` session fixture of conftest.py, used by tests/test_experts.py and
tests/test_evaluate.py and many others; built once per run and shared by the pytest-xdist workers
(:func:`trained_dataset`), a second call finds the finished folder.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from talking_faces.cli.main import main

#: corpus: 4 speakers x 8 clips of 3 s at 128 px, prepared at 64 px (train 24, val 4, test 4)
SPEAKERS, CLIPS, RAW_SIZE, PREP_SIZE = 4, 8, 128, 64
SYNCNET_STEPS = 150
LANDMARK_STEPS = 300


ROOT = Path(__file__).resolve().parents[1]


def _fit(name: str, prep: Path, runs: Path, steps: int, *extra: str) -> Path:
    args = [
        "fit",
        str(ROOT / "experiments" / "experts" / f"{name}.yaml"),
        f"data.root={prep}",
        f"out={runs}",
        f"name={name}",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps // 2}",
        f"model.lr_decay_steps={steps}",
        "trainer.limit_val_batches=2",
        *extra,
    ]
    assert main(args) == 0
    return runs / name


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    """Rows of a run's metrics.csv."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def last_value(run_dir: Path, key: str) -> float:
    """The last logged value of ``key`` in a run's metrics.csv."""
    values = [float(r[key]) for r in read_metrics(run_dir) if r.get(key)]
    assert values, f"{key} was never logged in {run_dir}"
    return values[-1]


def trained_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared dataset (with ``experts/`` filled) and ``runs/`` beside it; see module doc.

    Built once per run, not once per pytest-xdist worker: the first worker that asks builds it
    in the run's shared temp folder (the parent of every worker's base temp) under a file lock,
    and the others wait for it or find it finished (pytest-xdist's documented recipe). The
    experts take minutes to train and every worker needs them; nothing writes into the dataset
    after it is built."""
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent
    base = root / "expert_data"
    prep = base / "prep"
    done = base / "done"
    with FileLock(str(root / "expert_data.lock")):
        if done.exists():
            return prep
        if base.exists():  # a build that did not finish (a killed worker): start again
            shutil.rmtree(base)
        _build(base, prep)
        done.write_text("ok\n")
    return prep


def _build(base: Path, prep: Path) -> None:
    os.environ.setdefault("TALKING_FACES_QUIET", "1")
    raw = base / "raw"
    args = ["synth", str(raw), "--layout", "grid", "--speakers", str(SPEAKERS)]
    assert main([*args, "--clips", str(CLIPS), "--size", str(RAW_SIZE), "--overwrite"]) == 0
    args = ["prepare", str(raw), str(prep), "--layout", "grid", "--landmarks", "sidecar"]
    assert main([*args, "--size", str(PREP_SIZE)]) == 0
    runs = base / "runs"
    _fit("syncnet", prep, runs, SYNCNET_STEPS)
    # photometric jitter only: the similarity jitter slows learning on this tiny corpus
    _fit("landmarks", prep, runs, LANDMARK_STEPS, "model.augment_geometry=0")
