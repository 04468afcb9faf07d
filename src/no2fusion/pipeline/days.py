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
from no2fusion.io.era5 import Era5Index, Mapper
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
FIELDS = ("no2", "no2_precision", "no2_weight", "no2_count")  # what pass 1 grids, per day


@dataclass
class GriddedDay:
    """One day on the target grid, before alignment. Its fields (``FIELDS``: n_lat, n_lon;
    float32, count int32) wait for pass 2 in a staging file, not in memory: ``staged`` (an
    ``.npz``) when the day has a usable pixel, else None."""

    index: int
    report: DayReport
    staged: str | None = None
    overpass: np.datetime64 | None = None

    def fields(self) -> dict[str, NDArray[Any]]:
        """The gridded fields (``FIELDS``), read back from the staging file."""
        assert self.staged is not None
        with np.load(self.staged) as stored:
            return {name: stored[name] for name in FIELDS}


@dataclass(frozen=True)
class DayTask:
    index: int
    day: np.datetime64
    files: tuple[str, ...]
    grid: Grid
    qa_threshold: float
    staging: str  # folder for the gridded fields between the passes (``build.py`` owns it)


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
    staged = str(Path(task.staging) / f"day_{task.index:06d}.npz")
    precision = result.uncertainty if result.uncertainty is not None else result.mean * np.nan
    np.savez(  # a build over years would otherwise hold every day's fields until pass 2
        staged,
        no2=result.mean.astype(np.float32),
        no2_precision=precision.astype(np.float32),
        no2_weight=result.weight.astype(np.float32),
        no2_count=result.count.astype(np.int32),
    )
    return GriddedDay(index=task.index, report=report, staged=staged, overpass=overpass)


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
    assert day.overpass is not None
    aligner = TemporalAligner(task.window_hours, task.method, task.steps)  # type: ignore[arg-type]
    aligned = aligner.align_to_overpass(task.met, day.overpass)
    features = FeatureEngineer().transform(aligned)  # (hour, met_lat, met_lon, feature)
    values: dict[str, Any] = {
        **day.fields(),
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
def met_window(
    overpass: np.datetime64, steps: int, window_hours: float
) -> tuple[np.datetime64, np.datetime64]:
    """First and last ERA5 time (UTC, inclusive) the alignment of one overpass may use: the
    ``steps`` hours up to the overpass, padded by the alignment window plus one hour."""
    pad = np.timedelta64(int((max(window_hours, 1.0) + 1.0) * 3.6e12), "ns")
    return overpass - (steps - 1) * HOUR - pad, overpass + pad


def met_slice(
    met: xr.Dataset, overpass: np.datetime64, steps: int, window_hours: float
) -> xr.Dataset:
    """The steps of ``met`` within ``met_window``, loaded."""
    times = met["time"].values
    first, last = met_window(overpass, steps, window_hours)
    lo = np.searchsorted(times, first, side="left")
    hi = np.searchsorted(times, last, side="right")
    return met.isel(time=slice(int(lo), int(hi))).drop_vars("source_file", errors="ignore").load()


class MeteorologyBlocks:
    """The ERA5 slice of each overpass, read from the files one block of ``block_days`` days
    (the windows of overpasses up to ``block_days - 1`` days and 2 h after the first) at
    a time (``Era5Index.read_window``), so that a build over years holds a few weeks of ERA5.
    Ask for overpasses in ascending order: a block is read when an overpass falls outside the
    one held, and replaces it."""

    def __init__(
        self,
        index: Era5Index,
        steps: int,
        window_hours: float,
        block_days: int,
        mapper: Mapper | None = None,
    ) -> None:
        self.index = index
        self.steps = steps
        self.window_hours = window_hours
        self.block = (max(block_days, 1) - 1) * 24 * HOUR + 2 * HOUR  # slack: overpasses drift
        self.mapper = mapper
        self.reads = 0  # blocks read so far
        self._held: xr.Dataset | None = None
        self._span: tuple[np.datetime64, np.datetime64] | None = None

    def slice(self, overpass: np.datetime64) -> xr.Dataset:
        """``met_slice`` of the overpass (dims time, lat, lon)."""
        first, last = met_window(overpass, self.steps, self.window_hours)
        if self._span is None or not (self._span[0] <= first and last <= self._span[1]):
            self._held = None  # free the old block before reading the next
            self._span = (first, last + self.block)
            self._held = self.index.read_window(*self._span, mapper=self.mapper)
            self.reads += 1
        assert self._held is not None  # read together with _span
        return met_slice(self._held, overpass, self.steps, self.window_hours)
