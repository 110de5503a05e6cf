"""Prepared-data throughput: prepare clips/s (sidecar) and TalkingFaceDataModule frames/s.

Makes its own synthetic GRID corpus (default 4 speakers x 40 clips, 256 px, 75 frames), prepares
it at 128 px, then measures:

* prepare: clips/s with the sidecar landmark backend, and prepared bytes per frame;
* the datamodule: frames delivered (B x T per batch, training windows, random identity frame) for
  T = 5 and T = 75 with 0, 1 and 2 DataLoader workers, per wall-clock second and per CPU-second
  of the loading processes (the main process for 0 workers, the workers otherwise), and the
  shard MB/s that implies. Whole epochs are timed, worker start-up included;
* ceilings (CPU time of one process): reading the shard files' bytes (no deserialisation, no
  decoding), iterating the LitData records without decoding any JPEG, and decoding JPEG frames.

CPU-seconds make the per-core figure meaningful on a shared machine, where wall-clock rates
depend on the other processes. Targets (from the issue): >= 2,000 frames/s per worker core at
128 px, <= 10 KB per frame. Prints a table and writes ``benchmarks/results/dataloader.json``.
Run: ``.venv/bin/python benchmarks/dataloader.py`` (about 2-3 minutes on 2 cores);
``--prepared DIR`` reuses a prepared dataset and times only the loader.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from talking_faces import __version__
from talking_faces.utils.io import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "dataloader.json"


def shard_files(prep: Path, split: str) -> list[Path]:
    return sorted((prep / "shards" / split).glob("chunk-*.bin"))


def prepared_size(prep: Path) -> dict[str, float]:
    import json

    from litdata import StreamingDataset

    rows = [json.loads(x) for x in (prep / "manifest.jsonl").read_text().splitlines()]
    ok = [r for r in rows if r["status"] == "ok"]
    frames = sum(r["frames"] for r in ok)
    shard_bytes = sum(p.stat().st_size for p in (prep / "shards").rglob("*") if p.is_file())
    jpeg = 0
    for split in ("train", "val", "test"):
        if (prep / "shards" / split).exists():
            ds = StreamingDataset(str(prep / "shards" / split))
            jpeg += sum(len(ds[i]["frames"]) for i in range(len(ds)))
    return {
        "clips": len(ok),
        "frames": frames,
        "shard_bytes": shard_bytes,
        "bytes_per_frame": shard_bytes / frames,
        "jpeg_bytes_per_frame": jpeg / frames,
    }


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def time_loader(prep: Path, t: int, workers: int, batch_size: int, min_s: float) -> dict[str, Any]:
    """Iterate whole training epochs for at least ``min_s`` seconds of wall time.

    Wall-clock rates depend on what else the machine runs; CPU time does not (much), so the
    per-core rate is frames per CPU-second of the processes that load: the main process for
    ``workers=0``, the DataLoader worker processes otherwise (their CPU time is collected when
    they exit at the end of each epoch).
    """
    from talking_faces.data import TalkingFaceDataModule

    dm = TalkingFaceDataModule(str(prep), num_frames=t, batch_size=batch_size, num_workers=workers)
    loader = dm.train_dataloader()
    record_bytes = _mean_record_bytes(prep, "train")
    for _ in loader:  # one untimed epoch: first-use costs (imports, library loads, caches)
        pass
    frames = clips = epochs = 0
    first_s = 0.0
    wall0, cpu0, child0 = time.perf_counter(), time.process_time(), _children_cpu_s()
    while time.perf_counter() - wall0 < min_s or epochs < 2:
        t0 = time.perf_counter()
        it = iter(loader)
        for i, batch in enumerate(it):
            if i == 0:
                first_s += time.perf_counter() - t0
            frames += batch["frames"].shape[0] * batch["frames"].shape[1]
            clips += batch["frames"].shape[0]
        del it  # shuts the workers down, so their CPU time is counted
        epochs += 1
    wall = time.perf_counter() - wall0
    main_cpu = time.process_time() - cpu0
    worker_cpu = _children_cpu_s() - child0
    loader_cpu = main_cpu if workers == 0 else worker_cpu
    return {
        "T": t,
        "workers": workers,
        "batch_size": batch_size,
        "epochs": epochs,
        "frames": frames,
        "wall_s": round(wall, 2),
        "frames_per_s": round(frames / wall, 1),
        "main_cpu_s": round(main_cpu, 2),
        "worker_cpu_s": round(worker_cpu, 2),
        "frames_per_loader_cpu_s": round(frames / loader_cpu, 1),
        "clips_per_s": round(clips / wall, 1),
        "shard_MB_per_s": round(clips / wall * record_bytes / 1e6, 1),
        "shard_MB_per_loader_cpu_s": round(clips / loader_cpu * record_bytes / 1e6, 1),
        "first_batch_s": round(first_s / epochs, 3),
    }


def _mean_record_bytes(prep: Path, split: str) -> float:
    import json

    index = json.loads((prep / "shards" / split / "index.json").read_text())
    n = sum(c["chunk_size"] for c in index["chunks"])
    return sum(c["chunk_bytes"] for c in index["chunks"]) / n


def ceilings(prep: Path, frames_per_clip: int) -> dict[str, Any]:
    from litdata import StreamingDataset

    from talking_faces.data.dataset import decode_frames

    files = shard_files(prep, "train")
    total = sum(p.stat().st_size for p in files)
    t0 = time.process_time()
    reps = 0
    while time.process_time() - t0 < 1.0:
        for p in files:
            with open(p, "rb") as f:
                while f.read(1 << 22):
                    pass
        reps += 1
    file_mb_s = reps * total / (time.process_time() - t0) / 1e6

    ds = StreamingDataset(str(prep / "shards" / "train"), batch_decode=0)  # as the loader reads
    n = len(ds)
    t0 = time.process_time()
    reps = 0
    while time.process_time() - t0 < 1.0:
        for s in ds:
            _ = s["frames"]
        reps += 1
    records_per_s = reps * n / (time.process_time() - t0)
    record_bytes = _mean_record_bytes(prep, "train")

    sample = ds[0]
    all_frames = list(range(int(sample["num_frames"])))
    t0 = time.process_time()
    decoded = 0
    while time.process_time() - t0 < 1.0:
        decode_frames(sample["frames"], all_frames)
        decoded += len(all_frames)
    decode_fps = decoded / (time.process_time() - t0)
    return {
        "shard_file_read_MB_per_cpu_s": round(file_mb_s, 1),
        "shard_file_read_frames_per_cpu_s": round(
            file_mb_s * 1e6 / (total / (n * frames_per_clip)), 1
        ),
        "records_no_decode_per_cpu_s": round(records_per_s, 1),
        "records_no_decode_MB_per_cpu_s": round(records_per_s * record_bytes / 1e6, 1),
        "records_no_decode_frames_per_cpu_s_T5": round(records_per_s * 5, 1),
        "records_no_decode_frames_per_cpu_s_T75": round(records_per_s * 75, 1),
        "jpeg_decode_frames_per_cpu_s": round(decode_fps, 1),
    }


def make_prepared(args: argparse.Namespace, tmp: Path) -> tuple[Path, dict[str, Any], int]:
    """Synthesize and prepare the corpus; return the folder, prepare timings, frames per clip."""
    from talking_faces.data.prepare.pipeline import PrepareOptions, prepare
    from talking_faces.data.synthetic.corpus import write_corpus

    raw, prep = tmp / "raw", tmp / "prep"
    corpus = write_corpus(
        raw, layout="grid", speakers=args.speakers, clips=args.clips, size=args.raw_size
    )
    wall0, cpu0, child0 = time.perf_counter(), time.process_time(), _children_cpu_s()
    summary = prepare(
        PrepareOptions(
            source=raw,
            out=prep,
            layout="grid",
            landmarks="sidecar",
            size=args.size,
            workers=args.prepare_workers,
        )
    )
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0 + _children_cpu_s() - child0
    timing = {
        "landmarks": "sidecar",
        "raw_size": args.raw_size,
        "workers": args.prepare_workers,
        "clips": summary.total,
        "ok": summary.ok,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "clips_per_s": round(summary.total / wall, 2),
        "clips_per_cpu_s": round(summary.total / cpu, 2),
    }
    return prep, timing, int(corpus["frames_per_clip"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=4)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--raw-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--prepare-workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="wall time per loader run")
    parser.add_argument("--prepared", type=Path, default=None, help="reuse this prepared dataset")
    parser.add_argument("--keep", type=Path, default=None, help="make the corpus here and keep it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("TALKING_FACES_QUIET", "1")

    import json

    import torch

    torch.set_num_threads(1)  # one core per loader process, as in the per-core target
    with tempfile.TemporaryDirectory(prefix="dataloader-bench-") as tmp:
        if args.prepared is None:
            prep, timing, frames_per_clip = make_prepared(args, args.keep or Path(tmp))
        else:
            prep, timing = args.prepared, None
            rows = (prep / "manifest.jsonl").read_text().splitlines()
            frames_per_clip = max(json.loads(r)["frames"] for r in rows)
        size = prepared_size(prep)
        meta = json.loads((prep / "meta.json").read_text())
        loaders = []
        for t, bs in ((5, 16), (75, 2)):
            for workers in (0, 1, 2):
                row = time_loader(prep, t, workers, bs, args.seconds)
                loaders.append(row)
                print(
                    f"T={t:3d} workers={workers} batch={bs:2d}: "
                    f"{row['frames_per_s']:7.0f} frames/s wall, "
                    f"{row['frames_per_loader_cpu_s']:7.0f} frames per loader CPU-second, "
                    f"{row['shard_MB_per_s']:6.1f} MB/s of shards",
                    flush=True,
                )
        ceiling = ceilings(prep, frames_per_clip)

    result = {
        "benchmark": "dataloader",
        "corpus": {
            "layout": "grid",
            "clips": size["clips"],
            "frames_per_clip": frames_per_clip,
            "train_clips": meta["splits"]["train"],
        },
        "prepare": timing,
        "size": meta["size"],
        "jpeg_quality": meta["jpeg_quality"],
        "prepared": {k: round(v, 1) for k, v in size.items()},
        "loader": loaders,
        "ceiling": ceiling,
        "targets": {"frames_per_s_per_core": 2000, "bytes_per_frame": 10_000},
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.processor() or platform.machine(),
        "torch_threads": 1,
        "version": __version__,
    }
    write_json_atomic(args.out, result)
    if timing:
        print(
            f"prepare: {timing['clips']} clips in {timing['wall_s']:.1f} s = "
            f"{timing['clips_per_s']:.2f} clips/s wall, {timing['clips_per_cpu_s']:.2f} clips per "
            f"CPU-second ({timing['workers']} workers, sidecar, {args.raw_size} -> {args.size} px)"
        )
    print(
        f"prepared size: {size['bytes_per_frame'] / 1e3:.2f} KB/frame "
        f"(JPEG {size['jpeg_bytes_per_frame'] / 1e3:.2f} KB/frame) at {meta['size']} px"
    )
    for k, v in ceiling.items():
        print(f"ceiling {k}: {v}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
