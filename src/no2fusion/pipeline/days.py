"""The build's work on one day: pass 1 (L2 -> QA -> regrid) and pass 2 (align -> features ->
write), each a picklable task for the build's worker processes.

Sits in ``pipeline/`` under ``build.py``, which orders the stages and runs these tasks through
``runner.DayRunner``. Every file is read through ``io.isolated.run_isolated`` (a helper process
with a time limit: a damaged HDF5 file can hang the library).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.errors import InputFileError, NoDataError
from no2fusion.grid import Grid
from no2fusion.io.cube import write_day
from no2fusion.io.isolated import run_isolated
from no2fusion.pipeline.align import HOUR, TemporalAligner, as_ns
from no2fusion.pipeline.features import FeatureEngineer
from no2fusion.pipeline.qa import load_and_filter
from no2fusion.pipeline.regrid import AreaWeightedRegridder
from no2fusion.pipeline.report import PIXEL_COUNTS, DayReport
from no2fusion.vocab import MET_VARIABLES

R = TypeVar("R")


# ------------------------------------------------------------------------------------------------
# pass 1: L2 -> QA -> regrid (one day)
# ------------------------------------------------------------------------------------------------
@dataclass
class GriddedDay:
    """One day on the target grid, before alignment: fields (n_lat, n_lon), float32/int32."""

    index: int
    report: DayReport
    no2: NDArray[np.float32] | None = None
    precision: NDArray[np.float32] | None = None
    weight: NDArray[np.float32] | None = None
    count: NDArray[np.int32] | None = None
    overpass: np.datetime64 | None = None


@dataclass(frozen=True)
class DayTask:
    index: int
    day: np.datetime64
    files: tuple[str, ...]
    grid: Grid
    qa_threshold: float


def read_isolated(func: Callable[[Path], R], path: Path) -> R:
    """``func(path)`` in a helper process with a time limit (``io.isolated``)."""
    return run_isolated(path, func, path)


def grid_day(task: DayTask) -> GriddedDay:
    """Read, QA-filter and regrid one day's L2 files. A bad file becomes a ``rejected`` line of
    the day's report, a file without a usable pixel a ``problems`` line."""
    report = DayReport(
        day=str(np.datetime_as_string(task.day, unit="D")),
        index=task.index,
        status="skipped",
        files=[Path(f).name for f in task.files],
        pixels=dict.fromkeys(PIXEL_COUNTS, 0),
    )
    bbox = task.grid.bbox
    kept: list[xr.Dataset] = []
    for path in task.files:
        try:  # in a helper process: a damaged file can hang or crash the HDF5 library
            pixels = run_isolated(path, load_and_filter, path, bbox, task.qa_threshold)
        except InputFileError as error:  # a bad file: named on the console, exit code 3
            report.rejected.append(str(error))
            continue
        except NoDataError as error:  # cloudy, off-swath: one summary line
            report.problems.append(str(error))
            continue
        for key in PIXEL_COUNTS:
            report.pixels[key] += int(pixels.attrs.get(key, 0))
        kept.append(pixels)
    if not kept:
        return GriddedDay(task.index, report)
    values = np.concatenate([p["no2"].values for p in kept])
    sigma = np.concatenate([p["no2_precision"].values for p in kept])
    lat_b = np.concatenate([p["latitude_bounds"].values for p in kept])
    lon_b = np.concatenate([p["longitude_bounds"].values for p in kept])
    result = AreaWeightedRegridder(task.grid).regrid(values, lat_b, lon_b, uncertainty=sigma)
    valid = result.weight > 0
    if not valid.any():
        names = ", ".join(report.files)
        report.problems.append(f"{names}: no kept pixel overlaps the domain {bbox}")
        return GriddedDay(task.index, report)
    # overpass: mean time of kept pixels whose centre is in the domain (else of all kept pixels)
    lat = np.concatenate([p["latitude"].values for p in kept])
    lon = np.concatenate([p["longitude"].values for p in kept])
    times = np.concatenate([p["time"].values for p in kept]).astype("datetime64[ns]")
    inside = (
        (lat >= bbox.lat_min)
        & (lat <= bbox.lat_max)
        & (lon >= bbox.lon_min)
        & (lon <= bbox.lon_max)
    )
    chosen = times[inside] if inside.any() else times
    base = chosen.min()
    overpass = base + np.mean((chosen - base).astype(np.float64)).astype("timedelta64[ns]")
    report.status = "gridded"
    report.coverage = float(valid.mean())
    report.overpass_time = str(np.datetime_as_string(overpass, unit="s")) + "Z"
    return GriddedDay(
        index=task.index,
        report=report,
        no2=result.mean.astype(np.float32),
        precision=(
            result.uncertainty if result.uncertainty is not None else result.mean * np.nan
        ).astype(np.float32),
        weight=result.weight.astype(np.float32),
        count=result.count.astype(np.int32),
        overpass=overpass,
    )


# ------------------------------------------------------------------------------------------------
# pass 2: align -> features -> write (one day)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WriteTask:
    out: str
    gridded: GriddedDay
    met: xr.Dataset  # ERA5 slice around the overpass, dims (time, lat, lon), in memory
    window_hours: float
    method: str
    steps: int
    truth: NDArray[np.float32] | None


def write_gridded_day(task: WriteTask) -> DayReport:
    """Align meteorology to the day's overpass, compute features, write the day (flag last)."""
    day = task.gridded
    assert day.overpass is not None and day.no2 is not None
    aligner = TemporalAligner(task.window_hours, task.method, task.steps)  # type: ignore[arg-type]
    aligned = aligner.align_to_overpass(task.met, day.overpass)
    features = FeatureEngineer().transform(aligned)  # (hour, met_lat, met_lon, feature)
    values: dict[str, Any] = {
        "no2": day.no2,
        "no2_precision": day.precision,
        "no2_weight": day.weight,
        "no2_count": day.count,
        "overpass_time": as_ns(day.overpass),
        "met_time": aligned["met_time"].values.astype("datetime64[ns]"),
        "features": features,
        **{f"met_{v}": aligned[v].values.astype(np.float32) for v in MET_VARIABLES},
    }
    if task.truth is not None:
        values["no2_truth"] = task.truth
    write_day(task.out, day.index, values)
    day.report.status = "written"
    return day.report


# ------------------------------------------------------------------------------------------------
# the ERA5 slice a day needs
# ------------------------------------------------------------------------------------------------
def met_slice(
    met: xr.Dataset, overpass: np.datetime64, steps: int, window_hours: float
) -> xr.Dataset:
    times = met["time"].values
    pad = np.timedelta64(int((max(window_hours, 1.0) + 1.0) * 3.6e12), "ns")
    lo = np.searchsorted(times, overpass - (steps - 1) * HOUR - pad, side="left")
    hi = np.searchsorted(times, overpass + pad, side="right")
    return met.isel(time=slice(int(lo), int(hi))).drop_vars("source_file", errors="ignore").load()
