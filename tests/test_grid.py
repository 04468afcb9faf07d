"""Target grid: edges, centres and areas against analytic values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from no2fusion.errors import ConfigError
from no2fusion.grid import EARTH_RADIUS_M, create_target_grid


def test_grid_edges_and_centres() -> None:
    grid = create_target_grid({"lat_min": 35, "lat_max": 55, "lon_min": -15, "lon_max": 25}, 0.1)
    assert grid.shape == (200, 400)
    assert grid.lat_edges[0] == 35 and math.isclose(grid.lat_edges[-1], 55)
    assert math.isclose(grid.lon[0], -14.95)


def test_cell_areas_sum_to_the_spherical_zone() -> None:
    grid = create_target_grid({"lat_min": 0, "lat_max": 30, "lon_min": 0, "lon_max": 90}, 0.5)
    expected = EARTH_RADIUS_M**2 * (math.pi / 2) * (math.sin(math.radians(30)) - 0.0)
    assert np.isclose(grid.cell_area_m2().sum(), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "bbox",
    [
        {"lat_min": 10, "lat_max": 5, "lon_min": 0, "lon_max": 1},  # inverted
        {"lat_min": 0, "lat_max": 1, "lon_min": 170, "lon_max": -170},  # wraps
        {"lat_min": 0, "lat_max": 1.05, "lon_min": 0, "lon_max": 1},  # not whole cells
    ],
)
def test_bad_bbox_is_rejected(bbox: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        create_target_grid(bbox, 0.1)
