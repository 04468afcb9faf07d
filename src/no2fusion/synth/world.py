"""Orchestration of the simulated world: simulate month by month, write the sources.

Sits at the top of ``synth`` (emissions -> meteorology -> transport -> satellite -> writers);
``generate_world`` is what ``no2fusion synth`` and the demo call. Output layout (a contract with
the pipeline):

    out_dir/tropomi/S5P_OFFL_L2__NO2____*.nc      one L2 file per day (official layout)
    out_dir/era5/era5_single_levels_YYYY-MM.nc    one per month, current CDS layout, hourly;
                                                  starts at 00 UTC the day before the first day
    out_dir/truth/truth.nc                        no2_truth (time, lat, lon) umol m-2 at each
                                                  overpass, region (lat, lon), emissions (lat, lon)
    out_dir/truth/truth_hourly.nc                 with ``write_hourly_truth``: the column hourly
    out_dir/world.json                            resolved synth + grid config, seed, counts

The transport carries the boundary-layer column; the truth and the pixels add a constant
free-tropospheric column (``free_troposphere_umol_m2``, lightning/aircraft NO2 that the
regional model does not transport). The met fields drive the transport constant over each hour
(their value at the hour's start).
The truth at the overpass is the transported column at the exact overpass time (the hour is
split there). L2 and ERA5 files are written by ``synth.workers`` processes (inline when 1), the
truth files by ``truth_files.py``.
Every file is written under a temporary name and renamed; ``world.json`` is written last. A rerun
into a folder that holds an earlier world (``world.json``) removes that world's L2/ERA5 files it
did not rewrite; files in a folder without ``world.json`` are never removed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from no2fusion.config import Config
from no2fusion.errors import No2FusionError
from no2fusion.files import atomic_path
from no2fusion.grid import Grid
from no2fusion.synth.emissions import build_emissions, time_factors
from no2fusion.synth.meteorology import MeteorologyModel, MetGrid, make_met_grid
from no2fusion.synth.satellite import Overpass, observe, overpass_for_day
from no2fusion.synth.transport import Bilinear, GridMetrics, hour_inputs, sun_loss_coefficient
from no2fusion.synth.truth_files import HourlyTruthFile, write_truth
from no2fusion.synth.writers import L2Swath, write_era5_month, write_tropomi_l2

STAGES = ("meteorology", "transport", "sampling", "writing")
TRANSPORT_BLOCK_HOURS = 24  # hours of transport inputs held at a time


@dataclass
class WorldSummary:
    """What ``generate_world`` produced, with counts and where the time went (seconds)."""

    out_dir: Path
    tropomi_files: list[Path]
    era5_files: list[Path]
    truth_path: Path
    hourly_truth_path: Path | None
    days: int
    pixels: int
    pixels_qa_pass: int  # pixels with qa_value > 0.75
    timings: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """A few lines for the CLI."""
        lines = [
            f"simulated world in {self.out_dir}: {self.days} days",
            f"  {len(self.tropomi_files)} TROPOMI L2 files in {self.out_dir / 'tropomi'} "
            f"({self.pixels} pixels, {self.pixels_qa_pass} with qa_value > 0.75)",
            f"  {len(self.era5_files)} ERA5 monthly files in {self.out_dir / 'era5'}",
            f"  truth: {self.truth_path}",
        ]
        if self.hourly_truth_path is not None:
            lines.append(f"  hourly truth: {self.hourly_truth_path}")
        lines.append("  time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in self.timings.items()))
        return "\n".join(lines)


def _timed_l2(swath: L2Swath, out_dir: Path) -> tuple[Path, float]:
    start = time.perf_counter()
    path = write_tropomi_l2(swath, out_dir)
    return path, time.perf_counter() - start


def _timed_era5(
    path: Path,
    hours: NDArray[np.datetime64],
    lat: NDArray[np.float64],
    lon: NDArray[np.float64],
    fields: dict[str, NDArray[np.float32]],
) -> tuple[Path, float]:
    start = time.perf_counter()
    out = write_era5_month(path, hours, lat, lon, fields)
    return out, time.perf_counter() - start


class _Writer:
    """Runs write tasks inline (workers=1) or in a process pool, with bounded backlog."""

    def __init__(self, workers: int) -> None:
        # fork where available: workers only run netCDF writes, and unlike spawn it does not
        # re-import the caller's __main__ (scripts without a main guard keep working)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self.pool = (
            ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))
            if workers > 1
            else None
        )
        self.pending: list[Future[tuple[Path, float]]] = []
        self.max_pending = 4 * workers
        self.results: list[tuple[Path, float]] = []
        self.wait_s = 0.0

    def submit(self, fn: Any, *args: Any) -> None:
        if self.pool is None:
            self.results.append(fn(*args))
            return
        self.pending.append(self.pool.submit(fn, *args))
        while len(self.pending) > self.max_pending:
            self._collect_one()

    def _collect_one(self) -> None:
        start = time.perf_counter()
        self.results.append(self.pending.pop(0).result())
        self.wait_s += time.perf_counter() - start

    def close(self) -> None:
        try:
            while self.pending:
                self._collect_one()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)


def _months(
    start: np.datetime64, end: np.datetime64
) -> Iterator[tuple[np.datetime64, np.datetime64]]:
    """Calendar-month chunks [a, b) of hours covering [start, end)."""
    month = start.astype("datetime64[M]")
    while month.astype("datetime64[h]") < end:
        a = max(month.astype("datetime64[h]"), start)
        b = min((month + 1).astype("datetime64[h]"), end)
        yield a, b
        month = month + 1


def _inflow(config: Config, when: dt.datetime) -> float:
    """Background column entering the domain, umol m-2 (35 % higher in mid-January)."""
    doy = when.timetuple().tm_yday
    return config.synth.emissions.inflow_column_umol_m2 * (
        1.0 + 0.35 * np.cos(2 * np.pi * (doy - 15) / 365.25)
    )


def _to_datetime(value: np.datetime64) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(
        seconds=int(value.astype("datetime64[s]").astype(np.int64))
    )


def generate_world(config: Config, out_dir: Path, progress: bool = True) -> WorldSummary:
    """Simulate ``config.synth.days`` days and write the sources, truth and ``world.json``.

    Deterministic: the same config (seed included) gives the same data in every file.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    synth = config.synth
    grid = config.grid.to_grid()
    met_grid = make_met_grid(grid, synth.met_resolution, synth.met_margin_deg)
    seeds = np.random.SeedSequence(config.seed).spawn(2)
    emissions = build_emissions(grid, synth.emissions, np.random.default_rng(seeds[0]))
    met_model = MeteorologyModel(met_grid, synth.climate, np.random.default_rng(seeds[1]))
    metrics = GridMetrics(grid)
    lon2, lat2 = np.meshgrid(grid.lon, grid.lat)
    to_target = Bilinear(met_grid.lat, met_grid.lon, lat2, lon2)
    lat0 = float(grid.lat.mean())
    lon0 = float(grid.lon.mean())
    free_troposphere = synth.emissions.free_troposphere_umol_m2  # added to the transported column
    k_sun = sun_loss_coefficient(
        lat0, synth.climate.lifetime_noon_summer_h, synth.climate.lifetime_night_h
    )

    first_day = np.datetime64(synth.start_date, "D")
    end = (first_day + synth.days).astype("datetime64[h]")
    era5_start = (first_day - 1).astype("datetime64[h]")
    transport_start = (first_day - synth.spinup_days).astype("datetime64[h]")
    met_start = min(era5_start, transport_start)
    overpasses: dict[np.datetime64, tuple[int, Overpass]] = {}
    for d in range(synth.days):
        date = synth.start_date + dt.timedelta(days=d)
        rng = np.random.default_rng([config.seed, 7, d])
        op = overpass_for_day(d, date, grid, synth.satellite, rng)
        overpasses[op.time.astype("datetime64[h]")] = (d, op)

    earlier_world = (out_dir / "world.json").exists()
    try:
        for sub in ("tropomi", "era5", "truth"):
            (out_dir / sub).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise No2FusionError(
            f"cannot create the output folder: {error.strerror}", out_dir
        ) from None
    timings = dict.fromkeys(STAGES, 0.0)
    truth = np.full((synth.days, *grid.shape), np.nan, dtype=np.float32)
    overpass_times = np.zeros(synth.days, dtype="datetime64[ms]")
    column = np.full(grid.shape, _inflow(config, _to_datetime(transport_start)), dtype=np.float64)
    with contextlib.ExitStack() as files:
        # the hourly truth appears under its name only when the whole loop finished
        hourly_path = out_dir / "truth" / "truth_hourly.nc"
        hourly = (
            HourlyTruthFile(files.enter_context(atomic_path(hourly_path)), grid)
            if synth.write_hourly_truth
            else None
        )
        writer = _Writer(synth.workers)
        pixels = passed = 0
        bar = tqdm(total=synth.days, desc="synth", unit="day", disable=not progress)
        try:
            for chunk_start, chunk_end in _months(met_start, end):
                t0 = time.perf_counter()
                hours = np.arange(chunk_start, chunk_end, dtype="datetime64[h]")
                met = met_model.generate(hours)
                keep = hours >= era5_start
                timings["meteorology"] += time.perf_counter() - t0
                if keep.any():
                    t0 = time.perf_counter()
                    month = str(hours[keep][0].astype("datetime64[M]"))
                    writer.submit(
                        _timed_era5,
                        out_dir / "era5" / f"era5_single_levels_{month}.nc",
                        hours[keep],
                        met_grid.lat,
                        met_grid.lon,
                        {name: values[keep] for name, values in met.items()},
                    )
                    timings["writing"] += time.perf_counter() - t0
                when = [_to_datetime(h) for h in hours]
                doy = np.array([w.timetuple().tm_yday for w in when], dtype=np.float64)
                utc_mid = np.array([w.hour + 0.5 for w in when], dtype=np.float64)
                block_start = -TRANSPORT_BLOCK_HOURS  # the hours whose inputs u, v, loss hold
                for h, hour in enumerate(hours):
                    if hour < transport_start:
                        continue
                    t0 = time.perf_counter()
                    if h >= block_start + TRANSPORT_BLOCK_HOURS:
                        block_start = h
                        u, v, loss = _transport_inputs(
                            met,
                            slice(h, h + TRANSPORT_BLOCK_HOURS),
                            doy,
                            utc_mid,
                            grid,
                            to_target,
                            lat2,
                            lon2,
                            k_sun,
                            synth.climate.lifetime_night_h,
                        )  # each (block hours, n_lat, n_lon)
                    f_traffic, f_industry, f_background = time_factors(
                        when[h], when[h].hour + 0.5 + lon0 / 15.0, synth.emissions
                    )
                    emission = (
                        f_traffic * emissions.traffic
                        + f_industry * emissions.industry
                        + f_background * emissions.background
                    )
                    c_in = _inflow(config, when[h])
                    b = h - block_start
                    args = (u[b], v[b], emission, loss[b], c_in)
                    seen = overpasses.get(hour)
                    if seen is None:
                        metrics.advance(column, *args, 3600.0, synth.diffusivity_m2_s)
                        timings["transport"] += time.perf_counter() - t0
                    else:
                        d, op = seen
                        first_s = float(
                            (op.time - hour.astype("datetime64[ms]")) / np.timedelta64(1, "s")
                        )
                        metrics.advance(column, *args, first_s, synth.diffusivity_m2_s)
                        truth[d] = column + free_troposphere
                        overpass_times[d] = op.time
                        timings["transport"] += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        w = first_s / 3600.0
                        tcc = met["tcc"][h] * (1 - w) + met["tcc"][min(h + 1, len(hours) - 1)] * w
                        swath = observe(
                            op,
                            grid,
                            column + free_troposphere,
                            met_grid,
                            tcc,
                            c_in + free_troposphere,
                            synth.satellite,
                            np.random.default_rng([config.seed, 11, d]),
                        )
                        pixels += swath.no2.size
                        passed += int((np.rint(swath.qa_value * 100) > 75).sum())
                        timings["sampling"] += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        writer.submit(_timed_l2, swath, out_dir / "tropomi")
                        timings["writing"] += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        metrics.advance(column, *args, 3600.0 - first_s, synth.diffusivity_m2_s)
                        timings["transport"] += time.perf_counter() - t0
                        bar.update(1)
                    if hourly is not None and hour + 1 > first_day.astype("datetime64[h]"):
                        hourly.append(hour + 1, column + free_troposphere)
            t0 = time.perf_counter()
            truth_path = write_truth(
                out_dir / "truth" / "truth.nc", grid, truth, overpass_times, emissions
            )
            writer.close()
            timings["writing"] += time.perf_counter() - t0
        finally:
            bar.close()
            writer.close()
            if hourly is not None:
                hourly.close()
    written = [path for path, _ in writer.results]
    tropomi_files = sorted(p for p in written if p.parent.name == "tropomi")
    era5_files = sorted(p for p in written if p.parent.name == "era5")
    timings["writing_in_workers"] = sum(seconds for _, seconds in writer.results)
    if earlier_world:  # only in a folder an earlier synth run made: never touch other files
        _remove_stale(out_dir, set(written))
    summary = WorldSummary(
        out_dir=out_dir,
        tropomi_files=tropomi_files,
        era5_files=era5_files,
        truth_path=truth_path,
        hourly_truth_path=hourly_path if hourly is not None else None,
        days=synth.days,
        pixels=pixels,
        pixels_qa_pass=passed,
        timings=timings,
    )
    _write_world_json(out_dir / "world.json", config, summary, met_grid)
    return summary


