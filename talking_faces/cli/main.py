"""The ``talking-faces`` command line: one entry point, one subcommand per stage of the data flow.

Each subcommand lives in ``talking_faces/cli/<name>.py`` and exposes
``register(subparsers) -> argparse.ArgumentParser`` (which sets ``func=run`` on the parser) and
``run(args) -> int``. Only finished commands are listed in :data:`COMMANDS`. A
:class:`~talking_faces.errors.UserError` raised anywhere becomes one ``error: ...`` line on stderr
and exit status 2. ``talking-faces`` alone prints the help (every subcommand, one line each) and
exits 0.

Startup stays light: this module and the command modules import only the standard library at
the top, and each ``run`` checks what it can (files exist, arguments agree) before importing
torch, so a mistyped path is answered at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from talking_faces import __version__
from talking_faces.errors import UserError
from talking_faces.utils.allocator import tune_allocator

#: subcommand modules under ``talking_faces.cli``, in the order ``--help`` lists them
COMMANDS: list[str] = [
    "synth",
    "prepare",
    "fit",
    "evaluate",
    "generate",
    "sweep",
    "leaderboard",
    "compare",
    "weights",
]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit status 2 (argparse's own convention)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="talking-faces",
        description="Train, sample, score and rank audio-driven talking-face methods.",
    )
    parser.add_argument("--version", action="version", version=f"talking_faces {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"talking_faces.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `talking-faces`: what is there to run
        parser.print_help()
        return 0
    tune_allocator()  # speed only, see talking_faces.utils.allocator
    try:
        code = args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "error: interrupted; outputs written so far are complete, rerun to continue",
            file=sys.stderr,
        )
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
