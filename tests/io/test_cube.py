"""Cube store: creation with the full time axis, per-day region writes, completeness flag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from no2fusion.errors import CubeSchemaError
from no2fusion.grid import create_target_grid
from no2fusion.io.cube import (
    CubeLayout,
    check_cube_schema,
    completed_days,
    create_cube,
    cube_layout_matches,
    open_cube,
    update_cube_attrs,
    write_day,
    write_static,
)
from no2fusion.vocab import FEATURES, MET_VARIABLES, REGION_LEGEND

GRID = create_target_grid({"lat_min": 50.0, "lat_max": 50.4, "lon_min": 6.0, "lon_max": 6.6}, 0.1)
DAYS = np.arange(np.datetime64("2021-01-01"), np.datetime64("2021-01-05")).astype("datetime64[ns]")


def layout(steps: int = 3, truth: bool = True) -> CubeLayout:
    return CubeLayout(
        DAYS,
        GRID.lat_edges,
        GRID.lon_edges,
        np.array([49.75, 50.0, 50.25, 50.5]),
        np.array([6.0, 6.25, 6.5]),
        steps,
        truth,
    )


def make(path: Path) -> Path:
    region = np.arange(24, dtype=np.int8).reshape(4, 6) % 5
    create_cube(
        path, layout(), region, GRID.cell_area_m2(), REGION_LEGEND, {"title": "t", "synthetic": 1}
    )
    return path


def day_values(k: float) -> dict[str, np.ndarray]:
    met_shape = (3, 4, 3)
    overpass = DAYS[0] + np.timedelta64(int(12.5 * 3600), "s")
    return {
        "no2": np.full((4, 6), k, np.float32),
        "no2_precision": np.full((4, 6), 1.0, np.float32),
        "no2_weight": np.full((4, 6), 1.0, np.float32),
        "no2_count": np.full((4, 6), 4, np.int32),
        "no2_truth": np.full((4, 6), k + 0.5, np.float32),
        "overpass_time": np.datetime64(overpass, "ns"),
        "met_time": (overpass + np.arange(-2, 1) * np.timedelta64(1, "h")).astype("datetime64[ns]"),
        "features": np.full((*met_shape, 13), k, np.float32),
        **{f"met_{v}": np.full(met_shape, k, np.float32) for v in MET_VARIABLES},
    }


def test_created_cube_follows_the_schema_and_has_no_complete_day(tmp_path: Path) -> None:
    path = make(tmp_path / "c.zarr")
    raw = open_cube(path, complete_only=False)
    check_cube_schema(raw)
    assert raw.sizes["time"] == 4 and raw.sizes["hour"] == 3 and raw.sizes["feature"] == 13
    assert [str(f) for f in raw["feature"].values] == list(FEATURES)
    assert not raw["day_complete"].values.any()
    assert np.isnan(raw["no2"].values).all() and np.isnat(raw["overpass_time"].values).all()
    assert raw["region"].attrs["legend"] == REGION_LEGEND
    np.testing.assert_allclose(raw["cell_area"].values, GRID.cell_area_m2())
    np.testing.assert_allclose(raw["lat_bounds"].values[:, 0], GRID.lat_edges[:-1])
    np.testing.assert_allclose(raw["met_lat_bounds"].values[0], [49.625, 49.875])
    assert raw.attrs["Conventions"] == "CF-1.10"
    with pytest.raises(CubeSchemaError, match="no complete day"):
        open_cube(path)
    with pytest.raises(CubeSchemaError, match="already exists"):
        make(path)


def test_write_day_round_trips_and_sets_the_flag_last(tmp_path: Path) -> None:
    path = make(tmp_path / "c.zarr")
    write_day(path, 2, day_values(7.0))
    assert completed_days(path).tolist() == [False, False, True, False]
    cube = open_cube(path)
    assert cube.sizes["time"] == 1 and cube["time"].values[0] == DAYS[2]
    day = cube.isel(time=0)
    assert (day["no2"].values == 7.0).all() and (day["no2_truth"].values == 7.5).all()
    assert (day["no2_count"].values == 4).all()
    assert day["overpass_time"].values == DAYS[0] + np.timedelta64(int(12.5 * 3600), "s")
    np.testing.assert_array_equal(day["met_time"].values, day_values(0)["met_time"])
    assert (day["features"].values == 7.0).all()
    # other days untouched
    raw = open_cube(path, complete_only=False)
    assert np.isnan(raw["no2"].isel(time=1).values).all()


def test_write_day_rejects_static_or_unknown_variables(tmp_path: Path) -> None:
    path = make(tmp_path / "c.zarr")
    with pytest.raises(ValueError, match="region"):
        write_day(path, 0, {"region": np.zeros((4, 6), np.int8)})
    with pytest.raises(ValueError, match="day_complete"):
        write_day(path, 0, {"day_complete": np.array(True)})
    assert not completed_days(path).any()


def test_layout_check_static_and_attrs(tmp_path: Path) -> None:
    path = make(tmp_path / "c.zarr")
    assert cube_layout_matches(path, layout()) is None
    assert "hour" in (cube_layout_matches(path, layout(steps=4)) or "")
    assert "no2_truth" in (cube_layout_matches(path, layout(truth=False)) or "")
    write_static(path, "region", np.full((4, 6), 2, np.int8), {"legend": "2=x"})
    update_cube_attrs(path, {"build_report": {"days": 1}, "history": "h"})
    raw = open_cube(path, complete_only=False)
    assert (raw["region"].values == 2).all() and raw["region"].attrs["legend"] == "2=x"
    assert raw.attrs["build_report"] == '{"days": 1}' and raw.attrs["title"] == "t"