def _transport_inputs(
    met: dict[str, NDArray[np.float32]],
    block: slice,
    day_of_year: NDArray[np.float64],
    utc_hour_mid: NDArray[np.float64],
    grid: Grid,
    to_target: Bilinear,
    lat2: NDArray[np.float64],
    lon2: NDArray[np.float64],
    k_sun: float,
    lifetime_night_h: float,
) -> tuple[NDArray[np.float64], ...]:
    """``hour_inputs`` for the hours ``block`` of the month's ``met`` (hours, met_lat, met_lon):
    u, v (m s-1) and the loss rate (s-1), each (block hours, n_lat, n_lon). Computed a block at a
    time (each hour is independent): for a whole month over Europe at 0.1 deg the three float64
    arrays would take 1.4 GB."""
    u, v, loss = hour_inputs(
        met["u10"][block],
        met["v10"][block],
        met["t2m"][block],
        met["blh"][block],
        to_target.j,
        to_target.i,
        to_target.wy,
        to_target.wx,
        lat2.ravel(),
        lon2.ravel(),
        day_of_year[block],
        utc_hour_mid[block],
        k_sun,
        lifetime_night_h,
    )  # each (block hours, n_lat * n_lon)
    hours = u.shape[0]
    return tuple(a.reshape(hours, *grid.shape) for a in (u, v, loss))


