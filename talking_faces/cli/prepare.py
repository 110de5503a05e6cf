"""``talking-faces prepare``: raw clips (GRID, LRW, a folder of videos) to a prepared dataset, in
a folder or on S3-compatible object storage.

The second stage of the data flow; the work is in
:func:`talking_faces.data.prepare.pipeline.prepare` and the output is read by
:class:`talking_faces.data.TalkingFaceDataModule`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from talking_faces.errors import UserError
from talking_faces.names import EXPERTS_DIR, FPS, MANIFEST_FILE, META_FILE, PAIRS_FILE, SAMPLE_RATE

_EPILOG = """split protocols (--split-protocol):
  grid:   utterances (default; per speaker 80/10/10), unseen-speakers (s1 s2 s20 s22 test),
          s29 (speaker 29 test)
  lrw:    lrw (default; LRW's own train/val/test folders)
  folder: by-speaker (default; speakers 80/10/10), by-clip (clips 80/10/10)

examples:
  talking-faces prepare data/grid_synth data/grid_prep --layout grid --landmarks sidecar
  talking-faces prepare lipread_mp4 data/lrw_prep --layout lrw --landmarks fan --device cuda
  talking-faces prepare my_videos data/mine --layout folder --landmarks dlib
  talking-faces prepare my_videos data/mine --layout folder --split-protocol by-clip
  # to object storage (endpoint and keys: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)
  talking-faces prepare data/grid_synth s3://bucket/grid_prep --layout grid
  # upload a dataset prepared locally, with the experts trained on it
  talking-faces prepare data/grid_synth s3://bucket/grid_prep --layout grid \
      --staging data/grid_prep

Rerunning the same command after an interruption resumes it: finished clips are kept, and
objects already uploaded are not sent again. See docs/scale-out.md.
"""


def _default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "prepare",
        help="raw clips to a prepared dataset (aligned crops, audio features, landmarks, shards)",
        description=(
            f"Decode every clip to {FPS} fps and {SAMPLE_RATE // 1000} kHz mono, find 68 "
            "landmarks, align and crop the face, compute MFCC and log-mel features, and write "
            f"LitData shards with {MANIFEST_FILE}, {PAIRS_FILE} and {META_FILE}. Bad clips are "
            "skipped and listed with a reason; the run is resumable and runs clips in parallel."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", help="raw corpus folder")
    p.add_argument(
        "out",
        metavar="OUT",
        help="output folder (created; resumed if unfinished) or s3://bucket/prefix",
    )
    p.add_argument("--layout", required=True, choices=("grid", "lrw", "folder"))
    p.add_argument(
        "--landmarks",
        choices=("sidecar", "fan", "dlib"),
        default="sidecar",
        help="sidecar: <clip>.landmarks.npz beside each video (synthetic corpus); "
        "fan: face-alignment's S3FD + FAN; dlib: dlib's CNN face detector + 68-point shape "
        "predictor, CPU (talking-faces weights --fetch; its model excludes commercial use) "
        "(default sidecar)",
    )
    p.add_argument(
        "--face-detector",
        choices=("cnn", "hog"),
        default=None,
        help="dlib's face detector (--landmarks dlib): cnn (MMOD, default: turned faces, no false "
        "faces on badges) or hog (frontal only, about 10x faster)",
    )
    p.add_argument(
        "--device", default="cpu", help="device for the fan backend (cpu, cuda; dlib: cpu)"
    )
    p.add_argument("--size", type=int, default=128, help="crop size in pixels (default 128)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"parallel processes (default: cores, at most 8; here {_default_workers()})",
    )
    p.add_argument(
        "--split-protocol",
        default=None,
        help="split protocol (see below); default per layout",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of splits and pairs (default 0)")
    p.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of frames (90)")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips (by id)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete a prepared (or unfinished) dataset in OUT and start again",
    )
    p.add_argument(
        "--staging",
        metavar="DIR",
        help="OUT s3://...: prepare in this local folder and keep it (default: a folder under "
        "$TALKING_FACES_CACHE or ~/.cache/talking_faces, deleted after the upload); a complete "
        f"dataset there is uploaded as it is, with its {EXPERTS_DIR}/",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not Path(args.source).is_dir():  # before the pipeline import pulls in torch
        raise UserError(f"source folder {args.source} does not exist; give the raw corpus folder")
    remote = "://" in args.out
    if args.staging is not None and not remote:
        raise UserError("--staging applies to an s3:// OUT only; OUT is already a local folder")
    from talking_faces.data.prepare.pipeline import PrepareOptions, prepare
    from talking_faces.utils.seed import seed_everything

    seed_everything(args.seed)
    summary = prepare(
        PrepareOptions(
            source=Path(args.source),
            out=args.out if remote else Path(args.out),
            staging=Path(args.staging) if args.staging else None,
            layout=args.layout,
            landmarks=args.landmarks,
            device=args.device,
            face_detector=args.face_detector,
            size=args.size,
            workers=args.workers if args.workers is not None else _default_workers(),
            protocol=args.split_protocol,
            seed=args.seed,
            jpeg_quality=args.jpeg_quality,
            limit=args.limit,
            overwrite=args.overwrite,
        )
    )
    print(summary.format())
    if summary.ok == 0:
        print(
            f"error: no clip of {args.source} could be prepared; see the reasons above",
            file=sys.stderr,
        )
        return 2
    print(f"prepared dataset: {summary.out}")
    return 0
