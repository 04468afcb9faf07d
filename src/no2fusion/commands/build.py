"""``no2fusion build --sources DIR --out cube.zarr [--config CFG] [--scheduler ADDRESS]``.

Sits at the CLI edge: reads the config (grid + pipeline sections) and calls
``pipeline.build.build_cube``, which reads TROPOMI L2 + ERA5 (+ truth) files, writes the Zarr
cube day by day (dask-parallel; a rerun completes only the missing days) and the build report
``<out stem>.report.json``.

Exit codes: 0 when every input file was usable (days without a usable pixel, cloudy or
off-swath, are normal and summarized in one line); 3 when the cube was built but some input
files were bad and left out (each is named on stderr with its reason; ``--skip-bad-files``
makes this 0); 2 for an error (nothing usable, ERA5 not covering the overpasses, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from no2fusion.commands.base import Command, add_config_argument, load_cli_config
from no2fusion.errors import EXIT_INPUTS_REJECTED


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
    parser.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="exit with 0 even when bad input files were left out (default: exit code 3)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _run(args: argparse.Namespace) -> int:
    from no2fusion.files import check_output_dir, check_output_file
    from no2fusion.pipeline.build import build_cube
    from no2fusion.pipeline.report import report_path

    config = load_cli_config(args)
    check_output_dir(args.out)  # a read-only folder or a full disk: before reading anything
    check_output_file(report_path(args.out))
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
    rejected = report.rejected_files
    if rejected and not args.skip_bad_files:
        print(
            f"no2fusion build: finished, but {len(rejected)} bad input file(s) were left out "
            "(named above); exit code 3 (--skip-bad-files: 0)",
            file=sys.stderr,
        )
        return EXIT_INPUTS_REJECTED
    return 0


COMMAND = Command(
    name="build",
    help="build the analysis-ready Zarr datacube from TROPOMI L2 + ERA5 files",
    add_arguments=_add_arguments,
    run=_run,
)
