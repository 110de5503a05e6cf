"""amie's ablation sweep read against its full model: every row's mean ± std over seeds, and a
paired test over the test pairs against the ``full`` row for each ranking metric.

The leaderboard tests every row against the best one on the protocol's primary metric; the
paper's Table 3 reads each row against the full model, so this script builds the same leaderboard
group (:func:`talking_faces.reporting.leaderboard.build_leaderboard`: seeds merged, per-pair seed
means) and runs the leaderboard's own paired test
(:func:`talking_faces.reporting.leaderboard.paired_test`, two-sided Wilcoxon signed-rank over pairs)
of each row against ``full``, per metric.

    .venv/bin/python benchmarks/amie_ablation.py runs/sweeps/amie_ablation runs/sweeps/beta_refs

Prints a Markdown table and writes ``benchmarks/results/amie_ablation.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from talking_faces.reporting.leaderboard import build_leaderboard, paired_test  # noqa: E402

ORDER = ["baseline", "mi", "da", "da_mine", "da_mine_asym", "da_mine_js", "full"]
METRICS = ["lmd", "lse_c", "lse_d", "psnr", "ssim"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="the sweep folder and the reference results")
    parser.add_argument("--against", default="full", help="the row every row is tested against")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/amie_ablation.json"))
    args = parser.parse_args(argv)

    board = build_leaderboard(args.paths, reported=None)
    if len(board.groups) != 1:
        sys.exit(f"expected one leaderboard group, got {len(board.groups)}")
    group = board.groups[0]

    def name(row) -> str:
        return row.label.split("row=")[-1] if "row=" in row.label else row.label

    rows = {name(r): r for r in group.rows}
    against = rows[args.against]
    out: dict[str, dict] = {}
    lines = [
        "| row | seeds | " + " | ".join(f"{m} (p vs {args.against})" for m in METRICS) + " |",
        "|---|---:|" + "---|" * len(METRICS),
    ]
    for key in [k for k in ORDER if k in rows] + [k for k in rows if k not in ORDER]:
        row = rows[key]
        cells, record = [], {"seeds": len(row.seeds), "metrics": {}}
        for m in METRICS:
            mean, std = row.mean.get(m), row.std.get(m)
            p = None
            if row is not against and m in row.per_pair and m in against.per_pair:
                p = paired_test(row.per_pair[m], against.per_pair[m])
            record["metrics"][m] = {"mean": mean, "std": std, "ci": row.ci.get(m), "p": p}
            text = "–" if mean is None else f"{mean:.4g}" + (f" ± {std:.2g}" if std else "")
            if p is not None:
                text += f" (p {p:.2g})"
            cells.append(text)
        out[key] = record
        lines.append(f"| {key} | {len(row.seeds)} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    Path(args.out).write_text(json.dumps({"against": args.against, "rows": out}, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
