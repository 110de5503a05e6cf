"""``talking-faces evaluate CKPT|--baseline NAME|--generated DIR --data PREP``: score on the
fixed test pairs.

checkpoint, baseline or a folder of videos made elsewhere + prepared dataset + protocol ->
:func:`talking_faces.evaluation.evaluate.evaluate`
-> results JSON + per-clip CSV beside it (and the scores added to the checkpoint's W&B run when
its fit logged to W&B).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from talking_faces import names
from talking_faces.errors import UserError

EPILOG = """\
examples:
  talking-faces evaluate runs/ldm/checkpoints/last.ckpt --data PREP --out results/ldm.json
  talking-faces evaluate --baseline ground-truth --data PREP --out results/gt.json
  talking-faces evaluate --baseline static --data PREP --protocol synthetic --out static.json
  # sanity check of the SyncNet: ground truth with the audio 3 frames early reports offset +3
  talking-faces evaluate --baseline ground-truth --audio-shift 3 --data PREP --out gt+3.json
  # three sample videos (real | generated, with the audio) in results/ldm.videos/
  talking-faces evaluate runs/ldm/checkpoints/last.ckpt --data PREP --out results/ldm.json \
      --videos 3

  # videos made elsewhere, one per test pair (0000.mp4, 0001.mp4, ...), under the same protocol
  talking-faces evaluate --generated wav2lip_out/ --label wav2lip --data PREP \
      --out results/wav2lip.json

  # the pairs over 4 processes; a dataset on S3-compatible storage
  talking-faces evaluate CKPT --data s3://bucket/grid_prep --devices 4 --out results/ldm.json

Experts: LSE and LMD are scored by the dataset's experts, PREP/experts/syncnet.ckpt and
PREP/experts/landmarks.ckpt, written by
  talking-faces fit experiments/experts/syncnet.yaml data.root=PREP
  talking-faces fit experiments/experts/landmarks.yaml data.root=PREP
or by the files given with --syncnet / --landmarks-model. For an s3:// dataset they are fetched
from s3://.../experts/ (train them on a local copy and upload it with the dataset:
talking-faces prepare SOURCE s3://... --staging LOCAL_PREP). Protocols are the YAML files in
experiments/protocols/ (default, synthetic, wav2lip-lse, chen2018-lmd) or a path to one; results
under different protocols are never compared.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="score a checkpoint, a reference baseline or a folder of generated videos and "
        "write a results JSON",
        description="Generate a clip for every fixed test pair of a prepared dataset (or take a "
        "reference baseline: the real clip, the identity frame repeated, or real frames with "
        "another clip's audio, or read it from a folder of videos made elsewhere), score it "
        "with the metric suite of a named protocol, and write the results JSON and a per-clip "
        "CSV.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_inputs(p)
    _add_run_options(p)
    p.set_defaults(func=run)
    return p


def check_paths(args: argparse.Namespace) -> None:
    """The input files exist (checked before torch is imported, so the error is immediate)."""
    if args.ckpt is not None and not Path(args.ckpt).is_file():
        raise UserError(
            f"checkpoint {args.ckpt} does not exist; pass the .ckpt a `fit` run wrote "
            "(RUN/checkpoints/last.ckpt)"
        )
    if args.generated is not None and not Path(args.generated).is_dir():
        raise UserError(
            f"--generated {args.generated} is not a folder; pass the folder that holds one video "
            "per test pair (docs/metrics.md, Scoring videos made elsewhere)"
        )
    if "://" not in args.data and not (Path(args.data) / "meta.json").is_file():
        what = "does not exist" if not Path(args.data).exists() else "has no meta.json"
        raise UserError(
            f"prepared dataset {args.data} {what}; pass a folder written by "
            "`talking-faces prepare` (an unfinished one: rerun that prepare)"
        )


def _parse_options(items: list[str]) -> dict:
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--option {item!r} is not KEY=VALUE (e.g. --option wid_scale=1.5)")
        options[key.strip()] = yaml.safe_load(value)
    return options


def _read_provenance(path: str | None) -> dict | None:
    import json

    from talking_faces.evaluation.results import validate_provenance

    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"--provenance {path}: cannot read a JSON object ({exc})") from None
    validate_provenance(data, f"--provenance {path}")
    return data


