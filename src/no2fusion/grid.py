"""Target grid: a regular lat/lon grid with float64 edges, centres and cell areas.

Sits beside every layer (after ``io/`` in the flow; ``io`` does not need it). The regridder,
the cube, area-weighted tile means and area-weighted metrics all take a ``Grid``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from no2fusion.errors import ConfigError

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG), m


@dataclass(frozen=True)
class BBox:
    """A lat/lon box in degrees: lat_min < lat_max within [-90, 90]; lon_min < lon_max within
    [-180, 180]. A box that wraps the antimeridian (lon_min > lon_max) is rejected."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat_min < self.lat_max <= 90.0):
            raise ConfigError(
                f"invalid bbox: need -90 <= lat_min < lat_max <= 90, "
                f"got lat_min={self.lat_min}, lat_max={self.lat_max}"
            )
        if self.lon_min > self.lon_max:
            raise ConfigError(
                f"invalid bbox: lon_min={self.lon_min} > lon_max={self.lon_max} "
                "(a box wrapping the antimeridian is not supported; split it in two)"
            )
        if not (-180.0 <= self.lon_min < self.lon_max <= 180.0):
            raise ConfigError(
                f"invalid bbox: need -180 <= lon_min < lon_max <= 180, "
                f"got lon_min={self.lon_min}, lon_max={self.lon_max}"
            )

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> BBox:
        """Build from the seed's dict form with keys lat_min, lat_max, lon_min, lon_max."""
        try:
            return cls(
                float(values["lat_min"]),
                float(values["lat_max"]),
                float(values["lon_min"]),
                float(values["lon_max"]),
            )
        except KeyError as missing:
            raise ConfigError(f"bbox is missing key {missing}") from None


@dataclass(frozen=True)
class Grid:
    """Regular lat/lon grid. Latitude ascends south -> north, longitude west -> east.

    Attributes:
        lat_edges: (n_lat + 1,) degrees north, float64, strictly ascending.
        lon_edges: (n_lon + 1,) degrees east in [-180, 180], float64, strictly ascending.
    """

    lat_edges: NDArray[np.float64]
    lon_edges: NDArray[np.float64]

    def __post_init__(self) -> None:
        for name, edges in (("lat_edges", self.lat_edges), ("lon_edges", self.lon_edges)):
            if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
                raise ConfigError(f"grid {name} must be 1-D and strictly ascending")

    @property
    def shape(self) -> tuple[int, int]:
        """(n_lat, n_lon)."""
        return (self.lat_edges.size - 1, self.lon_edges.size - 1)

    @property
    def lat(self) -> NDArray[np.float64]:
        """Cell-centre latitudes (n_lat,), degrees north."""
        return 0.5 * (self.lat_edges[:-1] + self.lat_edges[1:])

    @property
    def lon(self) -> NDArray[np.float64]:
        """Cell-centre longitudes (n_lon,), degrees east."""
        return 0.5 * (self.lon_edges[:-1] + self.lon_edges[1:])

    @property
    def bbox(self) -> BBox:
        return BBox(
            float(self.lat_edges[0]),
            float(self.lat_edges[-1]),
            float(self.lon_edges[0]),
            float(self.lon_edges[-1]),
        )

    def cell_area_m2(self) -> NDArray[np.float64]:
        """Cell areas on the sphere, (n_lat, n_lon) in m²: R² Δλ (sin φ₂ − sin φ₁)."""
        sin_lat = np.sin(np.deg2rad(self.lat_edges))
        band = EARTH_RADIUS_M**2 * np.diff(sin_lat)  # (n_lat,)
        dlon = np.deg2rad(np.diff(self.lon_edges))  # (n_lon,)
        return band[:, None] * dlon[None, :]

    def cell_area_deg2(self) -> NDArray[np.float64]:
        """Cell areas on the lat/lon plane, (n_lat, n_lon) in degree² (HARP's planar geometry)."""
        return np.diff(self.lat_edges)[:, None] * np.diff(self.lon_edges)[None, :]


def create_target_grid(bbox: BBox | dict[str, Any], resolution: float) -> Grid:
    """Regular grid covering ``bbox`` with square cells of ``resolution`` degrees.

    The number of cells per axis is ``round(extent / resolution)``; the extent must be a whole
    number of cells (to 1e-6 of a cell), so edges land exactly on the bbox.
    """
    box = bbox if isinstance(bbox, BBox) else BBox.from_mapping(bbox)
    if not (resolution > 0 and math.isfinite(resolution)):
        raise ConfigError(f"grid resolution must be a positive number of degrees, got {resolution}")
    edges = []
    for lo, hi, axis in ((box.lat_min, box.lat_max, "lat"), (box.lon_min, box.lon_max, "lon")):
        cells = (hi - lo) / resolution
        n = round(cells)
        if n < 1 or abs(cells - n) > 1e-6:
            raise ConfigError(
                f"{axis} extent {hi - lo:g} deg is not a whole number of {resolution:g} deg cells"
            )
        edges.append(lo + resolution * np.arange(n + 1, dtype=np.float64))
    return Grid(lat_edges=edges[0], lon_edges=edges[1])


def edges_from_centres(
    centres: NDArray[np.float64], single_cell_width: float | None = None
) -> NDArray[np.float64]:
    """Cell edges (n+1,) of a 1-D axis from its ascending centres (n,), degrees.

    Inner edges are the midpoints between neighbouring centres; the outer edges lie half the
    neighbouring spacing beyond the first and last centre (exact for a regular axis). A single
    centre has no spacing to go by: give ``single_cell_width`` (e.g. ERA5's 0.25 deg) or get a
    ``ConfigError`` (store the bounds instead).
    """
    c = np.asarray(centres, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ConfigError(f"cell centres must be a non-empty 1-D axis, got shape {c.shape}")
    if c.size == 1:
        if single_cell_width is None:
            raise ConfigError("cannot infer cell edges from a single cell centre; store bounds")
        half = 0.5 * single_cell_width
        return np.array([c[0] - half, c[0] + half])
    inner = 0.5 * (c[:-1] + c[1:])
    return np.concatenate([[c[0] - (inner[0] - c[0])], inner, [c[-1] + (c[-1] - inner[-1])]])
