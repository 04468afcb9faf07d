"""Exact area-weighted regridder: analytic answers and an independent shapely reference."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from no2fusion.grid import Grid, create_target_grid
from no2fusion.pipeline.regrid import AreaWeightedRegridder

# a small grid with non-square cells and uneven rows, so row/column mix-ups show
GRID = Grid(
    lat_edges=np.array([10.0, 10.3, 10.5, 10.9, 11.2, 11.5]),
    lon_edges=np.array([20.0, 20.25, 20.5, 20.75, 21.0, 21.25, 21.5]),
)


def shoelace(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def reference_weights(grid: Grid, lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray:
    """Slow exact reference: shapely polygon ∩ cell box areas / cell area, (n_lat, n_lon)."""
    poly = shapely.Polygon(np.column_stack([lon, lat]))
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
    out = np.zeros(grid.shape)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            cell = shapely.box(
                grid.lon_edges[j], grid.lat_edges[i], grid.lon_edges[j + 1], grid.lat_edges[i + 1]
            )
            out[i, j] = poly.intersection(cell).area / cell.area
    return out


def rectangle(lat0: float, lat1: float, lon0: float, lon1: float) -> tuple[list, list]:
    """Corner lats, lons of an axis-aligned pixel, counter-clockwise from south-west."""
    return [lat0, lat0, lat1, lat1], [lon0, lon1, lon1, lon0]


def random_swath(rng: np.random.Generator, n: int, grid: Grid) -> tuple[NDArray, NDArray]:
    """n random convex quads (inscribed in ellipses) fully inside ``grid``; (n, 4) lat, lon."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, (n, 4)), axis=1)
    ry, rx = rng.uniform(0.02, 0.2, (2, n, 1))
    rot = rng.uniform(0, np.pi, (n, 1))
    dx, dy = rx * np.cos(angles), ry * np.sin(angles)
    x = dx * np.cos(rot) - dy * np.sin(rot)
    y = dx * np.sin(rot) + dy * np.cos(rot)
    margin = 0.3
    cy = rng.uniform(grid.lat_edges[0] + margin, grid.lat_edges[-1] - margin, (n, 1))
    cx = rng.uniform(grid.lon_edges[0] + margin, grid.lon_edges[-1] - margin, (n, 1))
    return cy + y, cx + x


def test_constant_field_stays_constant() -> None:
    rng = np.random.default_rng(1)
    lat, lon = random_swath(rng, 300, GRID)
    result = AreaWeightedRegridder(GRID).regrid(np.full(300, 3.7), lat, lon)
    covered = result.weight > 0
    assert covered.sum() > 20  # most of the 30 cells (the margins leave corners empty)
    np.testing.assert_allclose(result.mean[covered], 3.7, rtol=1e-13)
    assert result.mean.dtype == np.float64 and result.count.dtype == np.int32
    assert (result.count[covered] >= 1).all()


def test_weights_sum_to_pixel_area_inside_grid() -> None:
    # 20.9..21.8 x 11.0..11.9 sticks out of the grid's NE corner (grid ends at 21.5, 11.5)
    lat, lon = rectangle(11.0, 11.9, 20.9, 21.8)
    result = AreaWeightedRegridder(GRID).regrid([1.0], [lat], [lon])
    inside = (11.5 - 11.0) * (21.5 - 20.9)
    assert (result.weight * GRID.cell_area_deg2()).sum() == pytest.approx(inside, rel=1e-12)
    # cells fully covered get weight exactly 1
    assert result.weight[4, 4] == pytest.approx(1.0, rel=1e-12)
    assert result.weight[3, 4] == pytest.approx((11.2 - 11.0) / 0.3, rel=1e-12)
    assert result.count.sum() == 6  # rows 3-4 x columns 3-5


def test_mass_is_conserved_for_pixels_inside_grid() -> None:
    rng = np.random.default_rng(2)
    lat, lon = random_swath(rng, 200, GRID)
    values = rng.uniform(1.0, 100.0, 200)
    result = AreaWeightedRegridder(GRID).regrid(values, lat, lon)
    areas = np.array([shoelace(lon[k], lat[k]) for k in range(200)])
    covered = result.weight > 0
    cell_mass = (result.mean * result.weight * GRID.cell_area_deg2())[covered].sum()
    assert cell_mass == pytest.approx(float((values * areas).sum()), rel=1e-12)


def test_uncertainty_combines_in_quadrature() -> None:
    # two pixels each exactly tiling cell (0, 0): w = 1 each, sqrt(1*s1^2 + 1*s2^2) / 2
    lat, lon = rectangle(10.0, 10.3, 20.0, 20.25)
    result = AreaWeightedRegridder(GRID).regrid(
        [2.0, 4.0], [lat, lat], [lon, lon], uncertainty=[3.0, 4.0]
    )
    assert result.mean[0, 0] == pytest.approx(3.0)
    assert result.weight[0, 0] == pytest.approx(2.0)
    assert result.count[0, 0] == 2
    assert result.uncertainty is not None
    assert result.uncertainty[0, 0] == pytest.approx(5.0 / 2.0)
    assert np.isnan(result.uncertainty[1, 1]) and np.isnan(result.mean[1, 1])
    assert AreaWeightedRegridder(GRID).regrid([1.0], [lat], [lon]).uncertainty is None


