"""The evaluation experts at full size on the synthetic corpus, and the reference rows they score.

Builds ``--work`` (default ``/tmp/tf-bench-experts``): ``synth`` 8 speakers x 24 clips at 128 px,
``prepare`` at 128 px, then trains both experts with their presets
(``experiments/experts/{syncnet,landmarks}.yaml``, 400 steps each) and evaluates the reference rows
with protocol ``synthetic``: ground truth, static, shuffled, and ground truth with its audio moved
by +3 and -3 frames. Targets (issue "Evaluation suite"): SyncNet in-sync vs off-sync validation
accuracy >= 0.90; landmark expert mouth error <= 1.5 px at 128 px; ground truth beats static and
shuffled on LSE-C and LMD; the shifted rows are found at +3 / -3.

    .venv/bin/python benchmarks/experts.py            # about 15 minutes on 2 CPU cores

Prints a table and writes ``benchmarks/results/experts.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS = (
    ("ground-truth", 0),
    ("static", 0),
    ("shuffled", 0),
    ("ground-truth", 3),
    ("ground-truth", -3),
)
KEYS = ("lse_c", "lse_d", "lse_offset", "lmd", "psnr", "ssim")


def last_validation(run: Path) -> dict[str, float]:
    """The last row of a run's ``metrics.csv`` that holds validation values."""
    with (run / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if any(r[k] for k in r if k.startswith("val/"))]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tf-bench-experts")
    ap.add_argument("--speakers", type=int, default=8)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "experts.json")
    args = ap.parse_args()
    os.environ.setdefault("TALKING_FACES_QUIET", "1")

    from talking_faces.cli.main import main as cli

    raw, prep, runs = args.work / "raw", args.work / "prep", args.work / "runs"
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if not (prep / "meta.json").exists():
        synth = ["synth", str(raw), "--layout", "grid", "--size", "128", "--overwrite"]
        assert cli([*synth, "--speakers", str(args.speakers), "--clips", str(args.clips)]) == 0
        prepare = ["prepare", str(raw), str(prep), "--layout", "grid", "--landmarks", "sidecar"]
        assert cli([*prepare, "--size", "128"]) == 0
    timings["data_s"] = time.perf_counter() - t0

    experts = {}
    for name in ("syncnet", "landmarks"):
        if (prep / "experts" / f"{name}.ckpt").exists() and (runs / name).is_dir():
            print(f"reusing the {name} expert of {runs / name}")  # a rerun of the same --work
        else:
            t0 = time.perf_counter()
            config = str(ROOT / "experiments" / "experts" / f"{name}.yaml")
            assert cli(["fit", config, f"data.root={prep}", f"out={runs}", f"name={name}"]) == 0
            timings[f"fit_{name}_s"] = time.perf_counter() - t0
        experts[name] = last_validation(runs / name)

    rows = []
    for baseline, shift in ROWS:
        out = args.work / "results" / f"{baseline}{shift:+d}.json"
        t0 = time.perf_counter()
        evaluate = ["evaluate", "--baseline", baseline, "--data", str(prep), "--out", str(out)]
        assert cli([*evaluate, "--protocol", "synthetic", "--audio-shift", str(shift)]) == 0
        metrics = json.loads(out.read_text())["metrics"]
        rows.append(
            {
                "baseline": baseline,
                "audio_shift": shift,
                "seconds": time.perf_counter() - t0,
                **{k: metrics[k] for k in KEYS},
                "clips": metrics["clips"],
            }
        )

    sync, lmk = experts["syncnet"], experts["landmarks"]
    print(f"synthetic corpus {args.speakers} speakers x {args.clips} clips, 128 px")
    print(
        f"syncnet expert: val acc {sync['val/acc']:.3f} (target >= 0.90), offset acc "
        f"{sync.get('val/offset_acc', float('nan')):.3f}"
    )
    print(f"landmark expert: mouth error {lmk['val/mouth_px']:.2f} px (target <= 1.5)")
    print(f"{'row':18s} " + " ".join(f"{k:>10s}" for k in KEYS))
    for r in rows:
        label = r["baseline"] + (f" {r['audio_shift']:+d}" if r["audio_shift"] else "")
        print(f"{label:18s} " + " ".join(f"{r[k]:10.3f}" for k in KEYS))

    record = {
        "corpus": {"speakers": args.speakers, "clips": args.clips, "size": 128},
        "experts": experts,
        "rows": rows,
        "timings": timings,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
