"""``no2fusion build --sources DIR --out cube.zarr [--config CFG] [--scheduler ADDRESS]``.

Sits at the CLI edge: reads the config (grid + pipeline sections) and calls
``pipeline.build.build_cube``, which reads TROPOMI L2 + ERA5 (+ truth) files, writes the Zarr
cube day by day (dask-parallel; a rerun completes only the missing days) and the build report
``<out stem>.report.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from no2fusion.commands.base import Command, add_config_argument, load_cli_config


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--sources",
        type=Path,
        required=True,
        help="folder with tropomi/S5P_*_L2__NO2____*.nc, era5/*.nc and optional truth/truth.nc",
    )
    parser.add_argument("--out", type=Path, required=True, help="Zarr cube to create or complete")
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="dask.distributed scheduler (tcp://host:8786); default: local processes "
        "(pipeline.workers)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _run(args: argparse.Namespace) -> int:
    from no2fusion.pipeline.build import build_cube
    from no2fusion.pipeline.report import report_path

    config = load_cli_config(args)
    report = build_cube(
        args.sources,
        args.out,
        config.grid.to_grid(),
        config.pipeline,
        scheduler=args.scheduler or config.pipeline.scheduler,
        progress=not args.no_progress,
    )
    for line in report.lines():
        print(line)
    print(f"cube: {args.out}  report: {report_path(args.out)}  ({report.seconds:.1f} s)")
    return 0


COMMAND = Command(
    name="build",
    help="build the analysis-ready Zarr datacube from TROPOMI L2 + ERA5 files",
    add_arguments=_add_arguments,
    run=_run,
)
