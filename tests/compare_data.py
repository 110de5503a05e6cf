"""``talking-faces compare --quick`` run for real once per session, killed midway and rerun.

The quick run goes through the real CLI as a subprocess: it is killed (SIGKILL to its process
group: compare and its stage commands) once a stage has finished and a later one is running,
preferably a fit that has written a checkpoint, then the same command finishes it. Built by the
``quick_run`` session fixture of conftest.py (a second call finds the finished folder in the
session's base temp dir); the report folder it leaves is checked by tests/test_compare.py and
read by notebooks/02_compare.ipynb in tests/test_notebooks.py.
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

from talking_faces.orchestration.compare.runner import read_events

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("ldm", "davs", "amie")


def quick_env() -> dict[str, str]:
    return {**os.environ, "TALKING_FACES_QUIET": "1", "OMP_NUM_THREADS": "1"}


def quick_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "talking_faces", "compare", "--quick", "--out", str(out), *extra]


def _kill_now(out: Path, events: list[dict]) -> bool:
    """A stage finished and a later one runs: a fit with a checkpoint written (so the rerun
    resumes it), or, once every fit is done, any stage."""
    finished = {e["stage"] for e in events if e["event"] == "finish"}
    running = {e["stage"] for e in events if e["event"] == "start"} - finished
    if not finished or not running:
        return False
    for stage in running:
        if stage.startswith("fit-"):
            ckpt = out / "work" / "runs" / stage[4:] / "checkpoints" / "last.ckpt"
            if ckpt.is_file():
                return True
    return all(f"fit-{m}" in finished for m in METHODS)


def quick_compare_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report folder of ``compare --quick``, killed midway and rerun (module docstring)."""
    base = tmp_path_factory.getbasetemp() / "compare_quick"
    out = base / "report"
    if (base / "done").exists():
        return out
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "first.log", "w") as log:
        proc = subprocess.Popen(
            quick_command(out),
            cwd=ROOT,
            env=quick_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed whole below
        )
        deadline = time.monotonic() + 600
        try:
            while not _kill_now(out, read_events(out)):
                assert proc.poll() is None, (
                    f"compare ended early: {(base / 'first.log').read_text()}"
                )
                assert time.monotonic() < deadline, "no stage finished in 10 minutes"
                time.sleep(0.1)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    (base / "before_kill.json").write_text(json.dumps(read_events(out)))
    rerun = subprocess.run(
        quick_command(out), cwd=ROOT, env=quick_env(), capture_output=True, text=True
    )
    (base / "rerun.log").write_text(rerun.stdout + "\n" + rerun.stderr)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (base / "done").write_text("ok\n")
    return out
