"""TROPOMI-like sampling of the simulated truth: orbit geometry, pixels, noise, clouds, QA.

Sits in ``synth`` after the transport and before the writers: for one day it lays a swath of
pixels over the domain and returns an ``L2Swath`` in the product's units (mol m-2).

Geometry (a local tangent plane around the domain centre, km):
- One ascending orbit per day at ``overpass_local_solar_hour`` at the nadir; the track heading
  follows the sun-synchronous inclination (98.7 deg: ~14 deg west of north at 50 N), and the
  footprints are rectangles oriented along it, corners counter-clockwise from south-west.
- Across track, ``ground_pixels`` pixels span ``swath_width_km``; the pixel width grows from
  ``nadir_across_km`` at nadir toward the edges like a scanning instrument (edge positions
  g(u) = (a/c) tan(c u), so the width is a (1 + tan^2)); along track the scanlines are
  ``nadir_along_km`` apart (0.84 s each).
- The nadir offset from the domain centre follows a 16-day repeat pattern up to
  ``max_track_offset_fraction`` of the half swath, so the domain edge is sometimes outside.
- Only scanlines that cover the domain (plus 3 on each side) are written, full width across
  (or, with ``crop_margin_deg``, only the ground pixels within that margin of the domain).

Retrieval: truth (bilinear at the pixel centre; outside the domain it relaxes to the inflow
background over ~30 km) + Gaussian noise with sigma = hypot(noise_relative x truth,
noise_floor); the precision variable holds sigma. Cloud cover above ``cloud_qa_threshold``
multiplies qa_value by 0.74 (and by 0.65 more when very cloudy), inflates the noise and biases
the column low (cloud shielding); a fraction ``failed_retrieval_fraction`` of pixels fails
(fill value, qa 0). Clear pixels get qa 1.0, or 0.9 for a random 8 %.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from no2fusion.config import SatelliteConfig
from no2fusion.grid import Grid
from no2fusion.synth.meteorology import KM_PER_DEG_LAT, KM_PER_DEG_LON_EQ, MetGrid
from no2fusion.synth.transport import bilinear_regular
from no2fusion.synth.writers import L2Swath

INCLINATION_DEG = 98.7
SCANLINE_SECONDS = 0.84
REFERENCE_ORBIT = (dt.date(2020, 3, 3), 12367)  # FORMATS A.1 example file
ORBITS_PER_DAY = 227 / 16
MARGIN_SCANLINES = 3


@dataclass(frozen=True)
class Overpass:
    """Where and when the day's orbit passes the domain."""

    time: np.datetime64  # UTC, ms: nadir at the domain centre's along-track position
    offset_km: float  # nadir offset from the domain centre, across track (+ = east side)
    heading_rad: float  # track azimuth from north (negative = west of north)
    orbit: int


def across_track_edges(n_pixels: int, nadir_km: float, swath_km: float) -> NDArray[np.float64]:
    """(n_pixels + 1,) across-track pixel edges in km from nadir, west to east.

    Width grows like a scanning instrument's: g(u) = (a/c) tan(c u), a = nadir width, with c
    chosen so the edges reach +-swath/2. If the pixels at nadir width already fill the swath,
    the spacing is uniform.
    """
    half_n = n_pixels / 2.0
    half_w = swath_km / 2.0
    u = np.arange(n_pixels + 1, dtype=np.float64) - half_n
    if nadir_km * n_pixels >= swath_km:
        return np.asarray(u * (swath_km / n_pixels), dtype=np.float64)
    lo, hi = 1e-12, (math.pi / 2 - 1e-9) / half_n
    for _ in range(80):  # bisection on c: g(half_n) increases with c
        mid = 0.5 * (lo + hi)
        if nadir_km / mid * math.tan(mid * half_n) > half_w:
            hi = mid
        else:
            lo = mid
    c = 0.5 * (lo + hi)
    return np.asarray(nadir_km / c * np.tan(c * u))


