"""``no2fusion train --config CFG --cube CUBE --output DIR [--resume]``: fit a model on a cube.

Sits at the CLI edge: reads the config (through ``commands.base.load_cli_config``) and calls
``training.train.train_model``, which writes the resolved config, best/last checkpoints, a CSV
log and the epoch history into ``--output``; progress bars show on the terminal.

Before any work, ``--output`` is checked writable (``files.check_output_dir``: a read-only
folder, a full disk or a ``checkpoints`` that is a file fails in the first second, exit 2).
A fresh run into a folder that holds an earlier run keeps that run's files if it fails
(``files.restored_on_failure``); a run that succeeds replaces them.
"""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from no2fusion.commands.base import Command, add_config_argument, load_cli_config


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--cube", type=Path, required=True, help="Zarr cube from `no2fusion build`")
    parser.add_argument("--output", type=Path, default=Path("outputs"), help="run directory")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --output from checkpoints/last.ckpt",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _run(args: argparse.Namespace) -> int:
    from no2fusion.files import check_output_dir, restored_on_failure
    from no2fusion.training.train import CHECKPOINT_DIR, HISTORY_FILE, train_model

    config = load_cli_config(args)
    run_files = ("config.yaml", HISTORY_FILE)
    check_output_dir(args.output, subdirs=(CHECKPOINT_DIR, "logs"), files=run_files)
    # a resume continues the run in place; a fresh run must not eat an earlier one if it fails
    keep: AbstractContextManager[None] = nullcontext()
    if not args.resume:
        keep = restored_on_failure(args.output, (*run_files, CHECKPOINT_DIR, "logs"))
    with keep:
        result = train_model(
            config, args.cube, args.output, resume=args.resume, progress_bar=not args.no_progress
        )
    last_rmse = result.history.get("val_rmse_umol_m2", [float("nan")])[-1:] or [float("nan")]
    print(
        f"trained {config.model.kind} for {result.epochs} epochs"
        f"{' (stopped early)' if result.stopped_early else ''}: best val_loss "
        f"{result.best_val_loss:.4f}, last val RMSE {last_rmse[0]:.2f} umol m-2; "
        f"best checkpoint {result.best_checkpoint}"
    )
    return 0


COMMAND = Command(
    name="train",
    help="train the model on a datacube (warm-start regime, checkpoints, CSV log)",
    add_arguments=_add_arguments,
    run=_run,
)
