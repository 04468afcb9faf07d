"""``no2fusion predict``: a trained checkpoint applied to one day of new data, any domain size.

Sits at the right edge of the flow: it wires ``training.checkpoint.load_checkpoint``, (for
``--sources``) ``pipeline.build.build_cube`` on a temporary cube of just the days needed, and
``evaluation.predict`` (tiled inference, CF NetCDF output).

    no2fusion predict --checkpoint outputs/checkpoints/best.ckpt --cube cube.zarr \\
        --date 2024-03-05 [--bbox W S E N] --out pred.nc
    no2fusion predict --checkpoint best.ckpt --sources data/real --date 2024-03-05 --out pred.nc

What a prediction for day D needs (``data.lead`` = L of the checkpoint, default 1): the L2 files
of the input day D - L and of D (D's overpass anchors the meteorology window), and ERA5 for
the overpass windows of both days (the hourly steps before each overpass, ``pipeline.align``),
because a day enters a cube only with its meteorology. With ``--cube`` both days must be
complete in the cube. Missing days are named with the reason, in the user's paths (never the
temporary cube's). The domain must hold one tile (``--tile-size``, default the training tile).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from no2fusion.commands.base import Command, date_argument

if TYPE_CHECKING:
    from no2fusion.evaluation.inference import InferenceSettings
    from no2fusion.pipeline.report import BuildReport


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="trained checkpoint (.ckpt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--sources",
        type=Path,
        help="folder with tropomi/ and era5/ files (as for `no2fusion build`); a temporary "
        "cube of the needed days is built with the checkpoint's pipeline settings: L2 and "
        "ERA5 (the overpass windows) of the target day and of the input day (target - lead)",
    )
    source.add_argument("--cube", type=Path, help="an existing cube (`no2fusion build`)")
    parser.add_argument("--date", type=date_argument, required=True, help="target day (YYYY-MM-DD)")
    parser.add_argument(
        "--bbox",
        nargs=4,
        type=float,
        metavar=("W", "S", "E", "N"),
        help="domain in degrees (default: the cube's, or the checkpoint's grid for --sources)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output NetCDF file")
    parser.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="window in cells (default: the training tile size)",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="cells shared by neighbouring tiles (default: a quarter tile)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="tiles per forward pass (default: the checkpoint's data.batch_size)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=None,
        help="inference precision (default: the checkpoint's training.precision; auto = bf16 on "
        "CPUs with AMX/AVX512-BF16)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the model runs (default auto: as the checkpoint's training.accelerator, "
        "a GPU when one is available)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    import tempfile

    from no2fusion.evaluation.distribution import warnings_for
    from no2fusion.evaluation.inference import InferenceSettings
    from no2fusion.evaluation.predict import (
        crop_cube,
        predict_day,
        prediction_days,
        sources_for_days,
        write_prediction,
    )
    from no2fusion.files import check_output_file
    from no2fusion.grid import BBox, create_target_grid
    from no2fusion.io.cube import open_cube
    from no2fusion.training.checkpoint import load_checkpoint

    started = time.perf_counter()
    check_output_file(args.out)  # before loading anything
    model, config, normalizers, meta = load_checkpoint(args.checkpoint)
    bbox = None
    if args.bbox is not None:
        west, south, east, north = args.bbox
        bbox = BBox(lat_min=south, lat_max=north, lon_min=west, lon_max=east)
    settings = InferenceSettings.for_run(
        config,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=None if args.device == "auto" else args.device,
        precision=args.precision,
    )
    stride = config.model.token_stride
    if args.cube is not None:
        cube = open_cube(args.cube)
        if bbox is not None:
            cube = crop_cube(cube, bbox, args.cube)
        check_tile(settings, (cube.sizes["lat"], cube.sizes["lon"]), stride, str(args.cube))
        ds = predict_day(model, config, normalizers, cube, args.date, settings, args.cube, meta)
    else:
        from no2fusion.pipeline.build import build_cube

        grid = (
            create_target_grid(bbox, config.grid.resolution)
            if bbox is not None
            else config.grid.to_grid()
        )
        check_tile(settings, grid.shape, stride, "the prediction")  # before building anything
        target, lead = args.date, config.data.lead
        required, window = prediction_days(target, lead, config.data.composite_days)
        with (
            tempfile.TemporaryDirectory(prefix="no2fusion-predict-") as tmp,
            in_user_paths(Path(tmp), args.sources),
        ):
            linked = sources_for_days(args.sources, required, window, Path(tmp))
            cube_path = Path(tmp) / "cube.zarr"
            report = build_cube(
                linked,
                cube_path,
                grid,
                config.pipeline,
                progress=not args.no_progress,
                min_time_coverage=0.0,  # check_days_built names the needed days itself
            )
            check_days_built(report, target, lead)
            cube = open_cube(cube_path)
            ds = predict_day(model, config, normalizers, cube, args.date, settings, cube_path, meta)
            ds.attrs["cube"] = f"temporary cube built from {args.sources}"
    ds.attrs["checkpoint"] = str(args.checkpoint)
    ds.attrs["checkpoint_epoch"] = int(meta.get("epoch", -1))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    source = f"--cube {args.cube}" if args.cube is not None else f"--sources {args.sources}"
    ds.attrs["history"] = (
        f"{stamp} no2fusion predict --checkpoint {args.checkpoint} {source} --date {args.date}"
        f" --out {args.out}"
    )
    write_prediction(ds, args.out)
    pred = ds["no2_pred"].values
    print(
        f"{args.out}: {args.date} on {pred.shape[1]} x {pred.shape[2]} cells, "
        f"input coverage {100 * ds.attrs['input_coverage_fraction']:.1f} %, "
        f"mean prediction {float(pred.mean()):.1f} umol m-2 "
        f"({time.perf_counter() - started:.1f} s)"
    )
    for line in warnings_for(json.loads(ds.attrs["outside_training_range"])):
        print(f"warning: {line}")
    if ds.attrs["other_hemisphere_than_training"]:
        print(
            "warning: this domain and the model's training grid lie in different hemispheres; "
            "the day-of-year features follow the northern seasons (do not trust this prediction)"
        )
    coverage = float(ds.attrs["climatology_coverage_fraction"])
    if coverage < 1.0:
        print(
            f"warning: {100 * (1 - coverage):.0f} % of the cells lie outside the training grid; "
            "the model saw the training median there instead of a climatology"
        )
    return 0


def check_tile(
    settings: InferenceSettings, shape: tuple[int, int], stride: int, where: str
) -> None:
    """A ``ConfigError`` suggesting ``--tile-size`` when the domain cannot hold one tile."""
    from no2fusion.errors import ConfigError

    n = min(shape)
    if settings.tile_size <= n:
        return
    fit = (n // stride) * stride
    hint = (
        f"give --tile-size {fit} (at most {n} cells, a multiple of the model's token stride "
        f"{stride})"
        if fit >= stride
        else f"it cannot hold even one token ({stride} cells): choose a larger --bbox"
    )
    raise ConfigError(
        f"the domain of {where} ({shape[0]} x {shape[1]} cells) is smaller than the model's "
        f"tile of {settings.tile_size} cells; {hint}"
    )


def check_days_built(report: BuildReport, target: dt.date, lead: int) -> None:
    """A ``NoDataError`` naming each needed day (input, target) that did not enter the cube,
    and why."""
    from no2fusion.errors import NoDataError

    by_day = {day.day: day for day in report.days}
    for day, role in ((target, "target day"), (target - dt.timedelta(days=lead), "input day")):
        entry = by_day.get(day.isoformat())
        if entry is None or entry.status in ("written", "complete"):
            continue
        why = {
            "no_met": "ERA5 does not cover its overpass window",
            "skipped": "it has no usable pixel (cloudy or off-swath, or a bad file)",
        }.get(entry.status, entry.status)
        detail = "; ".join(entry.rejected + entry.problems)
        raise NoDataError(
            f"the {role} {day} cannot be used: {why}"
            + (f" ({detail})" if detail else "")
            + f"; a lead-{lead} prediction for {target} needs L2 and ERA5 for "
            + ", ".join(sorted({(target - dt.timedelta(days=lead)).isoformat(), str(target)}))
        )


class _Rewrite(logging.Filter):
    def __init__(self, rewrite: dict[str, str]) -> None:
        super().__init__()
        self.rewrite = rewrite

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = _replace(record.getMessage(), self.rewrite), None
        return True


def _replace(text: str, rewrite: dict[str, str]) -> str:
    for old, new in rewrite.items():
        text = text.replace(old, new)
    return text


@contextmanager
def in_user_paths(tmp: Path, sources: Path) -> Iterator[None]:
    """Errors and warnings of the block name ``sources``, not the temporary folder ``tmp``
    whose ``sources`` links the needed files and whose ``cube.zarr`` is the temporary cube."""
    from no2fusion.errors import No2FusionError

    rewrite = {
        str(tmp / "sources"): str(sources),
        str(tmp / "cube.zarr"): f"the temporary cube of the needed days of {sources}",
    }
    handlers = [*logging.getLogger("no2fusion").handlers, *logging.getLogger().handlers]
    rewriting = _Rewrite(rewrite)
    for handler in handlers:
        handler.addFilter(rewriting)
    try:
        yield
    except No2FusionError as error:
        raise type(error)(_replace(str(error), rewrite)) from None
    finally:
        for handler in handlers:
            handler.removeFilter(rewriting)


COMMAND = Command(
    name="predict",
    help="predict one day of NO2 with a trained checkpoint (tiled, any domain size)",
    add_arguments=add_arguments,
    run=run,
)
