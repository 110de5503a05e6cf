"""``talking-faces synth``: write the built-in synthetic corpus in GRID or LRW layout.

The first stage of the data flow for the synthetic data; ``prepare`` reads what this writes. The
work is in :func:`talking_faces.data.synthetic.corpus.write_corpus`; ``--preview`` also draws a
small contact sheet (:mod:`talking_faces.data.synthetic.sheet`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from talking_faces.errors import UserError

_EPILOG = """examples:
  talking-faces synth data/grid_synth --layout grid --speakers 3 --clips 4
  talking-faces synth data/lrw_synth --layout lrw --speakers 3 --clips 4 --size 128
  talking-faces synth /tmp/demo --layout grid --speakers 4 --clips 1 --preview docs/synth_sheet.png
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "synth",
        help="write the built-in synthetic corpus (GRID or LRW layout) with ground-truth landmarks",
        description=(
            "Write a synthetic talking-face corpus: formant speech from the GRID grammar, one\n"
            "parametric face per speaker whose mouth follows the phones, random blinks and head\n"
            "motion independent of the audio, 68-point ground-truth landmarks beside every clip\n"
            "(<clip>.landmarks.npz). Same seed and arguments give identical audio and frames."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", help="output folder (created; must be empty)")
    p.add_argument(
        "--layout",
        required=True,
        choices=("grid", "lrw"),
        help="grid: sN/<utt>.mpg/.wav + align/sN/<utt>.align, 75 frames; "
        "lrw: <WORD>/{train,val,test}/<WORD>_NNNNN.mp4/.txt, 29 frames",
    )
    p.add_argument("--speakers", type=int, default=4, help="number of speakers (default 4)")
    p.add_argument("--clips", type=int, default=10, help="clips per speaker (default 10)")
    p.add_argument(
        "--size", type=int, default=256, help="frame size in pixels, multiple of 16, >= 64 (256)"
    )
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    p.add_argument(
        "--workers", type=int, default=None, help="parallel processes (default: all cores)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="clear a non-empty OUT instead of refusing"
    )
    p.add_argument(
        "--preview",
        metavar="PNG",
        default=None,
        help="also write a contact sheet: a few speakers, mouth closed and open, "
        "with the landmarks overlaid in a second row",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from talking_faces.data.synthetic import corpus, sheet
    from talking_faces.utils.seed import seed_everything

    if args.preview is not None and Path(args.preview).suffix.lower() != ".png":
        raise UserError(f"--preview must name a .png file, got {args.preview}")
    workers = corpus.available_cores() if args.workers is None else args.workers
    corpus.check_arguments(args.layout, args.speakers, args.clips, args.size, args.seed, workers)
    seed_everything(args.seed)
    meta = corpus.write_corpus(
        args.out,
        layout=args.layout,
        speakers=args.speakers,
        clips=args.clips,
        size=args.size,
        seed=args.seed,
        workers=workers,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {meta['num_clips']} {args.layout} clips ({args.speakers} speakers x "
        f"{args.clips}, {args.size} px) to {args.out}",
        file=sys.stderr,
    )
    if args.preview is not None:
        specs = corpus.plan_corpus(args.layout, args.speakers, args.clips, args.seed)
        sheet.write_contact_sheet(args.preview, specs, args.size)
        print(f"wrote contact sheet {args.preview}", file=sys.stderr)
    return 0
