"""What the tests that drive ``talking-faces fit`` share: argument lists for tiny runs, the
environment of CLI subprocesses, reading a run's metrics and checkpoints, killing a run once it has
written a checkpoint."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
#: the CLI as a subprocess (DDP and kill tests need their own process)
CLI = [sys.executable, "-m", "talking_faces"]


def model_configs(model: str) -> list[str]:
    """base + synthetic data + ``experiments/model/<model>.yaml``."""
    return [
        str(EXP / "base.yaml"),
        str(EXP / "data/synthetic.yaml"),
        str(EXP / f"model/{model}.yaml"),
    ]


def fit_args(model: str, prep: Path | str, out: Path, name: str, *extra: str) -> list[str]:
    """``fit`` of preset ``model`` on ``prep`` into ``out/name``: batches of 2 windows of 4
    frames, no loader processes, every step logged, one validation batch; ``extra`` last."""
    return [
        "fit",
        *model_configs(model),
        f"data.root={prep}",
        f"out={out}",
        f"name={name}",
        "data.num_workers=0",
        "data.batch_size=2",
        "data.num_frames=4",
        "trainer.log_every_n_steps=1",
        "trainer.limit_val_batches=1",
        *extra,
    ]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: quiet, one thread, this checkout importable."""
    e = dict(os.environ)
    e.update(TALKING_FACES_QUIET="1", OMP_NUM_THREADS="1", **extra)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def read_metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every row that has ``key``."""
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def kill_after_checkpoint(args: list[str], last: Path, env: dict[str, str] | None = None) -> int:
    """Run ``talking-faces ARGS`` and SIGKILL it as soon as ``last`` exists; return the step of
    that checkpoint (the caller checks it is part-way)."""
    proc = subprocess.Popen([*CLI, *args], env=env or cli_env(), stderr=subprocess.PIPE, text=True)
    try:
        while not last.exists() and proc.poll() is None:
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    assert last.exists(), err[-2000:]
    return int(load_checkpoint(last)["global_step"])


def uninterrupted_and_resumed(
    args_for: Callable[..., list[str]], out: Path, steps: int, *extra: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Checkpoints of the same ``steps``-step run done twice: uninterrupted (run ``ref``), and
    SIGKILLed part-way after a checkpoint then resumed with ``ckpt_path=last`` (run ``killed``).

    ``args_for(out, name, *extra)`` gives a run's fit arguments."""
    from talking_faces.cli.main import main

    assert main(args_for(out, "ref", f"trainer.max_steps={steps}", *extra)) == 0
    ref = load_checkpoint(out / "ref/checkpoints/last.ckpt")
    args = args_for(out, "killed", f"trainer.max_steps={steps}", *extra)
    last = out / "killed/checkpoints/last.ckpt"
    assert 0 < kill_after_checkpoint(args, last) < steps, "the run must be killed part-way"
    assert main([*args, "ckpt_path=last"]) == 0
    return ref, load_checkpoint(last)


def assert_same_weights(ref: dict[str, Any], got: dict[str, Any], atol: float = 1e-5) -> None:
    for name, value in ref["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][name], value, atol=atol, rtol=0, msg=name)
