"""Emission map of the simulated world: cities, roads, industrial point sources, background.

Sits at the start of ``synth`` (emissions -> transport -> satellite -> writers). The map lives on
the target grid, in umol m-2 s-1 of NO2 column source, split by sector so each sector gets its
own weekly, seasonal and diurnal cycle. The region classes of ``vocab.REGION_CLASSES`` are
derived from the map.

Scale: a city core emits ~0.05 umol m-2 s-1 (x ``city_strength``). With a 5 m s-1 wind across a
~30 km city that gives columns of ~100-300 umol m-2; the background emission (``background`` x
``BACKGROUND_UMOL_M2_S``) with a 4-12 h lifetime plus the inflow gives ~10-40 umol m-2.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from no2fusion.config import EmissionsConfig
from no2fusion.grid import Grid
from no2fusion.vocab import REGION_CODES

CITY_CORE_UMOL_M2_S = 0.05  # city-core emission at city_strength = 1
ROAD_UMOL_M2_S = 0.006  # emission of a road cell (before the traffic cycle)
INDUSTRY_UMOL_M2_S = (0.04, 0.12)  # range of industrial point-source strength (one cell)
BACKGROUND_UMOL_M2_S = 0.012  # diffuse emission at ``background`` = 1


@dataclass(frozen=True)
class EmissionMap:
    """Annual-mean emissions per sector on the target grid, (n_lat, n_lon) umol m-2 s-1."""

    traffic: NDArray[np.float64]  # cities + roads: weekly and rush-hour cycles
    industry: NDArray[np.float64]  # point sources: nearly flat in time
    background: NDArray[np.float64]  # diffuse (soils, shipping, residential)
    region: NDArray[np.int8]  # vocab.REGION_CODES per cell

    @property
    def total(self) -> NDArray[np.float64]:
        """Annual-mean total emission, (n_lat, n_lon) umol m-2 s-1."""
        return self.traffic + self.industry + self.background


def _cell_xy_km(grid: Grid) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cell-centre coordinates in km from the domain centre, each (n_lat, n_lon)."""
    lat0 = 0.5 * (grid.lat_edges[0] + grid.lat_edges[-1])
    lon0 = 0.5 * (grid.lon_edges[0] + grid.lon_edges[-1])
    lon2, lat2 = np.meshgrid(grid.lon, grid.lat)
    x = (lon2 - lon0) * 111.32 * np.cos(np.deg2rad(lat2))
    y = (lat2 - lat0) * 110.57
    return x, y