def test_nan_corners_and_values_are_dropped_and_counted() -> None:
    lat, lon = rectangle(10.0, 10.3, 20.0, 20.25)
    bad_lat = [10.0, np.nan, 10.3, 10.3]
    regridder = AreaWeightedRegridder(GRID)
    result = regridder.regrid([5.0, 1e6, np.nan], [lat, bad_lat, lat], [lon, lon, lon])
    assert regridder.dropped_nan_corners == 1
    assert regridder.dropped_nan_values == 1
    assert result.mean[0, 0] == 5.0 and result.count[0, 0] == 1
    assert result.weight.sum() == pytest.approx(1.0)


def test_degenerate_and_outside_pixels_add_nothing() -> None:
    regridder = AreaWeightedRegridder(GRID)
    result = regridder.regrid(
        [1.0, 2.0, 3.0],
        [[10.1, 10.1, 10.1, 10.1], [10.1, 10.2, 10.1, 10.2], [50.0, 50.0, 51.0, 51.0]],
        [[20.1, 20.1, 20.1, 20.1], [20.1, 20.2, 20.2, 20.1], [20.1, 20.2, 20.2, 20.1]],
    )
    # a point, a bow-tie of zero net area, a pixel far outside: no weight anywhere
    assert result.weight.sum() == 0.0 and result.count.sum() == 0
    assert np.isnan(result.mean).all()


def test_antimeridian_pixel_is_split_between_both_sides() -> None:
    east = create_target_grid({"lat_min": 0, "lat_max": 1, "lon_min": 179, "lon_max": 180}, 0.5)
    west = create_target_grid({"lat_min": 0, "lat_max": 1, "lon_min": -180, "lon_max": -179}, 0.5)
    # a 0.1 x 0.4 deg pixel from 179.9 E across the antimeridian to 179.7 W, in both corner
    # orders (first corner east or west of the line)
    lat = [0.2, 0.2, 0.6, 0.6]
    for lon in ([179.9, -179.7, -179.7, 179.9], [-179.7, 179.9, 179.9, -179.7]):
        on_east = AreaWeightedRegridder(east).regrid([7.0], [lat], [lon])
        on_west = AreaWeightedRegridder(west).regrid([7.0], [lat], [lon])
        east_area = (on_east.weight * east.cell_area_deg2()).sum()
        west_area = (on_west.weight * west.cell_area_deg2()).sum()
        assert east_area == pytest.approx(0.1 * 0.4, rel=1e-5)  # float32-free, exact geometry
        assert west_area == pytest.approx(0.3 * 0.4, rel=1e-5)
        assert on_east.count[:, 1].tolist() == [1, 1] and on_east.count[:, 0].sum() == 0
        assert on_west.count[:, 0].tolist() == [1, 1] and on_west.count[:, 1].sum() == 0
        assert np.nanmax(on_west.mean) == 7.0


def test_global_grid_sees_antimeridian_pixel_whole() -> None:
    world = create_target_grid({"lat_min": -2, "lat_max": 2, "lon_min": -180, "lon_max": 180}, 1)
    lat, lon = [0.2, 0.2, 0.6, 0.6], [179.9, -179.7, -179.7, 179.9]
    result = AreaWeightedRegridder(world).regrid([1.0], [lat], [lon])
    assert (result.weight * world.cell_area_deg2()).sum() == pytest.approx(0.4 * 0.4, rel=1e-9)
    assert result.count.sum() == 2  # the first and the last column


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="lat_bounds must have shape"):
        AreaWeightedRegridder(GRID).regrid([1.0, 2.0], [[0, 0, 1, 1]], [[0, 1, 1, 0]])


quad = st.tuples(
    st.floats(GRID.lat_edges[0] - 0.3, GRID.lat_edges[-1] + 0.3),  # centre lat, may be outside
    st.floats(GRID.lon_edges[0] - 0.3, GRID.lon_edges[-1] + 0.3),
    st.floats(0.01, 0.6),  # semi-axes
    st.floats(0.01, 0.6),
    st.floats(0, np.pi),  # rotation
    st.lists(st.floats(0, 2 * np.pi), min_size=4, max_size=4, unique=True),  # vertex angles
    st.booleans(),  # clockwise?
)


# a uniform 0.1 deg grid (the kernel finds cells by arithmetic there; GRID's uneven rows take
# the binary-search path), with corners optionally snapped onto its edges
UNIFORM = create_target_grid({"lat_min": 10, "lat_max": 10.5, "lon_min": 20, "lon_max": 20.6}, 0.1)


