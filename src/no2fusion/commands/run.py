"""``no2fusion run --mode full|test|eval --config CFG --output DIR`` (``python main.py ...``).

Sits at the CLI edge: it resolves the config and the run directory and calls
``workflow.run.run_workflow`` (layout of the run directory and stage reuse are documented
there). ``full``: simulate -> build -> train cross_modal, concat, satellite_only -> evaluate ->
figures -> report, with the shipped ``default`` config unless ``--config`` is given. ``test``:
the same with the shipped ``test`` config into ``outputs/test``. ``eval``: re-evaluate an
existing run directory (its ``config.yaml``, cube and checkpoints) or ``--checkpoint`` +
``--cube``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from no2fusion.commands.base import Command, add_config_argument, load_cli_config

RULE = "=" * 70
DEFAULT_CONFIGS = {"full": "default", "test": "test", "eval": "default"}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=("full", "test", "eval"),
        default="full",
        help="full: the whole demo; test: the same on a tiny config; eval: re-evaluate a run",
    )
    add_config_argument(parser, default=None)  # resolved per mode
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="run directory (default: outputs; outputs/test for --mode test)",
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="eval: a cross_modal checkpoint"
    )
    parser.add_argument("--cube", type=Path, default=None, help="eval: the cube of --checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _banner() -> None:
    print(RULE)
    print("  CROSS-MODAL ATTENTION FRAMEWORK FOR NO\u2082 PREDICTION")
    print("  Sentinel-5P TROPOMI + Meteorological Data Fusion")
    print(RULE)


def _run(args: argparse.Namespace) -> int:
    from no2fusion.workflow.run import run_workflow

    default_dir = Path("outputs/test" if args.mode == "test" else "outputs")
    run_dir = Path(args.output) if args.output is not None else default_dir
    started = time.perf_counter()
    _banner()
    config_source = args.config
    if config_source is None and args.mode == "eval" and (run_dir / "config.yaml").is_file():
        config_source = str(run_dir / "config.yaml")
    config = load_cli_config(args, config_source or DEFAULT_CONFIGS[args.mode])
    from no2fusion.data.tiles import check_tile_fits
    from no2fusion.files import check_output_dir

    check_tile_fits(config.data.tile_size, config.grid.to_grid().shape, "the config's grid")
    check_output_dir(run_dir, subdirs=("checkpoints", "sources"), files=("config.yaml",))
    run_workflow(
        args.mode,
        run_dir,
        config,
        checkpoint=args.checkpoint,
        cube=args.cube,
        progress=not args.no_progress,
    )
    elapsed = time.perf_counter() - started
    print(f"\n{RULE}\n  EXECUTION COMPLETE  ({elapsed:.0f} s; outputs in {run_dir})\n{RULE}")
    return 0


COMMAND = Command(
    name="run",
    help="the whole pipeline into one run directory: --mode full | test | eval (main.py)",
    add_arguments=_add_arguments,
    run=_run,
)
