"""What the machine's processor can do: its name, native bf16, and ``trainer.precision: auto``.

PyTorch's CPU autocast runs bf16 on any x86-64 CPU, but only processors with bf16 instructions
(AVX512-BF16, AMX on x86-64; BF16 on Arm) run it faster than fp32; elsewhere it is emulated and
slower. ``trainer.precision: auto`` therefore means bf16-mixed where the device has native bf16
and fp32 elsewhere, resolved when a run starts and saved resolved in its ``config.yaml``.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

#: CPU flags (``/proc/cpuinfo``) that mean native bf16 arithmetic: x86-64 and Arm
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})

#: the ``trainer.precision`` value resolved by :func:`resolve_precision`
AUTO = "auto"
BF16 = "bf16-mixed"
FP32 = "32-true"


@lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux: no flags known
        return ""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The instruction-set flags of the first processor in ``cpuinfo`` (default: this machine's
    ``/proc/cpuinfo``; x86-64 ``flags``, Arm ``Features``); empty where there is no such file."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_name(cpuinfo: str | None = None) -> str:
    """The processor's model name in ``cpuinfo`` (default: ``/proc/cpuinfo``), else what
    :mod:`platform` says."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def native_bf16_cpu(cpuinfo: str | None = None) -> bool:
    """Whether the CPU ``cpuinfo`` describes (default: this one) has bf16 instructions
    (:data:`BF16_CPU_FLAGS`)."""
    return bool(BF16_CPU_FLAGS & cpu_flags(cpuinfo))


def native_bf16(accelerator: str) -> bool:
    """Whether the device ``trainer.accelerator`` names computes bf16 natively: a CUDA GPU that
    supports it (``auto`` picks the GPU when one is visible), else :func:`native_bf16_cpu`."""
    import torch

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return native_bf16_cpu()


def resolve_precision(precision: str, accelerator: str) -> str:
    """``trainer.precision`` as Lightning takes it: ``auto`` becomes ``bf16-mixed`` where
    :func:`native_bf16` and ``32-true`` elsewhere; any other value is returned as it is."""
    if str(precision) != AUTO:
        return str(precision)
    return BF16 if native_bf16(accelerator) else FP32
