"""The C allocator's settings for PyTorch on CPU: large tensors from a heap that is kept, not from
fresh pages each time.

glibc's ``malloc`` serves every block above its mmap threshold (128 KiB, growing up to 32 MiB as
blocks are freed) from a fresh ``mmap`` and gives it back to the kernel on ``free``. A CPU
evaluation or training step allocates and frees tensors of tens of MiB thousands of times, so
each one costs the kernel a page fault per 4 KiB page on first touch: on this project's 2-core
machine a process that ran ``evaluate`` twice on 300 frames spent 5.9 s in the kernel beside
13.4 s of user time, and 0.9 s with these settings (``benchmarks/README.md``).
:func:`tune_allocator` turns ``mmap`` off for ordinary blocks (``M_MMAP_MAX = 0``) and keeps up to
2 GiB of freed memory at the heap's top (``M_TRIM_THRESHOLD``), so a freed block is reused instead
of faulted in again; the process keeps its high-water mark of memory instead of handing it back
between steps. PyTorch's CPU performance guide preloads jemalloc or TCMalloc for the same reason;
these two settings need no other library.

Where it applies: glibc on Linux, and only when the user has not tuned the allocator already
(any ``MALLOC_*`` variable, ``GLIBC_TUNABLES`` with ``malloc``, or a preloaded jemalloc /
TCMalloc / mimalloc). ``TALKING_FACES_MALLOC=default`` leaves glibc's defaults. The settings
change how fast, never what is computed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: ``mallopt`` parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: free memory at the heap's top kept for reuse (mallopt takes an int)
TRIM_THRESHOLD = 2**31 - 1

#: environment variable: ``default`` leaves the C allocator as it is
ENV = "TALKING_FACES_MALLOC"
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

_state: dict[str, str] = {}


def user_tuned(environ: os._Environ[str] | dict[str, str] | None = None) -> str | None:
    """Why the allocator is left alone (the user tuned it or asked), else None."""
    env = os.environ if environ is None else environ
    if env.get(ENV, "").strip().lower() == "default":
        return f"{ENV}=default"
    tuned = sorted(k for k in env if k.startswith("MALLOC_"))
    if tuned:
        return f"{tuned[0]} is set"
    if "malloc" in env.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets malloc"
    preload = env.get("LD_PRELOAD", "")
    for name in _OTHER_ALLOCATORS:
        if name in preload:
            return f"{name} is preloaded"
    return None


def tune_allocator() -> str:
    """Apply the settings above once per process; returns what was done (for logs):
    ``"glibc: mmap off, trim threshold 2 GiB"``, or why nothing was."""
    if "result" in _state:
        return _state["result"]
    reason = user_tuned()
    if reason is None and (platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"):
        reason = "not glibc"
    if reason is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = (
                libc.mallopt(M_MMAP_MAX, 0) == 1
                and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            )
        except (OSError, AttributeError):
            ok = False
        result = "glibc: mmap off, trim threshold 2 GiB" if ok else "left as is (mallopt failed)"
    else:
        result = f"left as is ({reason})"
    _state["result"] = result
    return result
