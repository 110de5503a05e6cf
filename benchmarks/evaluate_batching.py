"""Frames/s of ``talking-faces evaluate`` against ``--batch-size`` (test pairs per generate call).

``evaluate`` groups test pairs of equal length into batches of ``--batch-size`` and hands each
batch to the method's ``generate`` (which also batches the K samples of ``--samples K``). This
script times it end to end on a synthetic LRW-layout corpus (29-frame clips) prepared at the
method's size, with a checkpoint of the method's preset (untrained weights: the speed is the
same), under a protocol that scores only PSNR and SSIM, so the figures are generation plus data
loading, per wall-clock second (the results JSON's timing) and per CPU-second of this process
(``evaluate`` runs in it; robust to other jobs on a shared machine, with ``--threads 1``). Every
method in ``MODELS`` with a preset is timed unless ``--models`` says otherwise.

    .venv/bin/python benchmarks/evaluate_batching.py --threads 2
    .venv/bin/python benchmarks/evaluate_batching.py --preset tiny --size 64 --batch-sizes 1 4 16

Prints a table and writes ``benchmarks/results/evaluate_batching.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

PROTOCOL = """\
name: generation-only
resolution: 128
cpbd: false
lpips: false
syncnet: none
landmarks: none
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", nargs="*", help="names from MODELS (default: all with a preset)")
    p.add_argument("--preset", choices=["paper", "tiny"], default="paper")
    p.add_argument("--size", type=int, default=128, help="frame size (default 128)")
    p.add_argument("--batch-sizes", nargs="*", type=int, default=[1, 2, 4, 8])
    p.add_argument("--samples", nargs="*", type=int, default=[1, 3], help="--samples values")
    p.add_argument("--pairs", type=int, default=16, help="pairs scored (evaluate --limit)")
    p.add_argument(
        "--split",
        default="train",
        help="split scored (default train: every clip a same-clip pair, more pairs than test)",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", default=None, help="a prepared LRW-layout dataset to reuse")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "evaluate_batching.json"))
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from throughput import build, preset_path

    from talking_faces.cli.main import main as cli
    from talking_faces.models import MODELS
    from talking_faces.utils.io import write_json_atomic

    names = args.models or sorted(n for n in MODELS if preset_path(n, args.preset).is_file())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prep = Path(args.data) if args.data else work / "prep"
        if not args.data:
            raw = work / "raw"
            synth = ["synth", str(raw), "--layout", "lrw", "--speakers", "4", "--clips", "6"]
            assert cli([*synth, "--size", str(max(args.size, 128))]) == 0
            prepare = ["prepare", str(raw), str(prep), "--layout", "lrw"]
            assert cli([*prepare, "--landmarks", "sidecar", "--size", str(args.size)]) == 0
        protocol = work / "generation-only.yaml"
        protocol.write_text(PROTOCOL)
        for name in names:
            torch.manual_seed(0)
            model = build(name, args.preset, args.size, 28, 12)
            ckpt = work / f"{name}.ckpt"
            torch.save(
                {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, ckpt
            )
            for samples in args.samples if model.stochastic else [1]:
                for batch_size in args.batch_sizes:
                    out = work / f"{name}-{samples}-{batch_size}.json"
                    argv_eval = ["evaluate", str(ckpt), "--data", str(prep), "--out", str(out)]
                    argv_eval += ["--protocol", str(protocol), "--limit", str(args.pairs)]
                    argv_eval += ["--split", args.split]
                    argv_eval += ["--batch-size", str(batch_size), "--samples", str(samples)]
                    cpu = time.process_time()
                    assert cli(argv_eval) == 0
                    cpu = time.process_time() - cpu
                    timing = json.loads(out.read_text())["timing"]
                    row = {
                        "model": name,
                        "preset": args.preset,
                        "size": args.size,
                        "samples": samples,
                        "batch_size": batch_size,
                        "pairs": args.pairs,
                        "seconds": timing["seconds"],
                        "frames_per_s": timing["frames_per_second"],
                        "generated_frames_per_s": timing["frames_per_second"] * samples,
                        "cpu_seconds": cpu,
                        "frames_per_cpu_s": timing["frames"] / cpu,
                    }
                    rows.append(row)
                    print(
                        f"{name:6} {args.size:>4} px  samples {samples}  --batch-size "
                        f"{batch_size:>3}: {row['frames_per_s']:7.2f} scored frames/s "
                        f"({row['generated_frames_per_s']:.2f} generated), "
                        f"{row['frames_per_cpu_s']:.2f} scored frames per CPU-second",
                        flush=True,
                    )
    write_json_atomic(
        Path(args.out),
        {"threads": torch.get_num_threads(), "torch": torch.__version__, "results": rows},
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TALKING_FACES_QUIET", "1")
    sys.exit(main())
