"""``talking-faces compare [CONFIG] [--quick] [key=value ...]``: the main job.

compare config -> :func:`talking_faces.orchestration.compare.run_compare` -> synth / prepare ->
experts -> every method (fit) -> evaluate of each and of the reference rows -> leaderboard -> report
folder ``compare/<name>/`` (leaderboard Markdown / CSV / HTML, side-by-side videos, training curves,
commands, timings, README).
"""

from __future__ import annotations

import argparse

from talking_faces.cli.sweep import register_intermixed  # options among positionals
from talking_faces.errors import UserError

EPILOG = """\
examples:
  talking-faces compare                     # experiments/compare/synthetic.yaml (make compare)
  talking-faces compare --quick             # a smoke run: tiny corpus, a few steps (minutes)
  talking-faces compare --seeds 3           # every method trained with seeds 0, 1, 2: mean ± std
  talking-faces compare experiments/compare/grid.yaml raw=/data/GRID
  talking-faces compare methods.ldm.max_steps=3000 methods.davs=null --out compare/ldm-longer
  talking-faces compare --dry-run           # each stage, finished or not, and its command

The config names the data (synth: the built-in corpus, or raw=: a GRID / LRW / folder corpus),
how it is prepared, the two evaluation experts, and one preset per method (fit YAML files, a
step budget, overrides, evaluation samples); key=value overrides change any of it. Budgets are
training steps, not minutes. The synthetic corpus and its prepared identity are the same on
every x86-64 CPU (the report says whether this run's data matches the config's
expected_data_identity); training runs on CPU kernels chosen by the instruction set, so runs on
another CPU can differ in their numbers: compare them through their intervals and seed spreads.

Rerunning the same command skips every finished stage (finished: its outputs exist and were made
from the same inputs: its command, the files it reads, the stages before it); a killed stage is
rerun (a fit resumes from its last checkpoint), and a changed budget reruns that method and what
depends on it. --quick merges the config's quick: section (its own report folder) and marks its
numbers as a smoke run, not a comparison.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return register_intermixed(sub, _register)


def _register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compare",
        help="the main job: data -> experts -> every method -> evaluate -> leaderboard + report",
        description="Prepare a dataset (the built-in synthetic corpus or a raw one), train both "
        "evaluation experts and every method with a preset in the config for its step budget, "
        "score each and the reference rows under one protocol, and write the leaderboard and a "
        "report folder. Resumable: a rerun skips finished stages.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "items",
        nargs="*",
        metavar="CONFIG|KEY=VALUE",
        help="compare config (default experiments/compare/synthetic.yaml), then overrides of it",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: the config's quick: section (tiny corpus, few steps); its numbers "
        "are marked as not a comparison",
    )
    p.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="stages at a time (default: the cores, at most the number of evaluations); CPU "
        "threads are split between them",
    )
    p.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="training runs per method, seeds SEED .. SEED+N-1 (default: the config's seeds; "
        "the leaderboard gives mean ± std over them, the report which differences exceed it)",
    )
    p.add_argument("--out", metavar="DIR", help="report folder (default compare/<name>)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print each stage, whether it is finished, and its command; run nothing",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from talking_faces.orchestration.compare.config import DEFAULT_CONFIG

    items = list(args.items)
    config = DEFAULT_CONFIG
    if items and "=" not in items[0]:
        config = items.pop(0)
    if args.seeds is not None:
        if args.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {args.seeds}")
        items.append(f"seeds={args.seeds}")
    stray = next((i for i in items if "=" not in i), None)
    if stray is not None:
        raise UserError(
            f"{stray!r} is not key=value; name one compare config first, then overrides "
            "(e.g. raw=/data/GRID)"
        )
    from talking_faces.orchestration.compare import CompareRequest, run_compare

    return run_compare(
        CompareRequest(
            config=config,
            overrides=items,
            quick=args.quick,
            parallel=args.parallel,
            out=args.out,
            dry_run=args.dry_run,
        )
    )