@pytest.mark.parametrize("grid", [GRID, UNIFORM], ids=["uneven", "uniform"])
@settings(max_examples=50, deadline=None)
@given(quads=st.lists(quad, min_size=1, max_size=4), seed=st.integers(0, 2**31), snap=st.booleans())
def test_matches_shapely_reference(grid: Grid, quads: list, seed: int, snap: bool) -> None:
    """Random convex quads of either orientation, partly outside the grid: weights per cell
    agree with shapely's exact intersection to 1e-9 of the pixel's total weight."""
    rng = np.random.default_rng(seed)
    lats, lons, refs = [], [], []
    for cy, cx, ry, rx, rot, angles, clockwise in quads:
        a = np.sort(np.asarray(angles))
        if clockwise:
            a = a[::-1]
        dx, dy = rx * np.cos(a), ry * np.sin(a)
        lon = cx + dx * np.cos(rot) - dy * np.sin(rot)
        lat = cy + dx * np.sin(rot) + dy * np.cos(rot)
        if snap:  # corners exactly on grid edges (10.3 is not exact in binary: the edge is)
            lat = grid.lat_edges[np.abs(grid.lat_edges[:, None] - lat).argmin(0)]
            lon = grid.lon_edges[np.abs(grid.lon_edges[:, None] - lon).argmin(0)]
        lats.append(lat)
        lons.append(lon)
        # snapping can fold a quad into a bow-tie, whose "area" has no single right answer, or
        # collapse it onto a line, whose area (rounding noise, ~1e-16) cannot scale a tolerance
        polygon = shapely.Polygon(np.column_stack([lon, lat]))
        assume(polygon.is_valid and polygon.area > 1e-9)
        refs.append(reference_weights(grid, lat, lon))
    values = rng.uniform(1, 50, len(quads))
    regridder = AreaWeightedRegridder(grid)
    for k in range(len(quads)):  # one pixel at a time: weights
        got = regridder.regrid(values[k : k + 1], lats[k][None], lons[k][None]).weight
        scale = max(refs[k].sum(), 1e-300)
        # + 1e-12: clipping rounds at the scale of the coordinates, not of a sliver's tiny weight
        # (a pixel mostly outside the grid once differed by 1.7e-14 on weights summing to 1e-5)
        np.testing.assert_allclose(got, refs[k], rtol=1e-9, atol=1e-9 * scale + 1e-12)
    together = regridder.regrid(values, np.array(lats), np.array(lons))  # all: the mean
    ref_w = np.sum(refs, axis=0)
    ref_wx = np.tensordot(values, np.array(refs), axes=1)
    covered = ref_w > 1e-9 * ref_w.max(initial=0.0)
    np.testing.assert_allclose(together.mean[covered], ref_wx[covered] / ref_w[covered], rtol=1e-9)
    assert (together.count[covered] >= 1).all()


def test_a_swath_regrids_like_its_flattened_pixels_and_unpacks_the_seeds_way() -> None:
    """The seed's ``gridded, counts = regridder.regrid(no2, lats, lons)`` on a 2-D swath
    (scanline x ground_pixel, corners (S, P, 4))."""
    from no2fusion import AreaWeightedRegridder as SeedRegridder

    rng = np.random.default_rng(3)
    n_scan, n_pix = 7, 5
    lat0 = GRID.lat_edges[0] + 0.11 * np.arange(n_scan)[:, None] + 0.01 * np.arange(n_pix)
    lon0 = GRID.lon_edges[0] + 0.13 * np.arange(n_pix)[None, :] + 0 * lat0
    lats = np.stack([lat0, lat0, lat0 + 0.11, lat0 + 0.11], axis=-1)  # (S, P, 4)
    lons = np.stack([lon0, lon0 + 0.13, lon0 + 0.13, lon0], axis=-1)
    no2 = rng.uniform(10, 100, (n_scan, n_pix))
    sigma = rng.uniform(1, 5, (n_scan, n_pix))
    regridder = SeedRegridder(GRID)
    gridded, counts = regridder.regrid(no2, lats, lons)
    flat = regridder.regrid(no2.ravel(), lats.reshape(-1, 4), lons.reshape(-1, 4))
    np.testing.assert_array_equal(gridded, flat.mean)
    np.testing.assert_array_equal(counts, flat.count)
    assert counts.sum() > n_scan * n_pix  # pixels straddle cells
    swath = regridder.regrid(no2, lats, lons, uncertainty=sigma)
    np.testing.assert_array_equal(
        swath.uncertainty,
        regridder.regrid(
            no2.ravel(), lats.reshape(-1, 4), lons.reshape(-1, 4), sigma.ravel()
        ).uncertainty,
    )
    with pytest.raises(ValueError, match=r"lat_bounds must have shape \(7, 5, 4\)"):
        regridder.regrid(no2, lats[:, :4], lons)
