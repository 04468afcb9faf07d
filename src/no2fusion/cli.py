"""The ``no2fusion`` command line: one subcommand per stage.

Sits at the right end of the flow with ``main.py``: it is the only code (besides tests) that
reads config files, and it wires library functions together. Each subcommand is one entry in
module of ``no2fusion.commands`` exposing ``COMMAND``: a function that adds its arguments and
a function that runs it; modules there are found automatically. A ``No2FusionError``
anywhere below becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from no2fusion import __version__
from no2fusion.errors import EXIT_USER_ERROR, No2FusionError


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=Path("config/default.yaml"), help="YAML run config"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.warmup_epochs=1 (repeatable)",
    )


def _parse_overrides(pairs: Sequence[str]) -> dict[str, object]:
    import yaml

    from no2fusion.errors import ConfigError

    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def load_cli_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The resolved ``Config`` for a subcommand that took ``_add_config_argument``."""
    from no2fusion.config import load_config

    return load_config(args.config, _parse_overrides(args.overrides))


def discover_commands() -> list[Command]:
    """Every ``COMMAND`` in the modules of ``no2fusion.commands``, sorted by name."""
    import importlib
    import pkgutil

    import no2fusion.commands as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        command = getattr(module, "COMMAND", None)
        if isinstance(command, Command):
            found.append(command)
    return sorted(found, key=lambda command: command.name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="no2fusion",
        description="TROPOMI NO2 + ERA5 -> datacube -> cross-modal attention model -> report",
    )
    parser.add_argument("--version", action="version", version=f"no2fusion {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in discover_commands():
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``no2fusion`` console script. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Lightning's INFO lines (hardware summary, tips to install its cloud logger) drown the
    # step-by-step console output; warnings and errors still come through. Lightning resets
    # its package logger's level when imported, so set it on the rank-zero loggers it uses.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Two warnings about Lightning itself, not about the user's run.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
    try:
        return int(args._run(args))
    except No2FusionError as error:
        print(f"no2fusion {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"no2fusion {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Re-import so ``Command`` is the package's class, not this __main__ module's copy.
    from no2fusion.cli import main as package_main

    sys.exit(package_main())
