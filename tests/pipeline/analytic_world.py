"""A small hand-made world with analytic answers, in the real file formats (package writers).

Pixels are aligned to the grid and constant per cell, ERA5 has a steady west wind: the cube's
values are known exactly. Shared by the build tests (``test_build.py``, ``test_bad_inputs.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from no2fusion.cli import main
from no2fusion.config import AlignConfig, PipelineConfig
from no2fusion.grid import create_target_grid
from no2fusion.synth.writers import L2Swath, write_era5_month, write_tropomi_l2
from no2fusion.vocab import MOL_M2_TO_UMOL_M2

# 1/8 deg cells and 1/16 deg pixels: every edge is exact in float32 (the product's corner dtype)
CELL_DEG = 0.125
GRID = create_target_grid(
    {"lat_min": 50.0, "lat_max": 51.0, "lon_min": 6.0, "lon_max": 7.0}, CELL_DEG
)
PIPELINE = PipelineConfig(workers=1, align=AlignConfig(steps=6))
START = np.datetime64("2021-03-01", "D")
OVERPASS_HOUR = np.timedelta64(12 * 3600 + 10 * 60, "s")  # first scanline at 12:10 UTC
PIXEL_DEG = 0.0625  # pixels tile each cell exactly 2 x 2


def cell_value(day: int) -> np.ndarray:
    """Analytic per-cell NO2 (umol m-2) on GRID for day ``day``: a plume growing by 10 % a day."""
    lat, lon = np.meshgrid(GRID.lat, GRID.lon, indexing="ij")
    return 20.0 + 100.0 * np.exp(-((lat - 50.5) ** 2 + (lon - 6.5) ** 2) / 0.05) * (1 + 0.1 * day)


@dataclass
class World:
    root: Path
    days: int

    @property
    def tropomi(self) -> Path:
        return self.root / "tropomi"


def write_swath(
    world: World, day: int, *, noise: float = 0.0, qa: float = 1.0, shift_lat: float = 0.0
) -> Path:
    """One orbit of grid-aligned 0.05 deg pixels over GRID (plus one ring of pixels)."""
    lat_e = np.arange(50.0 - PIXEL_DEG, 51.0 + PIXEL_DEG + 1e-9, PIXEL_DEG) + shift_lat
    lon_e = np.arange(6.0 - PIXEL_DEG, 7.0 + PIXEL_DEG + 1e-9, PIXEL_DEG)
    n_scan, n_pix = lat_e.size - 1, lon_e.size - 1
    la0, lo0 = np.meshgrid(lat_e[:-1], lon_e[:-1], indexing="ij")
    la1, lo1 = la0 + PIXEL_DEG, lo0 + PIXEL_DEG
    lat_b = np.stack([la0, la0, la1, la1], axis=-1)  # SW, SE, NE, NW (counter-clockwise)
    lon_b = np.stack([lo0, lo1, lo1, lo0], axis=-1)
    centre_lat, centre_lon = la0 + PIXEL_DEG / 2, lo0 + PIXEL_DEG / 2
    # value: the analytic cell value of the cell holding the pixel centre (ring: 20)
    values = np.full((n_scan, n_pix), 20.0)
    i = np.floor((centre_lat - 50.0) / CELL_DEG).astype(int)
    j = np.floor((centre_lon - 6.0) / CELL_DEG).astype(int)
    inside = (i >= 0) & (i < 8) & (j >= 0) & (j < 8)
    values[inside] = cell_value(day)[i[inside], j[inside]]
    rng = np.random.default_rng(day)
    values = values + noise * rng.standard_normal(values.shape)
    first = (START + day).astype("datetime64[s]") + OVERPASS_HOUR
    times = (first + np.arange(n_scan) * np.timedelta64(840, "ms")).astype("datetime64[ms]")
    swath = L2Swath(
        latitude=centre_lat.astype(np.float32),
        longitude=centre_lon.astype(np.float32),
        latitude_bounds=lat_b.astype(np.float32),
        longitude_bounds=lon_b.astype(np.float32),
        no2=(values / MOL_M2_TO_UMOL_M2).astype(np.float32),
        no2_precision=np.full((n_scan, n_pix), max(noise, 1.0) / MOL_M2_TO_UMOL_M2, np.float32),
        qa_value=np.full((n_scan, n_pix), qa),
        scanline_time=times,
        orbit=20000 + day,
    )
    return write_tropomi_l2(swath, world.tropomi)


def write_era5(
    world: World,
    *,
    first_hour: int = -24,
    last_hour: int | None = None,
    nan_at: int | None = None,
    name: str = "era5_single_levels.nc",
    lat_range: tuple[float, float] = (49.0, 52.0),
    shift_deg: float = 0.0,
) -> Path:
    """Hourly ERA5 (current CDS layout) on a 0.25 deg grid around GRID: steady 5 m/s west wind.

    ``lat_range``: first and last grid latitude; ``shift_deg``: move the whole grid (both
    axes) by this much."""
    last = last_hour if last_hour is not None else world.days * 24 + 23
    hours = np.arange(first_hour, last + 1)
    times = START.astype("datetime64[h]") + hours
    lat = np.arange(lat_range[0], lat_range[1] + 0.01, 0.25) + shift_deg
    lon = np.arange(5.0, 8.01, 0.25) + shift_deg
    shape = (hours.size, lat.size, lon.size)
    hour_of_day = (hours % 24)[:, None, None] * np.ones(shape)
    fields = {
        "u10": np.full(shape, 5.0),
        "v10": np.zeros(shape),
        "blh": 500.0 + 50.0 * hour_of_day,
        "t2m": 280.0 + 0.1 * hour_of_day,
        "d2m": np.full(shape, 275.0),
        "sp": np.full(shape, 101000.0),
        "tcc": np.full(shape, 0.3),
    }
    if nan_at is not None:
        fields["t2m"][nan_at, 3, 3] = np.nan
    return write_era5_month(world.root / "era5" / name, times, lat, lon, fields)


def make_world(root: Path, days: int = 3, noise: float = 0.0) -> World:
    world = World(root, days)
    for day in range(days):
        write_swath(world, day, noise=noise)
    write_era5(world)
    return world


def run_cli(world: World, out: Path, *extra: str) -> int:
    return main(
        [
            "build",
            "--config",
            "config/test.yaml",
            "--sources",
            str(world.root),
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "grid.bbox={lat_min: 50.0, lat_max: 51.0, lon_min: 6.0, lon_max: 7.0}",
            "--set",
            "grid.resolution=0.125",
            "--set",
            "data.tile_size=8",
            "--set",
            "pipeline.align.steps=6",
            "--set",
            "pipeline.workers=1",
            *extra,
        ]
    )


def truncate(path: Path) -> None:
    """Keep the first third of a file (an interrupted download)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` and its bytes (to show a store was left untouched)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
