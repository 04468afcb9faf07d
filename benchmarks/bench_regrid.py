"""Regrid throughput: a full-orbit-sized TROPOMI swath onto the 0.1 deg Europe grid.

Run: ``.venv/bin/python benchmarks/bench_regrid.py [--repeats 5] [--reference-pixels 2000]``

Measures, in one run and on one core (numba threads = 1):
1. a full orbit, 450 x 4172 pixels, on a sun-synchronous ground track (inclination 98.7 deg,
   ascending dayside, Earth rotation included) whose dayside crosses Europe: pixels/s over ALL
   pixels (most miss the box and are rejected by their bounding box);
2. the part of that swath whose pixels lie entirely inside the box: pixels/s where every
   pixel is clipped;
3. an independent shapely 2 reference (vectorised polygon ∩ cell-box areas per pixel) on a
   random subsample of (2): pixels/s, the speed ratio numba/shapely, and the largest weight
   difference between the two on that subsample.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import shapely  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from no2fusion.grid import Grid, create_target_grid  # noqa: E402
from no2fusion.pipeline.regrid import AreaWeightedRegridder  # noqa: E402

EUROPE = {"lat_min": 35.0, "lat_max": 55.0, "lon_min": -15.0, "lon_max": 25.0}
N_SCAN, N_GROUND = 4172, 450
INCLINATION = np.deg2rad(98.7)
ORBIT_S = 6090.0  # ~101.5 min
HALF_SWATH = np.deg2rad(1300.0 / 6371.0 * 180.0 / np.pi)  # +-1300 km across track, radians


def orbit_corners(node_lon_deg: float = 20.0) -> tuple[NDArray, NDArray, NDArray]:
    """(lat_bounds, lon_bounds, values) of one dayside orbit: (N_SCAN*N_GROUND, 4) degrees
    (corners counter-clockwise from south-west) and (N_SCAN*N_GROUND,) values."""
    # argument of latitude of the scanline edges: 207 deg of arc in 3504 s of daylight
    u = np.deg2rad(np.linspace(-103.5, 103.5, N_SCAN + 1))  # (N_SCAN+1,)
    t = (u / (2 * np.pi)) * ORBIT_S  # seconds from the ascending node
    node = np.deg2rad(node_lon_deg) - 2 * np.pi * t / 86400.0  # Earth turns under the orbit
    # position on the orbit (unit vectors, Earth-fixed) and the across-track direction
    cos_u, sin_u = np.cos(u), np.sin(u)
    p = np.stack(
        [
            np.cos(node) * cos_u - np.sin(node) * sin_u * np.cos(INCLINATION),
            np.sin(node) * cos_u + np.cos(node) * sin_u * np.cos(INCLINATION),
            sin_u * np.sin(INCLINATION),
        ],
        axis=-1,
    )  # (N_SCAN+1, 3)
    v = np.stack(
        [
            -np.cos(node) * sin_u - np.sin(node) * cos_u * np.cos(INCLINATION),
            -np.sin(node) * sin_u + np.cos(node) * cos_u * np.cos(INCLINATION),
            cos_u * np.sin(INCLINATION),
        ],
        axis=-1,
    )
    across = np.cross(v, p)  # points to the east of the ascending track
    a = np.linspace(-HALF_SWATH, HALF_SWATH, N_GROUND + 1)  # (N_GROUND+1,)
    mesh = (
        p[:, None, :] * np.cos(a)[None, :, None] + across[:, None, :] * np.sin(a)[None, :, None]
    )  # (N_SCAN+1, N_GROUND+1, 3)
    lat = np.rad2deg(np.arcsin(np.clip(mesh[..., 2], -1, 1)))
    lon = np.rad2deg(np.arctan2(mesh[..., 1], mesh[..., 0]))
    # corners SW, SE, NE, NW of each pixel -> (N_SCAN, N_GROUND, 4)
    lat_b = np.stack([lat[:-1, :-1], lat[:-1, 1:], lat[1:, 1:], lat[1:, :-1]], axis=-1)
    lon_b = np.stack([lon[:-1, :-1], lon[:-1, 1:], lon[1:, 1:], lon[1:, :-1]], axis=-1)
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 15.0, N_SCAN * N_GROUND)  # umol m-2-like
    return (
        lat_b.reshape(-1, 4).astype(np.float32),
        lon_b.reshape(-1, 4).astype(np.float32),
        values.astype(np.float32),
    )


def shapely_reference(grid: Grid, lat_b: NDArray, lon_b: NDArray) -> NDArray[np.float64]:
    """Summed weights (n_lat, n_lon) from shapely: per pixel, polygon ∩ candidate cell boxes."""
    weight = np.zeros(grid.shape)
    cell_area = grid.cell_area_deg2()
    for k in range(lat_b.shape[0]):
        poly = shapely.Polygon(np.column_stack([lon_b[k], lat_b[k]]).astype(np.float64))
        i0 = max(np.searchsorted(grid.lat_edges, lat_b[k].min(), "right") - 1, 0)
        i1 = min(np.searchsorted(grid.lat_edges, lat_b[k].max(), "left"), grid.shape[0])
        j0 = max(np.searchsorted(grid.lon_edges, lon_b[k].min(), "right") - 1, 0)
        j1 = min(np.searchsorted(grid.lon_edges, lon_b[k].max(), "left"), grid.shape[1])
        ii, jj = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1), indexing="ij")
        boxes = shapely.box(
            grid.lon_edges[jj], grid.lat_edges[ii], grid.lon_edges[jj + 1], grid.lat_edges[ii + 1]
        )
        weight[ii, jj] += shapely.area(shapely.intersection(poly, boxes)) / cell_area[ii, jj]
    return weight


def best_of(repeats: int, func: object) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-pixels", type=int, default=2000)
    args = parser.parse_args()

    grid = create_target_grid(EUROPE, 0.1)
    regridder = AreaWeightedRegridder(grid)
    lat_b, lon_b, values = orbit_corners()
    n = values.size
    box = grid.bbox
    inside = (
        (lat_b.min(1) >= box.lat_min)
        & (lat_b.max(1) <= box.lat_max)
        & (lon_b.min(1) >= box.lon_min)
        & (lon_b.max(1) <= box.lon_max)
    )
    in_lat, in_lon, in_val = lat_b[inside], lon_b[inside], values[inside]
    print(
        f"grid: 0.1 deg Europe {grid.shape[0]} x {grid.shape[1]} cells; numba threads = "
        f"{os.environ['NUMBA_NUM_THREADS']}"
    )
    print(f"swath: {N_GROUND} x {N_SCAN} = {n:,} pixels; {inside.sum():,} lie inside the box")

    start = time.perf_counter()
    regridder.regrid(values[:10], lat_b[:10], lon_b[:10])
    print(f"first call (numba compile or cache load): {time.perf_counter() - start:.2f} s")

    t_full = best_of(args.repeats, lambda: regridder.regrid(values, lat_b, lon_b))
    t_in = best_of(args.repeats, lambda: regridder.regrid(in_val, in_lat, in_lon))
    full = regridder.regrid(values, lat_b, lon_b)
    covered = int((full.weight > 0).sum())
    print(
        f"full orbit:    {t_full * 1e3:8.1f} ms  {n / t_full / 1e6:6.2f} M pixels/s "
        f"({covered:,} cells covered)"
    )
    print(f"inside swath:  {t_in * 1e3:8.1f} ms  {in_val.size / t_in / 1e6:6.2f} M pixels/s")

    rng = np.random.default_rng(1)
    pick = rng.choice(in_val.size, size=min(args.reference_pixels, in_val.size), replace=False)
    sub_lat, sub_lon, sub_val = in_lat[pick], in_lon[pick], in_val[pick]
    start = time.perf_counter()
    ref = shapely_reference(grid, sub_lat, sub_lon)
    t_ref = time.perf_counter() - start
    t_sub = best_of(args.repeats, lambda: regridder.regrid(sub_val, sub_lat, sub_lon))
    ours = regridder.regrid(sub_val, sub_lat, sub_lon).weight
    rate_ref = pick.size / t_ref
    rate_in = in_val.size / t_in
    print(
        f"shapely ref:   {t_ref * 1e3:8.1f} ms  {rate_ref / 1e3:6.2f} k pixels/s "
        f"({pick.size} inside pixels)"
    )
    print(
        f"numba, same {pick.size} pixels: {t_sub * 1e3:.2f} ms "
        f"({pick.size / t_sub / 1e6:.2f} M pixels/s)"
    )
    print(f"speed ratio numba/shapely (inside-box pixels/s): {rate_in / rate_ref:,.0f}x")
    print(
        f"max |weight difference| vs shapely on the subsample: "
        f"{np.abs(ours - ref).max():.2e} (weights are cell fractions, ~0.1..1)"
    )


if __name__ == "__main__":
    main()