def overpass_for_day(
    day_index: int, date: dt.date, grid: Grid, config: SatelliteConfig, rng: np.random.Generator
) -> Overpass:
    """The orbit seen on ``date`` (``day_index`` counts from the first simulated day)."""
    lat0 = 0.5 * (grid.lat_edges[0] + grid.lat_edges[-1])
    lon0 = 0.5 * (grid.lon_edges[0] + grid.lon_edges[-1])
    half_swath = config.swath_width_km / 2.0
    cycle = ((day_index * 7) % 16 + 0.5) / 8.0 - 1.0  # a permuted 16-day repeat, in [-1, 1)
    offset = config.max_track_offset_fraction * half_swath * cycle + rng.normal(
        0.0, 0.02 * half_swath
    )
    heading = math.asin(
        max(-1.0, min(1.0, math.cos(math.radians(INCLINATION_DEG)) / math.cos(math.radians(lat0))))
    )
    across_east_km = offset * math.cos(heading)
    nadir_lon = lon0 + across_east_km / (KM_PER_DEG_LON_EQ * math.cos(math.radians(lat0)))
    utc_hours = (config.overpass_local_solar_hour - nadir_lon / 15.0) % 24.0
    ms = int(round(utc_hours * 3_600_000))
    time = np.datetime64(date, "ms") + np.timedelta64(ms, "ms")
    orbit = REFERENCE_ORBIT[1] + round((date - REFERENCE_ORBIT[0]).days * ORBITS_PER_DAY)
    return Overpass(
        time=time, offset_km=float(offset), heading_rad=heading, orbit=max(1, int(orbit))
    )


def _origin_step(
    lat: NDArray[np.float64], lon: NDArray[np.float64]
) -> tuple[float, float, float, float]:
    """(lat0, dlat, lon0, dlon) of a regular ascending grid's centres."""
    return float(lat[0]), float(lat[1] - lat[0]), float(lon[0]), float(lon[1] - lon[0])


