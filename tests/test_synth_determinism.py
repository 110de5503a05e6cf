"""The synthetic corpus is the same bytes whatever CPU features and thread counts made it.

Another x86-64 CPU is emulated in a subprocess: numpy's AVX-512 and AVX2 dispatch turned off
(``NPY_DISABLE_CPU_FEATURES``), OpenBLAS on its Sandy Bridge kernels, one thread and one worker;
the other run has the defaults with two threads and two workers. FFmpeg's kernels are pinned by
the corpus writer itself (``corpus._ffmpeg_baseline_cpu``), whatever the CPU. The prepared
dataset's identity must not depend on where the raw corpus lay either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

OTHER_CPU = {
    "NPY_DISABLE_CPU_FEATURES": "AVX512_ICL AVX512_SPR X86_V4 X86_V3",
    "OPENBLAS_CORETYPE": "Sandybridge",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
DEFAULT_CPU = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
_CPU_VARS = ("NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")


def _run(args: list[str], env: dict[str, str]) -> None:
    full = {k: v for k, v in os.environ.items() if k not in _CPU_VARS}
    full.update(env)
    subprocess.run(
        [sys.executable, "-m", "talking_faces.cli.main", *args],
        env=full,
        check=True,
        capture_output=True,
        timeout=300,
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("README.txt", "corpus.json")
    }


def _corpus_json(root: Path) -> dict:
    meta = json.loads((root / "corpus.json").read_text())
    meta.pop("command")  # names the output folder
    return meta


def _synth(out: Path, layout: str, env: dict[str, str], workers: int) -> None:
    _run(
        [
            "synth", str(out), "--layout", layout, "--speakers", "2", "--clips", "2",
            "--size", "64", "--seed", "3", "--workers", str(workers),
        ],
        env,
    )  # fmt: skip


@pytest.mark.parametrize("layout", ["grid", pytest.param("lrw", marks=pytest.mark.slow)])
def test_synth_bytes_do_not_depend_on_cpu_features_or_threads(tmp_path: Path, layout: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _synth(a, layout, OTHER_CPU, workers=1)
    _synth(b, layout, DEFAULT_CPU, workers=2)
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    differ = [name for name in fa if fa[name] != fb[name]]
    assert not differ, f"files differ between the two CPUs: {differ}"
    assert _corpus_json(a) == _corpus_json(b)


@pytest.mark.slow
def test_prepared_identity_does_not_depend_on_cpu_or_source_path(tmp_path: Path) -> None:
    from talking_faces.data.dataset import PreparedDataset

    raws = [tmp_path / "raw_one", tmp_path / "elsewhere" / "raw_two"]
    envs = [OTHER_CPU, DEFAULT_CPU]
    ids = []
    for i, (raw, env) in enumerate(zip(raws, envs, strict=True)):
        _synth(raw, "grid", env, workers=1)
        prep = tmp_path / f"prep{i}"
        _run(
            [
                "prepare", str(raw), str(prep), "--layout", "grid", "--landmarks", "sidecar",
                "--size", "64", "--workers", "1",
            ],
            env,
        )  # fmt: skip
        ids.append(PreparedDataset.load(prep).identity_sha256())
    assert ids[0] == ids[1]
