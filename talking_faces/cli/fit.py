"""``talking-faces fit CONFIG... [key=value ...]``: train a method (or an expert) from configs.

YAML files + overrides -> :func:`talking_faces.training.runconfig.load_config` ->
:func:`talking_faces.training.fit.fit`
-> run folder with the resolved config, checkpoints, metrics.csv, logs and the git commit.
"""

from __future__ import annotations

import argparse

from talking_faces.names import METRICS_CSV

EPILOG = """\
examples:
  talking-faces fit experiments/base.yaml experiments/model/ldm.yaml data.root=PREP \\
      trainer.max_steps=100
  talking-faces fit experiments/base.yaml experiments/data/synthetic.yaml \\
      experiments/model/ldm_tiny.yaml data.root=PREP name=tiny
  # continue a killed run where its last checkpoint left off
  talking-faces fit experiments/base.yaml experiments/model/ldm.yaml data.root=PREP ckpt_path=last
  # two processes with DDP
  talking-faces fit ... trainer.devices=2 trainer.strategy=ddp

Files are merged left to right, then the key=value overrides; an unknown key is an error that
names the closest valid one. The run folder is OUT/NAME (out=runs, name=model.name by default).
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "fit",
        help="train a method from YAML configs and key=value overrides",
        description="Train a talking-face method (or an evaluation expert). The config is the "
        "OmegaConf merge of the YAML files, then the key=value overrides; the run folder keeps "
        f"the resolved config, checkpoints (last and best), {METRICS_CSV}, logs and the git "
        "commit.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "items",
        nargs="+",
        metavar="CONFIG_OR_OVERRIDE",
        help="YAML files (e.g. experiments/base.yaml) followed by key=value overrides",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config and exit without training",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from talking_faces.config.files import resolve_path
    from talking_faces.config.schema import to_yaml
    from talking_faces.errors import UserError

    files = [i for i in args.items if "=" not in i]
    overrides = [i for i in args.items if "=" in i]
    if not files and not overrides:
        raise UserError("fit needs at least one YAML file, e.g. experiments/base.yaml")
    first_override = next((n for n, i in enumerate(args.items) if "=" in i), len(args.items))
    if any("=" not in i for i in args.items[first_override:]):
        raise UserError("put the YAML files first and the key=value overrides after them")
    missing = next((f for f in files if not resolve_path(f).is_file()), None)
    if missing is not None:  # before the registry import below pulls in torch
        raise UserError(f"config file {missing} does not exist; pass YAML files under experiments/")
    from talking_faces.training.runconfig import load_config

    cfg = load_config(files, overrides)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    from talking_faces.training.fit import fit

    run_dir = fit(cfg)
    from talking_faces.utils.distributed import global_rank_from_env

    if global_rank_from_env() == 0:  # every DDP rank runs this command
        print(f"run folder: {run_dir}")
    return 0