def _to_lonlat(
    x: NDArray[np.float64], y: NDArray[np.float64], lat0: float, lon0: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    lat = lat0 + y / KM_PER_DEG_LAT
    lon = lon0 + x / (KM_PER_DEG_LON_EQ * np.cos(np.deg2rad(lat)))
    return lat, lon


def observe(
    overpass: Overpass,
    grid: Grid,
    truth: NDArray[np.float64],
    met_grid: MetGrid,
    tcc: NDArray[np.floating],
    c_inflow: float,
    config: SatelliteConfig,
    rng: np.random.Generator,
) -> L2Swath:
    """Sample one day's overpass.

    Args:
        truth: (n_lat, n_lon) umol m-2 on ``grid`` at the overpass time.
        tcc: (met n_lat, met n_lon) cloud cover 0-1 at the overpass time on ``met_grid``.
        c_inflow: background column outside the domain, umol m-2.
    """
    lat0 = 0.5 * (grid.lat_edges[0] + grid.lat_edges[-1])
    lon0 = 0.5 * (grid.lon_edges[0] + grid.lon_edges[-1])
    t_hat = np.array(
        [math.sin(overpass.heading_rad), math.cos(overpass.heading_rad)]
    )  # along (x, y)
    c_hat = np.array(
        [math.cos(overpass.heading_rad), -math.sin(overpass.heading_rad)]
    )  # across, eastward
    nadir = overpass.offset_km * c_hat

    # along-track range covering the domain corners
    corner_lat = grid.lat_edges[[0, 0, -1, -1]]
    corner_lon = grid.lon_edges[[0, -1, 0, -1]]
    cx = (corner_lon - lon0) * KM_PER_DEG_LON_EQ * np.cos(np.deg2rad(corner_lat))
    cy = (corner_lat - lat0) * KM_PER_DEG_LAT
    along = (cx - nadir[0]) * t_hat[0] + (cy - nadir[1]) * t_hat[1]
    step = config.nadir_along_km
    first = math.floor(along.min() / step) - MARGIN_SCANLINES
    last = math.ceil(along.max() / step) + MARGIN_SCANLINES
    s_edges = np.arange(first, last + 1) * step  # (n_scan + 1,)
    g_edges = across_track_edges(
        config.ground_pixels, config.nadir_across_km, config.swath_width_km
    )

    def ground(
        s: NDArray[np.float64], g: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        x = nadir[0] + s[:, None] * t_hat[0] + g[None, :] * c_hat[0]
        y = nadir[1] + s[:, None] * t_hat[1] + g[None, :] * c_hat[1]
        return _to_lonlat(x, y, lat0, lon0)

    s_mid = 0.5 * (s_edges[:-1] + s_edges[1:])
    g_mid = 0.5 * (g_edges[:-1] + g_edges[1:])
    lat, lon = ground(s_mid, g_mid)  # (n_scan, n_pixel)
    if config.crop_margin_deg is not None:  # keep the ground pixels near the domain only
        m = config.crop_margin_deg
        near = (
            (lat > grid.lat_edges[0] - m)
            & (lat < grid.lat_edges[-1] + m)
            & (lon > grid.lon_edges[0] - m)
            & (lon < grid.lon_edges[-1] + m)
        ).any(axis=0)
        cols = np.flatnonzero(near)
        lo, hi = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)
        g_edges, g_mid = g_edges[lo : hi + 1], g_mid[lo:hi]
        lat, lon = lat[:, lo:hi], lon[:, lo:hi]
    # corners counter-clockwise from south-west: (s0, g0), (s0, g1), (s1, g1), (s1, g0)
    lat_e, lon_e = ground(s_edges, g_edges)  # (n_scan + 1, n_pixel + 1)
    lat_b = np.stack([lat_e[:-1, :-1], lat_e[:-1, 1:], lat_e[1:, 1:], lat_e[1:, :-1]], axis=-1)
    lon_b = np.stack([lon_e[:-1, :-1], lon_e[:-1, 1:], lon_e[1:, 1:], lon_e[1:, :-1]], axis=-1)

    # truth at the pixel centres, relaxing to the inflow background outside the domain
    value = bilinear_regular(truth, *_origin_step(grid.lat, grid.lon), lat, lon)
    out_lat = np.maximum(grid.lat_edges[0] - lat, 0) + np.maximum(lat - grid.lat_edges[-1], 0)
    out_lon = np.maximum(grid.lon_edges[0] - lon, 0) + np.maximum(lon - grid.lon_edges[-1], 0)
    outside_km = np.hypot(
        out_lat * KM_PER_DEG_LAT, out_lon * KM_PER_DEG_LON_EQ * np.cos(np.deg2rad(lat))
    )
    value = c_inflow + (value - c_inflow) * np.exp(-outside_km / 30.0)
    tcc64 = np.asarray(tcc, dtype=np.float64)
    cloud = np.clip(
        bilinear_regular(tcc64, *_origin_step(met_grid.lat, met_grid.lon), lat, lon), 0.0, 1.0
    )

    shape = lat.shape
    noise = rng.standard_normal(shape)
    degraded = rng.random(shape) < 0.08
    failed = rng.random(shape) < config.failed_retrieval_fraction
    cloudy = cloud > config.cloud_qa_threshold
    very_cloudy = cloud > config.cloud_qa_threshold + 0.3
    sigma = np.hypot(config.noise_relative * value, config.noise_floor_umol_m2) * np.where(
        cloudy, 1.6, 1.0
    )
    shielding = np.where(cloudy, 1.0 - 0.4 * (cloud - config.cloud_qa_threshold), 1.0)
    observed = value * shielding + sigma * noise
    qa = (
        np.where(degraded, 0.9, 1.0)
        * np.where(cloudy, 0.74, 1.0)
        * np.where(very_cloudy, 0.65, 1.0)
    )
    qa = np.where(failed, 0.0, qa)
    observed = np.where(failed, np.nan, observed)
    sigma = np.where(failed, np.nan, sigma)

    times = overpass.time + np.rint(s_mid / (step / SCANLINE_SECONDS) * 1000.0).astype(
        np.int64
    ).astype("timedelta64[ms]")
    return L2Swath(
        latitude=lat.astype(np.float32),
        longitude=lon.astype(np.float32),
        latitude_bounds=lat_b.astype(np.float32),
        longitude_bounds=lon_b.astype(np.float32),
        no2=(observed * 1e-6).astype(np.float32),
        no2_precision=(sigma * 1e-6).astype(np.float32),
        qa_value=qa,
        scanline_time=times.astype("datetime64[ms]"),
        orbit=overpass.orbit,
    )
