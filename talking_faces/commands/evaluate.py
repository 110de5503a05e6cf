"""``talking-faces evaluate CKPT|--baseline NAME --data PREP``: score on the fixed test pairs.

checkpoint or baseline + prepared dataset + protocol -> :func:`talking_faces.evaluate.evaluate`
-> results JSON (DESIGN.md "Results JSON") + per-clip CSV beside it.
"""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  talking-faces evaluate runs/ldm/checkpoints/last.ckpt --data PREP --out results/ldm.json
  talking-faces evaluate --baseline ground-truth --data PREP --out results/gt.json
  talking-faces evaluate --baseline static --data PREP --protocol synthetic --out static.json
  # sanity check of the SyncNet: ground truth with the audio 3 frames early reports offset +3
  talking-faces evaluate --baseline ground-truth --audio-shift 3 --data PREP --out gt+3.json

Experts: LSE and LMD are scored by the dataset's experts, PREP/experts/syncnet.ckpt and
PREP/experts/landmarks.ckpt, written by
  talking-faces fit experiments/experts/syncnet.yaml data.root=PREP
  talking-faces fit experiments/experts/landmarks.yaml data.root=PREP
or by the files given with --syncnet / --landmarks-model. Protocols are the YAML files in
experiments/protocols/ (default, synthetic, wav2lip-lse, chen2018-lmd) or a path to one; results
under different protocols are never compared.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="score a checkpoint or a reference baseline and write a results JSON",
        description="Generate a clip for every fixed test pair of a prepared dataset (or take a "
        "reference baseline: the real clip, the identity frame repeated, or real frames with "
        "another clip's audio), score it with the metric suite of a named protocol, and write "
        "the results JSON and a per-clip CSV.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ckpt", nargs="?", metavar="CKPT", help="checkpoint written by fit")
    p.add_argument(
        "--baseline",
        choices=("ground-truth", "static", "shuffled"),
        help="score a reference row instead of a checkpoint",
    )
    p.add_argument("--data", required=True, metavar="PREP", help="prepared dataset")
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
    p.add_argument("--limit", type=int, help="score only the first N pairs (quick checks)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from talking_faces.evaluate import EvaluationRequest, evaluate

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
        batch_size=args.batch_size,
        num_workers=args.workers,
        num_samples=args.samples,
        seed=args.seed,
        audio_shift=args.audio_shift,
        device=args.device,
        limit=args.limit,
    )
    results = evaluate(req)
    shown = ("psnr", "ssim", "lpips", "lmd", "lse_d", "lse_c", "lse_offset", "cpbd")
    scores = "  ".join(f"{k} {results['metrics'][k]:.4g}" for k in shown if k in results["metrics"])
    print(f"{results['label']}: {scores}")
    print(f"wrote {args.out} and {results['per_clip']} ({results['pairs']['evaluated']} pairs)")
    return 0
