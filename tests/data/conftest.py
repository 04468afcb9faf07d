"""A seeded, hand-made cube with known values for the data-layer tests.

Written through ``io.cube.create_cube`` (the real store layout) and one xarray region write of
all days, so the tests can check samples against values computed by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from no2fusion.grid import create_target_grid
from no2fusion.io.cube import CubeLayout, create_cube
from no2fusion.vocab import FEATURES, REGION_LEGEND

MakeCube = Callable[..., Path]


def write_test_cube(
    path: Path,
    days: int = 60,
    n_cells: int = 16,
    start: str = "2021-01-01",
    cloud_fraction: float = 0.3,
    empty_days: tuple[int, ...] = (),
    absent_days: tuple[int, ...] = (),
    seed: int = 0,
) -> Path:
    """A cube over ``n_cells`` x ``n_cells`` cells of 0.1 deg at 50N 6E and a 0.25 deg met grid.

    ``no2[t] = 40 + t + 10 * row / n`` umol m-2 (plus nothing random), NaN on a seeded
    ``cloud_fraction`` of cells; days in ``empty_days`` are all NaN; days in ``absent_days``
    are left incomplete (``day_complete`` False). ``features[t, h, i, j, f] = f + 0.01 * t +
    0.1 * i`` (i = met_lat index), so tile means are easy to compute by hand.
    """
    rng = np.random.default_rng(seed)
    extent = 0.1 * n_cells
    grid = create_target_grid(
        {"lat_min": 50.0, "lat_max": 50.0 + extent, "lon_min": 6.0, "lon_max": 6.0 + extent}, 0.1
    )
    met_lat = np.arange(50.0 - 0.25, 50.0 + extent + 0.26, 0.25)  # centres, margin one cell
    met_lon = np.arange(6.0 - 0.25, 6.0 + extent + 0.26, 0.25)
    times = np.datetime64(start, "D") + np.arange(days)
    layout = CubeLayout(
        days=times.astype("datetime64[ns]"),
        lat_edges=grid.lat_edges,
        lon_edges=grid.lon_edges,
        met_lat=met_lat,
        met_lon=met_lon,
        steps=24,
        with_truth=False,
    )
    region = rng.integers(0, 5, size=grid.shape).astype(np.int8)
    create_cube(path, layout, region, grid.cell_area_m2(), REGION_LEGEND, {"synthetic": 1})

    t = np.arange(days, dtype=np.float32)[:, None, None]
    rows = np.arange(n_cells, dtype=np.float32)[None, :, None]
    no2 = np.broadcast_to(40.0 + t + 10.0 * rows / n_cells, (days, n_cells, n_cells)).copy()
    no2[rng.random(no2.shape) < cloud_fraction] = np.nan
    for day in empty_days:
        no2[day] = np.nan
    f = np.arange(len(FEATURES), dtype=np.float32)  # (F,)
    tt = np.arange(days, dtype=np.float32)[:, None, None, None, None]  # (time, 1, 1, 1, 1)
    i = np.arange(met_lat.size, dtype=np.float32)[None, None, :, None, None]  # met_lat index
    shape = (days, 24, met_lat.size, met_lon.size, len(FEATURES))
    features = np.broadcast_to(f + 0.01 * tt + 0.1 * i, shape).astype(np.float32)
    complete = np.ones(days, dtype=bool)
    complete[list(absent_days)] = False
    xr.Dataset(
        {
            "no2": (("time", "lat", "lon"), no2.astype(np.float32)),
            "features": (("time", "hour", "met_lat", "met_lon", "feature"), features),
            "day_complete": (("time",), complete),
        }
    ).to_zarr(path, region={"time": slice(0, days)}, consolidated=False)
    return path


@pytest.fixture(scope="session")
def make_cube(tmp_path_factory: pytest.TempPathFactory) -> MakeCube:
    """``make_cube(**write_test_cube kwargs) -> path``; each distinct cube is written once per
    session, so tests must not modify it (copy it first)."""
    made: dict[str, Path] = {}

    def make(**kwargs: object) -> Path:
        key = repr(sorted(kwargs.items()))
        if key not in made:
            folder = tmp_path_factory.mktemp("cube")
            made[key] = write_test_cube(folder / "cube.zarr", **kwargs)  # type: ignore[arg-type]
        return made[key]

    return make
