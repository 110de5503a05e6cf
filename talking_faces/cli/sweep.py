"""``talking-faces sweep SWEEP.yaml``: an ablation sweep of fit + evaluate trials, with seeds.

W&B sweep file -> :func:`talking_faces.orchestration.sweep.run_sweep` -> sweep folder (one folder
per trial with its run folder and results JSON; summary.md and summary.csv, best configuration
first).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from talking_faces.errors import UserError

EPILOG = """\
examples:
  talking-faces sweep experiments/sweeps/ldm_beta.yaml --parallel 2
  # a smoke run: every trial a few steps, in its own folder
  talking-faces sweep experiments/sweeps/ldm_beta.yaml --out runs/sweeps/smoke \\
      trainer.max_steps=5 trainer.val_check_interval=5
  # SLURM jobs through submitit (parameters in the file's talking_faces.submitit)
  talking-faces sweep experiments/sweeps/ldm_beta.yaml --executor submitit --parallel 8
  # register with W&B (needs `wandb login`), then start agents on any machine
  talking-faces sweep experiments/sweeps/ldm_beta.yaml --executor wandb

The file is a W&B sweep config (method grid | random | bayes, metric {name, goal}, parameters);
the constant parameter `talking_faces` says what each trial runs (configs, data, protocol,
seeds, samples, videos; see experiments/sweeps/ldm_beta.yaml). Every other parameter is a fit
override (model.beta, ...). Each configuration runs once per seed: fit, then evaluate of its last
checkpoint on the dataset's fixed test pairs. key=value overrides after the file apply to every
trial. Rerunning the same command skips finished trials and reruns failed or killed ones (a
killed fit resumes from its last checkpoint). method bayes needs --executor wandb; random needs
run_cap (the number of configurations to draw).
"""


class IntermixedParser(argparse.ArgumentParser):
    """Options and positionals in any order (``SWEEP.yaml --parallel 2 trainer.max_steps=5``):
    argparse's intermixed parsing, for a subcommand (it calls ``parse_known_args`` itself,
    hence the guard)."""

    _inner = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inner:
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def register_intermixed(
    sub: argparse._SubParsersAction,
    build: Callable[[argparse._SubParsersAction], argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """``build(sub)`` with the subcommand's parser an :class:`IntermixedParser` of the CLI's
    parser class (one-line errors); argparse has no hook for a subparser's class."""
    base = sub._parser_class
    sub._parser_class = type(f"Intermixed{base.__name__}", (IntermixedParser, base), {})
    try:
        return build(sub)
    finally:
        sub._parser_class = base


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return register_intermixed(sub, _register)


def _register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sweep",
        help="run an ablation sweep (W&B sweep file) of fit + evaluate trials with seeds",
        description="Run every trial of a W&B sweep file (each configuration x each seed: fit, "
        "then evaluate on the dataset's fixed test pairs) as local processes, submitit (SLURM) "
        "jobs or W&B agents, and summarise the configurations with mean ± std over seeds.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file (W&B sweep config)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="fit overrides applied to every trial (recorded in the sweep's state)",
    )
    p.add_argument(
        "--executor",
        choices=("local", "submitit", "wandb"),
        default="local",
        help="local: subprocesses here (default); submitit: SLURM jobs; wandb: register the "
        "sweep and print the `wandb agent` command",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="trials at a time (default 1); CPU threads are split between them",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="sweep folder (default: the file's talking_faces.out, else runs/sweeps/<name>)",
    )
    p.add_argument("--data", metavar="PREP", help="prepared dataset (replaces the file's data)")
    p.add_argument(
        "--cluster",
        choices=("slurm", "local", "debug"),
        help="submitit's cluster (default: SLURM when available, else local processes)",
    )
    p.add_argument(
        "--agent-trial",
        metavar="ARGS_JSON",
        help=argparse.SUPPRESS,  # what `wandb agent` runs: one trial from its parameter file
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from talking_faces.config.files import resolve_path

    if not resolve_path(args.sweep).is_file():
        raise UserError(
            f"sweep file {args.sweep} does not exist (e.g. experiments/sweeps/ldm_beta.yaml)"
        )
    from talking_faces.orchestration.sweep import SweepRequest, run_sweep

    return run_sweep(
        SweepRequest(
            sweep=args.sweep,
            executor=args.executor,
            parallel=args.parallel,
            out=args.out,
            data=args.data,
            overrides=list(args.overrides),
            cluster=args.cluster,
            agent_trial=args.agent_trial,
        )
    )
