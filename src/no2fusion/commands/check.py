"""``no2fusion check CUBE``: verify a datacube and report (exit 2 when it is damaged).

Sits at the CLI edge: calls ``io.cube.check_cube``, which checks the schema, that every chunk
of every complete day is present and decodable, and that ``day_complete`` agrees with the data
(reading the whole cube once). A damaged day is repaired by running ``no2fusion build`` with
the same sources and ``--out`` again (days flagged complete that lack a chunk are rewritten).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from no2fusion.commands.base import Command
from no2fusion.errors import EXIT_USER_ERROR


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cube", type=Path, metavar="CUBE", help="Zarr cube from `no2fusion build`")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run(args: argparse.Namespace) -> int:
    from no2fusion.io.cube import check_cube

    report = check_cube(args.cube, progress=not args.no_progress)
    lines = report.lines()
    print(lines[0])
    for line in lines[1:]:
        print(line, file=sys.stderr if report.damaged else sys.stdout)
    return EXIT_USER_ERROR if report.damaged else 0


COMMAND = Command(
    name="check",
    help="verify a datacube: schema, every day's chunks decodable, day_complete consistent",
    add_arguments=_add_arguments,
    run=_run,
)
