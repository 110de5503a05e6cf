"""``talking-faces leaderboard RESULTS... | DIR``: results JSONs to ranked tables per protocol.

results JSON files or folders of them (evaluate, sweeps) + paper-reported numbers ->
:func:`talking_faces.reporting.leaderboard.build_leaderboard` -> Markdown (stdout or --out), CSV,
HTML.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from talking_faces.errors import UserError

EPILOG = """\
examples:
  talking-faces leaderboard results/
  talking-faces leaderboard runs/sweeps/ldm_beta --out runs/sweeps/ldm_beta/lb.md \\
      --html runs/sweeps/ldm_beta/lb.html --csv runs/sweeps/ldm_beta/lb.csv
  talking-faces leaderboard results/ldm.json results/static.json --reported none

One table per group of results measured on the same dataset (meta.json sha256), split, pair
list and protocol; groups are never mixed. Rows of the same method and config over several seeds
are one row (mean ± std over seeds). Every metric gets a 95% bootstrap interval over test pairs,
and every row a Wilcoxon signed-rank test against the best method on the protocol's
primary_metric (ties at 0.05 marked). Reference rows (ground-truth, static, shuffled) are shown
unranked; paper-reported numbers (experiments/leaderboard/reported.yaml) apart, never ranked.

Columns come by dimension (quality, naturalness, synchronisation, identity). Lip, head-motion
and eyebrow dynamics and silent-lip MAD are shown raw and normalised against the group's
ground-truth row (<key>_norm = 1 - |m - m_GT| / |m_GT|, THEval); final_score is the mean of the
normalised ones, its list written beside the table and in the CSV's final_score_of column. A
group without a ground-truth row has neither. The HTML page adds each row's normalised profile
and every metric per speaker (speakers from the dataset's manifest.jsonl, when readable).
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "leaderboard",
        help="rank results JSONs per dataset and protocol (Markdown, CSV, HTML)",
        description="Group results by dataset, split, pair list and protocol; merge seeds; add "
        "bootstrap intervals over test pairs and paired tests against the best method; show "
        "reference rows and paper-reported numbers apart.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="results JSON files, or folders searched for them (e.g. a sweep folder)",
    )
    p.add_argument("--out", metavar="MD", help="write the Markdown here (default: print it)")
    p.add_argument("--csv", metavar="CSV", help="also write a CSV with every metric")
    p.add_argument("--html", metavar="HTML", help="also write a self-contained HTML page")
    p.add_argument(
        "--reported",
        metavar="YAML",
        help="paper-reported numbers (default experiments/leaderboard/reported.yaml; "
        "'none' for none)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    for path in args.results:
        if not Path(path).exists():
            raise UserError(f"{path} does not exist; pass results JSON files or folders of them")
    for flag, path, suffix in (("--out", args.out, ".md"), ("--html", args.html, ".html")):
        if path is not None and Path(path).suffix.lower() not in (
            suffix,
            ".htm" if suffix == ".html" else suffix,
        ):
            raise UserError(f"{flag} must name a {suffix} file, got {path}")
    from talking_faces.reporting.leaderboard import (
        build_leaderboard,
        default_reported,
        to_csv,
        to_markdown,
    )
    from talking_faces.utils.io import write_text_atomic

    if args.reported == "none":
        reported = None
    elif args.reported is not None:
        reported = args.reported
    else:
        reported = default_reported()
    board = build_leaderboard(args.results, reported)
    md = to_markdown(board)
    if args.out:
        write_text_atomic(args.out, md)
    else:
        print(md, end="")
    if args.csv:
        write_text_atomic(args.csv, to_csv(board))
    if args.html:
        from talking_faces.reporting.html import to_html

        write_text_atomic(args.html, to_html(board, args.html))
    written = [p for p in (args.out, args.csv, args.html) if p]
    print(
        f"{board.num_results} results in {len(board.groups)} group(s)"
        + (f"; wrote {', '.join(written)}" if written else ""),
        file=sys.stderr,
    )
    return 0
