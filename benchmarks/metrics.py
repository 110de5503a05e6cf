"""Frames/s of the evaluation metric suite with the synthetic experts (target: >= 25 frames/s,
real time, on 2 CPU cores at 128 px).

Two figures on a prepared synthetic dataset whose experts are in ``PREP/experts/``:

- end to end: ``talking_faces.evaluation.evaluate.evaluate`` on the ground-truth baseline (reading
  the test pairs, the landmark expert on the real frames twice -- as the "generated" and as the
  reference clip --, SyncNet expert LSE with vshift 15, PSNR, SSIM, CPBD; LPIPS too with
  ``--lpips``), frames scored per wall-clock second and per CPU-second, each call in a fresh
  process as an ``evaluate`` command runs: first with an empty reference-landmark cache (the first
  evaluation of a dataset), then again with the cache that call filled (every later evaluation of
  the same test pairs: other methods, seeds, baselines, sweep trials);
- per metric: each part of the suite timed alone on clips already in memory, so the share of each
  is visible.

Without ``--data`` the script builds its own dataset first (``synth`` 4 speakers x 8 clips at
128 px, ``prepare`` at 128 px, both experts trained for ``--train-steps`` steps: their speed does
not depend on how well they are trained).

    .venv/bin/python benchmarks/metrics.py --data PREP --threads 2
    .venv/bin/python benchmarks/metrics.py                 # builds /tmp/tf-bench-metrics first

Prints a table and writes ``benchmarks/results/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_dataset(folder: Path, steps: int) -> Path:
    from talking_faces.cli.main import main

    raw, prep = folder / "raw", folder / "prep"
    if not (prep / "meta.json").exists():
        args = ["synth", str(raw), "--layout", "grid", "--speakers", "4", "--clips", "8"]
        assert main([*args, "--size", "128", "--overwrite"]) == 0
        args = ["prepare", str(raw), str(prep), "--layout", "grid", "--landmarks", "sidecar"]
        assert main([*args, "--size", "128"]) == 0
    for name in ("syncnet", "landmarks"):
        if (prep / "experts" / f"{name}.ckpt").exists():
            continue
        args = [
            "fit",
            str(ROOT / "experiments" / "experts" / f"{name}.yaml"),
            f"data.root={prep}",
            f"out={folder / 'runs'}",
            f"name={name}",
            f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={steps}",
        ]
        assert main(args) == 0
    return prep


def timed(fn, min_seconds: float) -> tuple[float, float, int]:
    """Run ``fn`` repeatedly for at least ``min_seconds``: (wall s, CPU s, repetitions)."""
    fn()  # warm-up
    reps, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        reps += 1
        wall = time.perf_counter() - wall0
        if wall >= min_seconds:
            return wall, time.process_time() - cpu0, reps


def per_metric(prep: Path, protocol_name: str, clips: int, seconds: float) -> list[dict]:
    """Each part of the suite alone on ``clips`` test clips held in memory."""

    from talking_faces.data.batch import collate_batch
    from talking_faces.data.dataset import PreparedDataset, WindowConfig
    from talking_faces.evaluation.pairs import pair_dataset
    from talking_faces.evaluation.scorers import build_scorers
    from talking_faces.metrics import MetricSuite, Protocol

    scorers = build_scorers(protocol_name, str(prep))
    pairs = pair_dataset(PreparedDataset.load(prep), "test", WindowConfig())
    batch = collate_batch([pairs[i] for i in range(min(clips, len(pairs)))])
    frames, wave = batch["frames"], batch["waveform"]
    n_frames = frames.shape[0] * frames.shape[1]
    base = scorers.protocol.to_dict()
    lmk = scorers.landmark_model

    def suite(**kw) -> MetricSuite:
        p = Protocol.from_dict({**base, **kw.pop("protocol", {})})
        return MetricSuite(p, lpips=False, **kw)

    cases = {
        "psnr+ssim": (suite(protocol={"cpbd": False}), False),
        "cpbd": (suite(), False),
        "lmd (expert on both clips)": (suite(protocol={"cpbd": False}, landmark_model=lmk), True),
        "lse (SyncNet expert, vshift 15)": (
            suite(protocol={"cpbd": False}, syncnet=scorers.syncnet),
            False,
        ),
    }
    rows = []
    for name, (s, needs_ref) in cases.items():

        def run(s=s, needs_ref=needs_ref) -> None:
            ref = lmk(frames.flatten(0, 1)).view(*frames.shape[:2], 68, 2) if needs_ref else None
            s.update(frames, frames, wave, ref, None)
            s.reset()

        wall, cpu, reps = timed(run, seconds)
        rows.append(
            {
                "part": name,
                "frames_per_s": n_frames * reps / wall,
                "frames_per_cpu_s": n_frames * reps / max(cpu, 1e-9),
            }
        )
    # psnr+ssim is inside every case; report the others net of it
    base_rate = rows[0]["frames_per_s"]
    for row in rows[1:]:
        row["net_ms_per_frame"] = 1000 * (1 / row["frames_per_s"] - 1 / base_rate)
    rows[0]["net_ms_per_frame"] = 1000 / base_rate
    return rows


def end_to_end(prep: Path, protocol_name: str, out: Path, batch_size: int) -> dict:
    from talking_faces.evaluation.evaluate import EvaluationRequest, evaluate

    cpu0, wall0 = time.process_time(), time.perf_counter()
    req = EvaluationRequest(
        data=str(prep),
        out=str(out),
        baseline="ground-truth",
        protocol=protocol_name,
        batch_size=batch_size,
    )
    results = evaluate(req)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    frames = results["timing"]["frames"]
    return {
        "frames": frames,
        "pairs": results["pairs"]["evaluated"],
        "seconds": wall,
        "frames_per_s": frames / wall,
        "frames_per_cpu_s": frames / max(cpu, 1e-9),
        "metrics": results["metrics"],
        "reference_landmarks": results["timing"]["reference_landmarks"],
    }


def end_to_end_process(
    prep: Path, protocol_name: str, out: Path, batch_size: int, threads: int, cache: Path
) -> dict:
    """:func:`end_to_end` in a fresh process with reference-landmark cache ``cache``."""
    from talking_faces.evaluation.landmark_cache import CACHE_ENV

    cmd = [sys.executable, __file__, "--e2e-child", "--data", str(prep), "--threads", str(threads)]
    cmd += ["--batch-size", str(batch_size), "--work", str(out.parent)]
    cmd += ["--lpips"] if protocol_name == "default" else []
    env = {**os.environ, CACHE_ENV: str(cache)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"the end-to-end child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="prepared dataset with experts/ (built if absent)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tf-bench-metrics")
    ap.add_argument("--train-steps", type=int, default=40, help="expert steps when building")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lpips", action="store_true", help="protocol default (with LPIPS)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=4.0, help="per-metric timing per part")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "metrics.json")
    ap.add_argument("--e2e-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    os.environ.setdefault("TALKING_FACES_QUIET", "1")
    import torch

    torch.set_num_threads(args.threads)
    prep = args.data or build_dataset(args.work, args.train_steps)
    protocol = "default" if args.lpips else "synthetic"
    size = json.loads((prep / "meta.json").read_text())["size"]

    out = args.work / "bench-results.json"
    if args.e2e_child:
        print(json.dumps(end_to_end(prep, protocol, out, args.batch_size)))
        return
    with tempfile.TemporaryDirectory(prefix="tf-landmark-cache-") as cache:
        e2e, cached = (
            end_to_end_process(prep, protocol, out, args.batch_size, args.threads, Path(cache))
            for _ in range(2)
        )
    parts = per_metric(prep, protocol, clips=4, seconds=args.seconds)

    print(f"metric suite, protocol {protocol}, {size} px frames, {args.threads} threads")
    for what, row in (("reference-landmark cache empty", e2e), ("cache filled", cached)):
        print(
            f"end to end (evaluate, ground truth, {row['pairs']} pairs x 75 frames, {what}): "
            f"{row['frames_per_s']:.1f} frames/s wall, {row['frames_per_cpu_s']:.1f} frames per "
            "CPU-second"
        )
    print(f"{'part':34s} {'frames/s':>9s} {'frames/CPU-s':>13s} {'net ms/frame':>13s}")
    for row in parts:
        print(
            f"{row['part']:34s} {row['frames_per_s']:9.1f} {row['frames_per_cpu_s']:13.1f} "
            f"{row['net_ms_per_frame']:13.2f}"
        )
    record = {
        "protocol": protocol,
        "frame_size": size,
        "threads": args.threads,
        "end_to_end": e2e,
        "end_to_end_cached": cached,
        "parts": parts,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
