"""experiments/sweeps/ldm_beta.yaml run for real on the ``trained`` dataset, killed and rerun.

A few steps per trial (command-line overrides), two trials at a time. The first command is
killed (SIGKILL to its whole process group: the sweep, its fit and evaluate processes) as soon
as one trial has finished; the same command then finishes the sweep. What was finished before the
kill is recorded in ``before_kill.json`` beside the sweep folder. Built once per session (a
second call finds the finished folder); used by tests/test_sweep.py and tests/test_leaderboard.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SWEEP = "experiments/sweeps/ldm_beta.yaml"
#: every trial a few steps, checkpoints every 2, no validation videos
SMOKE = [
    "trainer.max_steps=4",
    "trainer.val_check_interval=4",
    "trainer.limit_val_batches=1",
    "checkpoint.every_n_train_steps=2",
    "logger.sample_every_n_val=0",
]


def sweep_command(prep: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "talking_faces",
        "sweep",
        SWEEP,
        "--data",
        str(prep),
        "--out",
        str(out),
        *extra,
        *SMOKE,
    ]


def sweep_env() -> dict[str, str]:
    return {**os.environ, "TALKING_FACES_QUIET": "1", "OMP_NUM_THREADS": "1"}


def finished(out: Path) -> list[str]:
    return sorted(p.parent.name for p in (out / "trials").glob("*/results.json"))


def ldm_beta_sweep(tmp_path_factory: pytest.TempPathFactory, prep: Path) -> Path:
    """The finished sweep folder (see the module docstring)."""
    base = tmp_path_factory.getbasetemp() / "ldm_beta_sweep"
    out = base / "sweep"
    if (base / "done").exists():
        return out
    base.mkdir(parents=True, exist_ok=True)
    cmd = sweep_command(prep, out, "--parallel", "2")
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=sweep_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, killed whole below
    )
    deadline = time.monotonic() + 900
    try:
        while not finished(out):
            assert proc.poll() is None, f"the sweep ended early (exit {proc.returncode})"
            assert time.monotonic() < deadline, "no trial finished in 15 minutes"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = finished(out)
    (base / "before_kill.json").write_text(
        json.dumps(
            {
                "finished": done,
                "mtimes": {n: (out / "trials" / n / "results.json").stat().st_mtime for n in done},
            }
        )
    )
    rerun = subprocess.run(cmd, cwd=ROOT, env=sweep_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (base / "rerun.txt").write_text(rerun.stdout + "\n" + rerun.stderr)
    (base / "done").write_text("ok\n")
    return out


def before_kill(out: Path) -> dict:
    """What :func:`ldm_beta_sweep` saw finished when it killed the first command."""
    return json.loads((out.parent / "before_kill.json").read_text())
