"""The ``no2fusion`` command line: one subcommand per stage.

Sits at the right end of the flow with ``main.py``: it is the only code (besides tests) that
reads config files, and it wires library functions together. ``COMMANDS`` lists the
subcommands (each a module of ``no2fusion.commands`` with a ``COMMAND``). A
``No2FusionError`` anywhere below becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from no2fusion import __version__
from no2fusion.commands import build, config, download, predict, run, synth, train
from no2fusion.commands.base import Command
from no2fusion.errors import EXIT_USER_ERROR, No2FusionError

COMMANDS: tuple[Command, ...] = (
    synth.COMMAND,
    build.COMMAND,
    train.COMMAND,
    run.COMMAND,
    predict.COMMAND,
    download.COMMAND,
    config.COMMAND,
)

# Lines Lightning prints about itself, not about the user's run: its hardware summary and tips
# to install its cloud logger (INFO on its rank-zero loggers), and these warnings.
_LIGHTNING_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"The number of training batches .* logging interval",
    r"Precision .* is not supported by the model summary",
)


def quiet_lightning() -> None:
    """Hide Lightning's chatter (above); the user's own warnings and errors still show.

    Lightning resets its package logger's level when imported, so the rank-zero loggers it
    writes through are set instead.
    """
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in _LIGHTNING_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="no2fusion",
        description="TROPOMI NO2 + ERA5 -> datacube -> cross-modal attention model -> report",
    )
    parser.add_argument("--version", action="version", version=f"no2fusion {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``no2fusion`` console script. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_lightning()
    try:
        return int(args._run(args))
    except No2FusionError as error:
        print(f"no2fusion {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"no2fusion {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
