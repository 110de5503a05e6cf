"""Time the synthetic corpus writer: 10 speakers x 20 GRID clips (3 s, 256 px) on 2 workers.

Target (from the issue): under 120 s on 2 CPU cores. Prints the time and writes
``benchmarks/results/synth.json``. Run: ``.venv/bin/python benchmarks/synth.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from talking_faces import __version__
from talking_faces.data.synthetic.corpus import FPS, GRID_FRAMES, write_corpus
from talking_faces.utils.io import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "synth.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=10)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--layout", default="grid", choices=("grid", "lrw"))
    args = parser.parse_args()
    os.environ.setdefault("TALKING_FACES_QUIET", "1")
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        start = time.perf_counter()
        meta = write_corpus(
            Path(tmp) / "corpus",
            layout=args.layout,
            speakers=args.speakers,
            clips=args.clips,
            size=args.size,
            workers=args.workers,
        )
        seconds = time.perf_counter() - start
    frames = meta["num_clips"] * meta["frames_per_clip"]
    result = {
        "benchmark": "synth",
        "layout": args.layout,
        "speakers": args.speakers,
        "clips_per_speaker": args.clips,
        "size": args.size,
        "workers": args.workers,
        "clip_seconds": GRID_FRAMES / FPS if args.layout == "grid" else 29 / FPS,
        "frames": frames,
        "seconds": round(seconds, 2),
        "ms_per_frame_per_worker": round(1000 * seconds * args.workers / frames, 2),
        "target_seconds": 120,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "version": __version__,
    }
    write_json_atomic(RESULTS, result)
    print(
        f"synth {args.layout}: {meta['num_clips']} clips, {frames} frames at {args.size} px on "
        f"{args.workers} workers in {seconds:.1f} s "
        f"({result['ms_per_frame_per_worker']} ms/frame/worker; target < 120 s) -> {RESULTS}"
    )


if __name__ == "__main__":
    main()
