"""``no2fusion synth --config CFG --out DIR [--figure PNG]``: simulate the world, write sources.

Sits at the CLI edge: reads the config (grid + synth sections) and calls
``synth.world.generate_world``, which writes TROPOMI L2 NO2 files, monthly ERA5 files, the truth
and ``world.json`` under DIR (layout in ``no2fusion.synth.world``), with a progress bar.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from no2fusion.commands.base import Command, add_config_argument, load_cli_config


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the world into")
    parser.add_argument(
        "--figure",
        type=Path,
        default=None,
        metavar="PNG",
        help="also draw truth, observation and wind for one day into this PNG",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run(args: argparse.Namespace) -> int:
    from no2fusion.files import check_output_dir, check_output_file
    from no2fusion.synth.world import generate_world

    config = load_cli_config(args)
    check_output_dir(args.out, subdirs=("tropomi", "era5", "truth"))
    if args.figure is not None:
        check_output_file(args.figure)
    summary = generate_world(config, args.out, progress=not args.no_progress)
    print(summary.describe())
    if args.figure is not None:
        from no2fusion.synth.figure import draw_synth_day

        draw_synth_day(args.out, args.figure)
        print(f"  figure: {args.figure}")
    return 0


COMMAND = Command(
    name="synth",
    help="simulate the world and write TROPOMI L2, ERA5 and truth files in the real formats",
    add_arguments=_add_arguments,
    run=_run,
)
