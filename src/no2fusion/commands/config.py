"""``no2fusion config show NAME``: print a config shipped with the package, to start from.

Sits at the CLI edge. ``no2fusion config show demo > my.yaml`` gives an editable copy of what
``make demo`` runs; the names are those of ``config.SHIPPED_CONFIGS``.
"""

from __future__ import annotations

import argparse
import sys

from no2fusion.commands.base import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print a shipped config (default, demo, test)")
    show.add_argument("name", metavar="NAME", help="default, demo or test")


def _run(args: argparse.Namespace) -> int:
    from no2fusion.config import shipped_config

    sys.stdout.write(shipped_config(args.name).read_text())
    return 0


COMMAND = Command(
    name="config",
    help="print a config shipped with the package: config show default|demo|test",
    add_arguments=_add_arguments,
    run=_run,
)
