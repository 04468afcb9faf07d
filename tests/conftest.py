"""Shared fixtures. Test data comes from the package's own seeded generators, in real formats;
``make_cube`` writes a hand-made cube with known values (the real store layout) for the data,
input and baseline tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from no2fusion.config import Config, load_config
from no2fusion.grid import create_target_grid
from no2fusion.io.cube import CubeLayout, create_cube
from no2fusion.vocab import FEATURES, REGION_LEGEND

REPO = Path(__file__).resolve().parents[1]
MakeCube = Callable[..., Path]


@pytest.fixture(scope="session")
def test_config() -> Config:
    """The tiny config used by tests and ``main.py --mode test``."""
    return load_config(REPO / "config" / "test.yaml")


@pytest.fixture(scope="session")
def synth_sources(test_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated world of ``config/test.yaml`` (16 x 16 cells, 60 days) in the real formats.

    Layout (``no2fusion.synth.world``): ``tropomi/S5P_OFFL_L2__NO2____*.nc`` (one per day),
    ``era5/era5_single_levels_YYYY-MM.nc``, ``truth/truth.nc``, ``world.json``. Read-only: copy
    before modifying.
    """
    from no2fusion.synth.world import generate_world

    out = tmp_path_factory.mktemp("synth_sources")
    generate_world(test_config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_cube(
    synth_sources: Path, test_config: Config, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The Zarr cube built from ``synth_sources`` with ``config/test.yaml`` (``no2fusion build``).

    Read-only: copy before modifying. Its build report is ``<parent>/cube.report.json``.
    """
    from no2fusion.pipeline.build import build_cube

    out = tmp_path_factory.mktemp("tiny_cube") / "cube.zarr"
    build_cube(synth_sources, out, test_config.grid.to_grid(), test_config.pipeline, progress=False)
    return out


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``no2fusion run --mode test`` of this checkout, in process, with one torch thread.

    Read-only: tests compare other runs with it or re-evaluate it in place."""
    import torch

    from no2fusion.cli import main

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "outputs"
    # the shipped test config, by name, as an installed package finds it
    code = main(
        ["run", "--mode", "test", "--config", "test", "--output", str(out), "--no-progress"]
    )
    assert code == 0
    return out


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
