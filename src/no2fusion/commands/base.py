"""What every subcommand module shares: the ``Command`` record and common arguments.

Sits at the CLI edge beside ``cli.py`` (which lists the commands explicitly). Config files are
read here and nowhere else below (``load_cli_config``); ``--config`` takes a file or the name of
a shipped config (``default``, ``demo``, ``test``).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from no2fusion.config import Config


@dataclass(frozen=True)
class Command:
    """One ``no2fusion`` subcommand: its name, help line, argument adder and runner."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_config_argument(parser: argparse.ArgumentParser, default: str | None = "default") -> None:
    """``--config FILE|NAME`` and repeatable ``--set KEY=VALUE``."""
    parser.add_argument(
        "--config",
        default=default,
        metavar="FILE|NAME",
        help="YAML run config, or a shipped one: default, demo, test "
        "(`no2fusion config show NAME` prints it)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.warmup_epochs=1 (repeatable)",
    )


def parse_overrides(pairs: Sequence[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings -> {dotted key: YAML-parsed value}."""
    import yaml

    from no2fusion.errors import ConfigError

    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def load_cli_config(args: argparse.Namespace, config: str | None = None) -> Config:
    """The resolved ``Config`` of ``--config`` (or ``config`` when given) and ``--set``."""
    from no2fusion.config import load_config

    return load_config(config or args.config, parse_overrides(args.overrides))


def date_argument(text: str) -> dt.date:
    """argparse type for YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