def _segment_distance(
    x: NDArray[np.float64], y: NDArray[np.float64], a: NDArray[np.float64], b: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Distance (km) of every point to the segment a-b (points in km)."""
    ab = b - a
    t = ((x - a[0]) * ab[0] + (y - a[1]) * ab[1]) / max(float(ab @ ab), 1e-9)
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(x - (a[0] + t * ab[0]), y - (a[1] + t * ab[1]))


def build_emissions(grid: Grid, config: EmissionsConfig, rng: np.random.Generator) -> EmissionMap:
    """Draw a seeded emission map on ``grid``.

    Cities: Gaussian cores (sigma 6-15 km) placed away from the edges; roads: lines joining
    cities to each other or to random edge points (width ~3 km); industrial sources: single
    cells; background: ``config.background`` x ``BACKGROUND_UMOL_M2_S`` everywhere.
    """
    x, y = _cell_xy_km(grid)
    half_x, half_y = float(np.abs(x).max()), float(np.abs(y).max())
    cell_km = float(np.sqrt(grid.cell_area_m2().mean()) / 1000.0)
    traffic = np.zeros_like(x)
    industry = np.zeros_like(x)
    city_only = np.zeros_like(x)

    cities = np.column_stack(
        [
            rng.uniform(-0.7, 0.7, config.n_cities) * half_x,
            rng.uniform(-0.7, 0.7, config.n_cities) * half_y,
        ]
    )
    for cx, cy in cities:
        sigma = max(rng.uniform(6.0, 15.0), 0.7 * cell_km)
        strength = CITY_CORE_UMOL_M2_S * config.city_strength * rng.uniform(0.6, 1.4)
        city_only += strength * np.exp(-0.5 * ((x - cx) ** 2 + (y - cy) ** 2) / sigma**2)
    traffic += city_only

    for _ in range(config.n_roads):
        if len(cities) >= 2 and rng.random() < 0.6:
            i, j = rng.choice(len(cities), size=2, replace=False)
            a, b = cities[i], cities[j]
        else:
            a = (
                cities[rng.integers(len(cities))]
                if len(cities)
                else rng.uniform(-1, 1, 2) * [half_x, half_y]
            )
            angle = rng.uniform(0, 2 * np.pi)
            b = a + 2.5 * max(half_x, half_y) * np.array([np.cos(angle), np.sin(angle)])
        distance = _segment_distance(x, y, np.asarray(a, float), np.asarray(b, float))
        width = max(3.0, 0.5 * cell_km)
        traffic += ROAD_UMOL_M2_S * np.exp(-0.5 * (distance / width) ** 2)

    n_lat, n_lon = x.shape
    for _ in range(config.n_industrial):
        i = int(rng.integers(max(1, n_lat // 10), max(2, n_lat - n_lat // 10)))
        j = int(rng.integers(max(1, n_lon // 10), max(2, n_lon - n_lon // 10)))
        industry[min(i, n_lat - 1), min(j, n_lon - 1)] += rng.uniform(*INDUSTRY_UMOL_M2_S)

    background = np.full_like(x, config.background * BACKGROUND_UMOL_M2_S)
    region = classify_regions(city_only, traffic, industry, background)
    return EmissionMap(traffic=traffic, industry=industry, background=background, region=region)


def classify_regions(
    city: NDArray[np.float64],
    traffic: NDArray[np.float64],
    industry: NDArray[np.float64],
    background: NDArray[np.float64],
) -> NDArray[np.int8]:
    """Region class per cell from the emission map (codes of ``vocab.REGION_CODES``).

    industrial: a point source dominates the cell; urban: city emission >= 40 % of the
    city-core scale; suburban: >= 8 %; rural: anthropogenic (city + road) emission at least
    15 % of the background; background: the rest.
    """
    region = np.full(city.shape, REGION_CODES["background"], dtype=np.int8)
    anthropogenic = traffic
    region[anthropogenic >= 0.15 * background] = REGION_CODES["rural"]
    region[city >= 0.08 * CITY_CORE_UMOL_M2_S] = REGION_CODES["suburban"]
    region[city >= 0.40 * CITY_CORE_UMOL_M2_S] = REGION_CODES["urban"]
    region[industry > traffic + background] = REGION_CODES["industrial"]
    return region


def time_factors(
    when: dt.datetime, local_hour: float, config: EmissionsConfig
) -> tuple[float, float, float]:
    """Multipliers (traffic, industry, background) of the annual-mean map at ``when``.

    Seasonal: cosine with ``winter_factor`` at mid-January (heating, cold starts); weekly:
    ``weekend_factor`` on Sat/Sun for traffic (industry sees half of that drop); diurnal:
    traffic has morning and evening rush hours and a night low, industry is flat, background
    follows a weak daytime bump. Each diurnal profile averages to 1 over the day.
    """
    doy = when.timetuple().tm_yday
    seasonal = 1.0 + (config.winter_factor - 1.0) * np.cos(2 * np.pi * (doy - 15) / 365.25)
    weekend = when.weekday() >= 5
    week_traffic = config.weekend_factor if weekend else 1.0
    week_industry = 0.5 * (1.0 + config.weekend_factor) if weekend else 1.0
    # rush hours at 8 h and 17 h local; divided by the daily mean (a Gaussian integrates to
    # sigma * sqrt(2 pi)) so the profile averages to 1
    h = local_hour % 24.0
    rush = np.exp(-0.5 * ((h - 8.0) / 1.5) ** 2) + np.exp(-0.5 * ((h - 17.0) / 2.0) ** 2)
    diurnal_traffic = (0.35 + rush) / (0.35 + (1.5 + 2.0) * np.sqrt(2 * np.pi) / 24.0)
    diurnal_background = 1.0 + 0.2 * np.cos(2 * np.pi * (h - 13.0) / 24.0)
    return (
        float(seasonal * week_traffic * diurnal_traffic),
        float(seasonal**0.5 * week_industry),
        float(seasonal * diurnal_background),
    )