def run(args: argparse.Namespace) -> int:
    check_paths(args)
    from talking_faces.evaluation.evaluate import EvaluationRequest, evaluate

    req = EvaluationRequest(
        data=args.data,
        out=args.out,
        ckpt=args.ckpt,
        baseline=args.baseline,
        split=args.split,
        protocol=args.protocol,
        syncnet=args.syncnet,
        landmarks_model=args.landmarks_model,
        syncnet_public=args.syncnet_public,
        arcface=args.arcface,
        batch_size=args.batch_size,
        num_workers=args.workers,
        num_samples=args.samples,
        seed=args.seed,
        audio_shift=args.audio_shift,
        device=args.device,
        limit=args.limit,
        drive=args.drive,
        options=_parse_options(args.option),
        videos=args.videos,
        provenance=_read_provenance(args.provenance),
        devices=args.devices,
        generated=args.generated,
        label=args.label,
    )
    results = evaluate(req)
    shown = (
        "psnr",
        "ssim",
        "lpips",
        "csim_dlib",
        "csim_arcface",
        "lmd",
        "lse_d",
        "lse_c",
        "lse_offset",
        "cpbd",
    )
    scores = "  ".join(f"{k} {results['metrics'][k]:.4g}" for k in shown if k in results["metrics"])
    print(f"{results['label']}: {scores}")
    per_clip = Path(args.out).with_name(results["per_clip"])
    print(f"wrote {args.out} and {per_clip} ({results['pairs']['evaluated']} pairs)")
    if results.get("wandb_run"):
        print(f"added the scores to W&B run {results['wandb_run']} (its run folder's wandb/)")
    return 0


def _add_inputs(p: argparse.ArgumentParser) -> None:
    """What is scored, on which data, under which protocol, and where the results go."""
    p.add_argument("ckpt", nargs="?", metavar="CKPT", help="checkpoint written by fit")
    p.add_argument(
        "--baseline",
        choices=names.BASELINES,
        help="score a reference row instead of a checkpoint",
    )
    p.add_argument(
        "--generated",
        metavar="DIR",
        help="score a folder of videos made elsewhere instead of a checkpoint: one per test pair, "
        "named <pair index>.mp4, <4-digit pair index>.mp4 or <audio clip id, / as _>.mp4 (or "
        ".npy frames, or a folder of PNG frames); docs/metrics.md",
    )
    p.add_argument(
        "--label",
        metavar="NAME",
        help="with --generated: the leaderboard row's method name (default: the folder's name)",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="PREP",
        help="prepared dataset: a folder or s3://bucket/prefix (docs/scale-out.md)",
    )
    p.add_argument("--split", default="test", help="split to score (default test: pairs.json)")
    p.add_argument(
        "--out",
        default="results.json",
        help="results JSON (default results.json); the "
        "per-clip CSV is written beside it as <stem>.clips.csv",
    )
    p.add_argument(
        "--protocol",
        default="default",
        help="protocol name in experiments/protocols/ or a YAML path (default: default)",
    )
    p.add_argument("--syncnet", metavar="PATH", help="SyncNet expert checkpoint")
    p.add_argument("--landmarks-model", metavar="PATH", help="landmark expert checkpoint")
    p.add_argument(
        "--syncnet-public",
        metavar="PATH",
        help="public syncnet_v2.model state dict (protocols with syncnet: public)",
    )
    p.add_argument(
        "--arcface",
        metavar="PATH",
        help="arcface_torch backbone.pth (protocols with identity: arcface; default: "
        "$TALKING_FACES_WEIGHTS/arcface_backbone.pth)",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """How it is generated and run: samples, batches, seed, devices, videos, provenance."""
    p.add_argument("--samples", type=int, default=1, help="samples per pair (stochastic models)")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per batch (default 8)")
    p.add_argument("--workers", type=int, default=0, help="data loading processes (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of generation and shuffling")
    p.add_argument(
        "--audio-shift",
        type=int,
        default=0,
        metavar="N",
        help="ground-truth baseline only: move the audio N frames earlier (negative: later)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="shard the pairs over N processes (gloo on cpu; with --device cuda, GPUs 0..N-1); "
        "the results equal one process's (default 1)",
    )
    p.add_argument("--limit", type=int, help="score only the first N pairs (quick checks)")
    p.add_argument(
        "--videos",
        type=int,
        default=1,
        metavar="N",
        help="write the first N pairs as <out stem>.videos/<pair>.mp4 (real | generated, audio "
        "muxed; the leaderboard shows them); default 1, 0 for none",
    )
    p.add_argument(
        "--provenance",
        metavar="JSON",
        help="a JSON object recorded as the results' provenance (the sweep command passes the "
        "sweep and trial)",
    )
    p.add_argument(
        "--drive",
        choices=("audio", "video"),
        default="audio",
        help="what drives generation (default audio); video: the pair's real frames drive the "
        "identity (methods that support it, e.g. davs)",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a test-time option of the method (e.g. davs: wid_scale=1.5, finetune_steps=5); "
        "repeatable; recorded in the results",
    )
