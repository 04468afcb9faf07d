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
    """``KEY=VALUE`` strings -> {dotted key: YAML-parsed value}.

    Raises ``ConfigError`` (one line naming the key) for a pair without ``=``, a value that is
    not YAML, or a key that goes below a value (``seed.x``: ``seed`` has no keys).
    """
    import yaml

    from no2fusion.errors import ConfigError

    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        check_override_key(key)
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: the value {value!r} is not valid YAML") from None
    return overrides


def check_override_key(key: str) -> None:
    """Raise ``ConfigError`` when a dotted ``--set`` key goes below a value or an unknown section
    (``seed.x``, ``nosuch.key``); the last part is checked by the config itself."""
    from pydantic import BaseModel

    from no2fusion.config import Config
    from no2fusion.errors import ConfigError

    model: type[BaseModel] = Config
    parts = key.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"--set {key}: empty part in the key")
    for depth, part in enumerate(parts[:-1], start=1):
        where = ".".join(parts[:depth])
        field = model.model_fields.get(part)
        if field is None:
            raise ConfigError(f"--set {key}: unknown key '{where}'")
        section = next(
            (
                kind
                for kind in (field.annotation, *getattr(field.annotation, "__args__", ()))
                if isinstance(kind, type) and issubclass(kind, BaseModel)
            ),
            None,
        )
        if section is None:
            raise ConfigError(f"--set {key}: '{where}' is a value, not a section with keys")
        model = section


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