def _remove_stale(out_dir: Path, written: set[Path]) -> None:
    """Drop source files of an earlier synth run in this folder that this run did not rewrite
    (e.g. days beyond a shorter rerun), so the pipeline never mixes two worlds."""
    for pattern in ("tropomi/S5P_*_L2__NO2____*.nc", "era5/era5_single_levels_*.nc"):
        for path in out_dir.glob(pattern):
            if path not in written:
                path.unlink()


def _write_world_json(path: Path, config: Config, summary: WorldSummary, met_grid: MetGrid) -> None:
    info = {
        "seed": config.seed,
        "grid": config.grid.model_dump(mode="json"),
        "synth": config.synth.model_dump(mode="json"),
        "met_grid": {
            "lat": [float(met_grid.lat[0]), float(met_grid.lat[-1]), int(met_grid.lat.size)],
            "lon": [float(met_grid.lon[0]), float(met_grid.lon[-1]), int(met_grid.lon.size)],
        },
        "counts": {
            "days": summary.days,
            "tropomi_files": len(summary.tropomi_files),
            "era5_files": len(summary.era5_files),
            "pixels": summary.pixels,
            "pixels_qa_pass": summary.pixels_qa_pass,
        },
        "layout": {
            "tropomi": "tropomi/S5P_OFFL_L2__NO2____*.nc",
            "era5": "era5/era5_single_levels_YYYY-MM.nc",
            "truth": "truth/truth.nc",
        },
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
