"""What ``sweep`` and ``compare`` share to run ``talking-faces`` commands as subprocesses.

a job (a sweep trial, a compare stage) -> **folder_lock** (one runner per folder) ->
**run_logged** (``python -m talking_faces ...`` with :func:`command_env`, output appended to a
log, the lock passed on, registered in a :class:`ProcessRegistry`) -> exit status ->
:func:`last_error` (why it failed) / :func:`fit_complete` (whether a fit trained to its end)

- **Locks**: a folder's ``.lock`` is held (``flock``) by the runner and by every command it
  starts (the descriptor is passed on), so the folder stays locked while any of them lives.
- **Threads**: :func:`default_threads` splits the cores between the jobs running at once; each
  command gets its share as ``OMP_NUM_THREADS`` (and MKL / OpenBLAS), quiet progress.
- **Stopping**: :class:`ProcessRegistry` terminates every running command (then kills what is
  left); :func:`sigterm_as_interrupt` makes SIGTERM end a runner like Ctrl-C.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from talking_faces.names import CHECKPOINTS_DIR, LAST_CHECKPOINT, RUN_CONFIG_FILE

#: the lock file of a folder that one runner works in at a time
LOCK_FILE = ".lock"
#: what a log's header line starts with (:func:`last_error` skips these lines)
HEADER_PREFIX = "== "


# ---------------------------------------------------------------------------------- threads
def cores() -> int:
    """CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(parallel: int) -> int:
    """CPU threads per job: the cores split between ``parallel`` jobs (at most
    ``OMP_NUM_THREADS`` when that is set)."""
    threads = max(1, cores() // max(1, parallel))
    env = os.environ.get("OMP_NUM_THREADS", "")
    return min(threads, int(env)) if env.isdigit() and int(env) > 0 else threads


def command_env(threads: int) -> dict[str, str]:
    """The environment of a job's commands: its share of CPU threads, quiet progress."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["TALKING_FACES_QUIET"] = "1"
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    return env


# ------------------------------------------------------------------------------------ locks
def is_locked(folder: str | Path) -> bool:
    """Whether a runner (this process or another) holds the folder's lock now."""
    path = Path(folder) / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[int | None]:
    """Hold the folder's lock (creating the folder); yields the lock's file descriptor, or None
    if another runner has it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -------------------------------------------------------------------------------- processes
class ProcessRegistry:
    """The commands running now, so an interrupted runner can stop them all."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)
        if self.stopping.is_set():
            proc.terminate()

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop_all(self, grace_s: float = 20.0) -> None:
        """Terminate every running command, then kill what is left after ``grace_s``."""
        self.stopping.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + grace_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler, ``kill``) ends the runner like Ctrl-C: jobs stopped, resumable."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def talking_faces_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` as a command of this interpreter: ``python -m talking_faces ...``."""
    return [sys.executable, "-m", "talking_faces", *argv]


def run_logged(
    cmd: Sequence[str],
    log_path: Path,
    threads: int,
    lock_fd: int,
    *,
    stamp: str,
    shown: str,
    registry: ProcessRegistry | None = None,
    cwd: str | None = None,
) -> int:
    """Run ``cmd`` with :func:`command_env` ``(threads)`` and its output appended to
    ``log_path`` after the line ``== <stamp> OMP_NUM_THREADS=<threads> <shown>``; return its
    exit status.

    ``lock_fd`` is passed on (the folder stays locked while the command lives); ``registry``,
    when given, holds the process while it runs. Interrupted (Ctrl-C, a cancelled job), the
    command is terminated too (killed after 20 s) and the interruption goes on.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"\n{HEADER_PREFIX}{stamp} OMP_NUM_THREADS={threads} {shown}\n")
        log.flush()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=command_env(threads),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(lock_fd,),  # the lock stays held while the command lives
        )
        if registry is not None:
            registry.add(proc)
        try:
            return proc.wait()
        except BaseException:  # interrupted: stop the command too
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            if registry is not None:
                registry.discard(proc)


# ---------------------------------------------------------------------------------- outcome
def last_error(log_path: Path) -> str:
    """The command's last ``error: ...`` line (our one-line errors), else its last line."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln and not ln.startswith(HEADER_PREFIX)]
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or [""])[-1][:300]


def fit_complete(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` trained to its end: ``last.ckpt`` at ``trainer.max_steps``
    (any step when the run is bounded by ``max_time`` or epochs instead).

    A SIGTERM stops Lightning's loop early with exit status 0, so the status alone does not say.
    """
    import torch
    import yaml

    last = run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT
    if not last.is_file():
        return False
    try:
        config = yaml.safe_load((run_dir / RUN_CONFIG_FILE).read_text()) or {}
        trainer = config.get("trainer", {})
    except (OSError, yaml.YAMLError):
        return False
    max_steps = int(trainer.get("max_steps") or -1)
    if max_steps <= 0 or trainer.get("max_time"):
        return True
    step = int(torch.load(last, map_location="cpu", weights_only=True).get("global_step", 0))
    return step >= max_steps


__all__ = [
    "LOCK_FILE",
    "ProcessRegistry",
    "command_env",
    "cores",
    "default_threads",
    "fit_complete",
    "folder_lock",
    "is_locked",
    "last_error",
    "run_logged",
    "sigterm_as_interrupt",
    "talking_faces_argv",
]
