"""The cube build: sources -> QA -> regrid -> align -> features -> Zarr cube (stage order).

Sits at the end of ``pipeline/``; ``commands/build.py`` (``no2fusion build``) is its CLI. Layout of
the sources folder (the contract with ``synth``, and what a user arranges for real data)::

    SOURCES/tropomi/S5P_*_L2__NO2____*.nc   one orbit per file, grouped by overpass day
    SOURCES/era5/*.nc                        ERA5 single levels (any split by month/variable)
    SOURCES/truth/truth.nc                   optional (simulated world): no2_truth, region

Flow (dask-parallel over days; local processes, or a ``distributed`` cluster by address):

1. pass 1, per day: ``qa.load_and_filter`` (the L2 reader, bbox-cropped, then the QA filter; in
   a helper process with a time limit, ``io/isolated.py``, as is every ERA5 read) ->
   ``AreaWeightedRegridder.regrid`` -> overpass time = mean UTC time of the kept pixels whose
   centre lies in the domain; the gridded fields wait for pass 2 in a staging folder beside the
   cube (``staging_path``, removed when the build ends), not in memory. Bad-file policy: a bad
   file (unreadable, malformed, implausible) is left out and named on the console with its
   reason (``no2fusion build`` then exits with code 3); a day without a usable pixel (cloudy,
   off-swath) is skipped, recorded, and counted in one summary line; a build in which no day is
   usable is an error (nothing is created).
   Before it, every ERA5 file is read and checked once (``io.era5.scan_era5``, in the workers'
   helpers), keeping only the time axes and grid: a bad ERA5 file stops the build before
   anything is created.
2. driver: checks that ERA5 covers every overpass window (``TemporalAligner``); a gap is an error
   for the user (nothing is created or changed). Then the store is created once with the full,
   contiguous time axis (or an existing one with the same layout is reused).
3. pass 2, per day: ``TemporalAligner`` on the ERA5 slice (met grid stays the ERA5 grid, cropped
   to the domain + ``met_margin_deg``) -> ``FeatureEngineer`` -> ``io.cube.write_day`` (region
   writes, ``day_complete`` set last). Days already complete are never re-read. ERA5 is read
   again here ``ERA5_BLOCK_DAYS`` days at a time (``days.MeteorologyBlocks``), so the build holds
   a few weeks of it whatever the period.
4. ``region``: from the truth file, else derived from the long-term mean NO2 (quantile classes,
   see ``derive_region``). Global attributes and the build report are written last.

Normalization is not applied here (training fits it on its own split). The per-day work of
both passes is ``days.py``, the parallel map ``runner.py``, region classes and the truth file
``region.py``.

Why this module is long (a little above the project's ~450 lines): it is the build's stage order
and its checks between stages (bad files, ERA5 coverage of the overpass windows, an existing
store's layout), which must read in sequence; the per-day work already lives in the modules
above.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from no2fusion import __version__
from no2fusion.config import PipelineConfig
from no2fusion.errors import NoDataError
from no2fusion.grid import Grid
from no2fusion.io.checks import MIN_TIME_COVERAGE
from no2fusion.io.cube import (
    ALL_CHUNKS_ATTR,
    CubeLayout,
    clear_day_complete,
    completed_days,
    create_cube,
    cube_layout_matches,
    missing_chunks,
    open_cube,
    update_cube_attrs,
    write_static,
)
from no2fusion.io.era5 import scan_era5
from no2fusion.io.tropomi import parse_file_name
from no2fusion.pipeline.align import TemporalAligner, as_ns
from no2fusion.pipeline.days import (
    DayTask,
    GriddedDay,
    MeteorologyBlocks,
    WriteTask,
    grid_day,
    read_isolated,
    write_gridded_day,
)
from no2fusion.pipeline.region import UNKNOWN_REGION, derive_region, read_truth
from no2fusion.pipeline.report import BuildReport, DayReport, report_path
from no2fusion.pipeline.runner import DayRunner, identity
from no2fusion.vocab import REGION_LEGEND

log = logging.getLogger(__name__)

L2_PATTERN = "S5P_*_L2__NO2____*.nc"
DAY_NS = np.timedelta64(86_400_000_000_000, "ns")
ERA5_BLOCK_DAYS = 16  # days of ERA5 held while writing (~200 MB over Europe at 0.25 deg)
R = TypeVar("R")


# ------------------------------------------------------------------------------------------------
# sources
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sources:
    tropomi: list[Path]
    era5: list[Path]
    truth: Path | None


def find_sources(sources: Path) -> Sources:
    """The files of a sources folder (module docstring). Raises ``NoDataError`` when empty."""
    sources = Path(sources)
    if not sources.is_dir():
        raise NoDataError("sources folder does not exist", sources)
    tropomi = sorted((sources / "tropomi").glob(L2_PATTERN))
    era5 = sorted((sources / "era5").glob("*.nc"))
    truth = sources / "truth" / "truth.nc"
    if not tropomi and not era5:
        raise NoDataError(
            f"no sources: neither tropomi/{L2_PATTERN} nor era5/*.nc files found", sources
        )
    if not tropomi:
        raise NoDataError(f"no TROPOMI L2 files (tropomi/{L2_PATTERN})", sources)
    if not era5:
        raise NoDataError("no ERA5 files (era5/*.nc)", sources)
    return Sources(tropomi=tropomi, era5=era5, truth=truth if truth.exists() else None)


def overpass_day(path: Path) -> np.datetime64 | None:
    """Day (00:00 UTC) of an L2 file: the date of the middle of its file-name time span."""
    fields = parse_file_name(path.name)
    if fields is None:
        return None
    start = as_ns(fields["start"].rstrip("Z"))
    end = as_ns(fields["end"].rstrip("Z"))
    middle = np.array([start, end]).astype("datetime64[s]").astype(np.int64).mean()
    return as_ns(np.datetime64(int(middle), "s").astype("datetime64[D]"))


def group_by_day(files: Sequence[Path]) -> tuple[dict[np.datetime64, list[Path]], list[str]]:
    """Files per overpass day, plus one line for each name that does not parse."""
    days: dict[np.datetime64, list[Path]] = {}
    problems = []
    for path in files:
        day = overpass_day(path)
        if day is None:
            problems.append(f"{path}: not an S5P L2 NO2 file name (FORMATS.md A.1); left out")
            continue
        days.setdefault(day, []).append(path)
    return days, problems


# ------------------------------------------------------------------------------------------------
# the build
# ------------------------------------------------------------------------------------------------
def build_cube(
    sources: Path,
    out: Path,
    grid: Grid,
    pipeline: PipelineConfig,
    *,
    scheduler: str | None = None,
    progress: bool = True,
    min_time_coverage: float = MIN_TIME_COVERAGE,
) -> BuildReport:
    """Build (or complete) the cube at ``out`` from ``sources``; see the module docstring.

    ``min_time_coverage``: the fraction of the days whose overpass window ERA5 must cover (else
    nothing is written); ``no2fusion predict`` passes 0 and names the days it needs itself.

    Returns the ``BuildReport`` (also written to ``<out stem>.report.json``).

    Raises:
        NoDataError / InputFileError: problems the user must fix (no sources, ERA5 not covering
            the overpasses, NaN ERA5, an existing store with another layout); nothing is changed.
    """
    started = time.perf_counter()
    sources, out = Path(sources), Path(out)
    found = find_sources(sources)
    report = BuildReport(
        sources=str(sources),
        out=str(out),
        tropomi_files=[p.name for p in found.tropomi],
        era5_files=[p.name for p in found.era5],
        truth_file=str(found.truth) if found.truth else None,
    )
    by_day, bad_names = group_by_day(found.tropomi)
    report.rejected.extend(bad_names)
    if not by_day:
        raise NoDataError("no TROPOMI file with a valid S5P L2 NO2 name", sources / "tropomi")
    staging = staging_path(out)  # pass 1's gridded fields wait here for pass 2
    shutil.rmtree(staging, ignore_errors=True)  # left by a build that was killed
    staging.mkdir(parents=True)
    try:
        with DayRunner(scheduler, pipeline.workers, progress) as runner:
            _build(runner, found, by_day, out, grid, pipeline, report, min_time_coverage)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    update_cube_attrs(out, {"build_report": json.dumps(report.summary())})
    report.save(report_path(out))
    return report


def _build(
    runner: DayRunner,
    found: Sources,
    by_day: dict[np.datetime64, list[Path]],
    out: Path,
    grid: Grid,
    pipeline: PipelineConfig,
    report: BuildReport,
    min_time_coverage: float,
) -> None:
    """The stages of ``build_cube`` after the sources are found (fills ``report``)."""
    sources = Path(report.sources)
    first, last = min(by_day), max(by_day)
    days = np.arange(first, last + DAY_NS, DAY_NS).astype("datetime64[ns]")  # contiguous axis
    stages = report.stage_seconds
    staging = str(staging_path(out))  # made and removed by build_cube
    mark = time.perf_counter()
    era5 = scan_era5(  # every file read and checked once; only its axes are kept
        found.era5,
        grid.bbox,
        pipeline.met_margin_deg,
        mapper=lambda func, files: runner.map_batched(
            partial(read_isolated, func), identity, files, "checking ERA5"
        ),
    )
    stages["scan_era5"] = time.perf_counter() - mark
    era5_first, era5_last = era5.times[0], era5.times[-1]
    if era5_last < first or era5_first > last + DAY_NS:
        raise NoDataError(
            f"no time overlap: ERA5 covers {np.datetime_as_string(era5_first, unit='h')}.."
            f"{np.datetime_as_string(era5_last, unit='h')}, TROPOMI days are "
            f"{np.datetime_as_string(first, unit='D')}..{np.datetime_as_string(last, unit='D')}",
            sources / "era5",
        )
    truth = read_truth(found.truth, grid) if found.truth else None
    layout = CubeLayout(
        days=days,
        lat_edges=grid.lat_edges,
        lon_edges=grid.lon_edges,
        met_lat=era5.lat,
        met_lon=era5.lon,
        steps=pipeline.align.steps,
        with_truth=truth is not None,
    )
    exists = out.exists()
    if exists:
        differs = cube_layout_matches(out, layout)
        if differs:
            raise NoDataError(
                f"an existing cube with another layout is in the way ({differs}); "
                "remove it or choose another --out",
                out,
            )
        differs = _settings_differ(out, pipeline)
        if differs:
            raise NoDataError(
                f"the existing cube was built with {differs}; its complete days would be kept "
                "and mixed with days processed otherwise: remove it or choose another --out",
                out,
            )
        complete = completed_days(out)
        damaged = sorted({index for _name, index in missing_chunks(out)})
        for index in damaged:  # flagged complete, but a chunk is gone: write the day again
            log.warning(
                "day %s of %s lacks a chunk although flagged complete: writing it again",
                np.datetime_as_string(days[index], unit="D"),
                out,
            )
            complete[index] = False
    else:
        damaged = []
        complete = np.zeros(days.size, dtype=bool)

    # pass 1 -------------------------------------------------------------------------------------
    reports: dict[int, DayReport] = {}
    tasks = []
    for index, day in enumerate(days):
        files = by_day.get(day, [])
        name = str(np.datetime_as_string(day, unit="D"))
        if complete[index]:
            reports[index] = DayReport(name, index, "complete", [p.name for p in files])
        elif not files:
            reports[index] = DayReport(name, index, "no_files")
        else:
            tasks.append(
                DayTask(
                    index,
                    day,
                    tuple(str(f) for f in files),
                    grid,
                    pipeline.qa_threshold,
                    staging,
                )
            )
    mark = time.perf_counter()
    gridded = runner.map_batched(grid_day, identity, tasks, "reading and regridding L2")
    stages["l2_qa_regrid"] = time.perf_counter() - mark
    ready = []
    for item in gridded:
        reports[item.index] = item.report
        if item.report.status == "gridded":
            ready.append(item)
    for line in [*report.rejected, *(line for item in gridded for line in item.report.rejected)]:
        log.warning("left out a bad input file: %s", line)
    if not ready and not complete.any():
        raise NoDataError(_nothing_usable(gridded, len(report.rejected)), sources / "tropomi")

    # ERA5 must cover the overpass windows: checked for all days before writing anything -----
    ready = _with_meteorology(ready, era5.times, pipeline, sources / "era5", min_time_coverage)

    attrs = {
        "title": "no2fusion analysis-ready NO2 + ERA5 datacube",
        "qa_threshold": float(pipeline.qa_threshold),
        "source_files": json.dumps(report.tropomi_files + report.era5_files),
        "no2fusion_version": __version__,
        "synthetic": int(truth is not None),
        "align_method": pipeline.align.method,
        "align_window_hours": float(pipeline.align.window_hours),
        "history": f"{_now()} no2fusion build --sources {sources}",
        ALL_CHUNKS_ATTR: 1,  # write_day stores every per-day chunk (io/cube.py checks it)
    }
    region = np.full(grid.shape, UNKNOWN_REGION, dtype=np.int8)
    legend = f"{UNKNOWN_REGION}=unknown {REGION_LEGEND}"
    if truth is not None and truth.region is not None:
        region, legend = truth.region, truth.legend
    mark = time.perf_counter()
    if not exists:
        create_cube(out, layout, region, grid.cell_area_m2(), legend, attrs)
    clear_day_complete(out, damaged)  # before their data: a crash must not leave them "complete"
    stages["create_store"] = time.perf_counter() - mark

    # pass 2 -------------------------------------------------------------------------------------
    mark = time.perf_counter()
    truth_index = {d: i for i, d in enumerate(truth.days)} if truth is not None else {}
    met = MeteorologyBlocks(  # ERA5 read again, a block of days at a time, in a helper process
        era5,
        pipeline.align.steps,
        pipeline.align.window_hours,
        ERA5_BLOCK_DAYS,
        mapper=lambda func, files: [read_isolated(func, path) for path in files],
    )

    def write_task(item: GriddedDay) -> WriteTask:
        # built lazily, one batch at a time: each holds its day's ERA5 (~14 MB over Europe)
        assert item.overpass is not None
        day_truth = None
        if truth is not None:
            position = truth_index.get(days[item.index])
            day_truth = (
                truth.no2[position]
                if position is not None
                else np.full(grid.shape, np.nan, np.float32)
            )
        return WriteTask(
            out=str(out),
            gridded=item,
            met=met.slice(item.overpass),
            window_hours=pipeline.align.window_hours,
            method=pipeline.align.method,
            steps=pipeline.align.steps,
            truth=day_truth,
        )

    batch = 4 * max(runner.workers, 1)  # few days' ERA5 slices in flight at once
    written = runner.map_batched(write_gridded_day, write_task, ready, "writing days", batch)
    for day_report in written:
        reports[day_report.index] = day_report
    stages["align_features_write"] = time.perf_counter() - mark

    # region, attributes, report ---------------------------------------------------------------
    mark = time.perf_counter()
    earlier = [i for i, r in reports.items() if r.status == "complete"]
    if earlier:  # days complete before this run: coverage and overpass from the cube itself
        stored = open_cube(out, complete_only=False).isel(time=earlier)
        coverage = np.isfinite(stored["no2"].values).mean(axis=(1, 2))
        overpasses = stored["overpass_time"].values
        for i, cover, when in zip(earlier, coverage, overpasses, strict=True):
            reports[i].coverage = float(cover)
            reports[i].overpass_time = str(np.datetime_as_string(when, unit="s")) + "Z"
    if truth is None or truth.region is None:
        cube = open_cube(out, complete_only=False)
        flags = np.asarray(cube["day_complete"].values, dtype=bool)
        if flags.any():
            mean = cube["no2"].isel(time=np.flatnonzero(flags)).mean("time", skipna=True).values
            region, legend = derive_region(mean)
            write_static(out, "region", region, {"legend": legend})
    report.days = [reports[i] for i in sorted(reports)]
    cloudy = report.cloudy_days  # days with a bad file were named above, file by file
    for day_report in cloudy:
        log.info("skipped day %s: %s", day_report.day, "; ".join(day_report.problems))
    if cloudy:  # one line for the console; every day and its reason is in the build report
        log.warning(
            "skipped %d of %d days with no usable pixel (cloudy or off-swath); "
            "each day and its reason is in the build report",
            len(cloudy),
            len(report.days),
        )
    update_cube_attrs(out, attrs)
    stages["region_report"] = time.perf_counter() - mark


def staging_path(out: Path) -> Path:
    """The folder beside the cube where pass 1 leaves each day's gridded fields for pass 2
    (beside it, not in /tmp: a cluster's workers must reach it); removed when the build ends."""
    return out.parent / f".{out.name}.staging"


def _with_meteorology(
    ready: list[GriddedDay],
    met_times: NDArray[np.datetime64],
    pipeline: PipelineConfig,
    era5: Path,
    min_coverage: float,
) -> list[GriddedDay]:
    """The days whose overpass window ERA5 covers. When it covers fewer than ``min_coverage``
    of them, a ``NoDataError`` naming the first gap (nothing is written);
    else the others become ``no_met`` days, with a warning giving the fraction."""
    aligner = TemporalAligner(
        pipeline.align.window_hours, pipeline.align.method, pipeline.align.steps
    )
    covered, failures = [], []
    for item in ready:
        assert item.overpass is not None
        try:
            aligner.check_coverage(met_times, item.overpass)
        except NoDataError as error:
            failures.append(str(error))
            item.report.status = "no_met"
            item.report.problems.append(str(error))
        else:
            covered.append(item)
    if not failures:
        return covered
    fraction = len(covered) / len(ready)
    if fraction < min_coverage or not covered:
        more = f" (and {len(failures) - 1} more day(s))" if len(failures) > 1 else ""
        raise NoDataError(
            f"{failures[0]}{more}; ERA5 covers the overpass windows of {len(covered)} of "
            f"{len(ready)} days",
            era5,
        )
    log.warning(
        "%s: ERA5 covers the overpass windows of %d of %d days (%.1f %%); the other days are "
        "left out, e.g. %s",
        era5,
        len(covered),
        len(ready),
        100 * fraction,
        failures[0],
    )
    return covered


def _nothing_usable(gridded: Sequence[GriddedDay], bad_names: int) -> str:
    """The one line for a build in which no day has a usable pixel."""
    bad = bad_names + sum(len(item.report.rejected) for item in gridded)
    first = next((line for item in gridded for line in item.report.rejected), None)
    cloudy = sum(1 for item in gridded if not item.report.rejected)
    reasons = [f"{cloudy} without a usable pixel (cloudy or off-swath)"]
    if bad:
        reasons.append(f"{bad} bad file(s), e.g. {first}" if first else f"{bad} bad file name(s)")
    return f"no usable day among {len(gridded)} day(s) of L2 files: " + "; ".join(reasons)


def _settings_differ(out: Path, pipeline: PipelineConfig) -> str | None:
    """None when the existing cube at ``out`` was processed with this QA threshold and this
    alignment (global attributes ``qa_threshold``, ``align_method``, ``align_window_hours``;
    an attribute the store lacks is not compared), else what differs, e.g.
    ``qa_threshold=0.75 (this build: 0.5)``."""
    stored = open_cube(out, complete_only=False).attrs
    wanted: dict[str, float | str] = {
        "qa_threshold": float(pipeline.qa_threshold),
        "align_method": pipeline.align.method,
        "align_window_hours": float(pipeline.align.window_hours),
    }
    for key, value in wanted.items():
        if key not in stored:
            continue
        have = stored[key]
        same = (
            np.isclose(float(have), value, rtol=0, atol=1e-9)
            if isinstance(value, float)
            else str(have) == value
        )
        if not same:
            return f"{key}={have} (this build: {value})"
    return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "BuildReport",
    "DayReport",
    "build_cube",
    "derive_region",
    "find_sources",
    "group_by_day",
    "read_truth",
]
