"""Tiles of the target grid and the area weights that average meteorology over a tile.

Sits in ``data/`` beside ``dataset.py``: a sample is one day on one ``tile x tile`` window of
the target grid (DESIGN §2). Training draws random windows; evaluation covers the domain
deterministically. Meteorology lives on the coarser ERA5 grid; its tile mean weights each met
cell by the spherical area of its intersection with the tile, which separates into a latitude
factor ``sin(phi_2) - sin(phi_1)`` and a longitude factor ``lambda_2 - lambda_1`` (radians).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from no2fusion.errors import ConfigError


@dataclass(frozen=True)
class Tile:
    """A ``size x size`` window whose first cell is (row, col) of the target grid."""

    row: int
    col: int
    size: int

    @property
    def rows(self) -> slice:
        return slice(self.row, self.row + self.size)

    @property
    def cols(self) -> slice:
        return slice(self.col, self.col + self.size)


def check_tile_fits(tile_size: int, shape: tuple[int, int], where: str = "cube") -> None:
    """Raise ``ConfigError`` when a ``tile_size`` tile does not fit a (n_lat, n_lon) domain."""
    if tile_size > min(shape):
        raise ConfigError(
            f"data.tile_size {tile_size} is larger than the domain of {where} "
            f"({shape[0]} x {shape[1]} cells)"
        )


def covering_origins(n: int, size: int) -> list[int]:
    """Origins of tiles of ``size`` covering ``0..n-1`` on one axis: a stride of ``size`` and a
    last tile flush with the end (it overlaps its neighbour when ``size`` does not divide n)."""
    if size > n:
        raise ConfigError(f"tile size {size} is larger than the axis of {n} cells")
    origins = list(range(0, n - size + 1, size))
    if origins[-1] != n - size:
        origins.append(n - size)
    return origins


def covering_tiles(shape: tuple[int, int], size: int) -> list[Tile]:
    """Deterministic tiles covering a (n_lat, n_lon) domain, row-major."""
    return [
        Tile(row, col, size)
        for row in covering_origins(shape[0], size)
        for col in covering_origins(shape[1], size)
    ]


def random_tile(shape: tuple[int, int], size: int, rng: np.random.Generator) -> Tile:
    """A uniformly random tile origin inside a (n_lat, n_lon) domain."""
    row = int(rng.integers(0, shape[0] - size + 1))
    col = int(rng.integers(0, shape[1] - size + 1))
    return Tile(row, col, size)


def overlap_lengths(
    lo: float, hi: float, edges: NDArray[np.float64], transform: str = "identity"
) -> NDArray[np.float64]:
    """Length of the overlap of [lo, hi] with each cell [edges[i], edges[i+1]] (n_cells,).

    ``transform="sin"`` measures latitude overlaps in sin(latitude) (degrees in), which is
    proportional to the band's area on the sphere; ``"identity"`` measures in degrees.
    """
    low = np.maximum(edges[:-1], lo)
    high = np.minimum(edges[1:], hi)
    if transform == "sin":
        length = np.sin(np.deg2rad(high)) - np.sin(np.deg2rad(low))
    else:
        length = high - low
    return np.where(high > low, length, 0.0)


@dataclass(frozen=True)
class MetWeights:
    """Separable area weights of the met cells for one tile: ``lat_w`` over met_lat[lat_slice]
    and ``lon_w`` over met_lon[lon_slice], normalized so that the outer product sums to 1."""

    lat_slice: slice
    lon_slice: slice
    lat_w: NDArray[np.float64]
    lon_w: NDArray[np.float64]


def met_weights(
    tile: Tile,
    lat_edges: NDArray[np.float64],
    lon_edges: NDArray[np.float64],
    met_lat_edges: NDArray[np.float64],
    met_lon_edges: NDArray[np.float64],
) -> MetWeights:
    """Area weights of every met cell overlapping ``tile`` (edges in degrees, ascending).

    Raises ``ConfigError`` when the met grid does not overlap the tile at all.
    """
    lat_lo, lat_hi = lat_edges[tile.row], lat_edges[tile.row + tile.size]
    lon_lo, lon_hi = lon_edges[tile.col], lon_edges[tile.col + tile.size]
    lat_w = overlap_lengths(lat_lo, lat_hi, met_lat_edges, "sin")  # (n_met_lat,)
    lon_w = overlap_lengths(lon_lo, lon_hi, met_lon_edges)  # (n_met_lon,)
    if lat_w.sum() <= 0 or lon_w.sum() <= 0:
        raise ConfigError(
            f"the meteorology grid does not overlap the tile at lat {lat_lo:g}..{lat_hi:g}, "
            f"lon {lon_lo:g}..{lon_hi:g}"
        )
    i = np.flatnonzero(lat_w > 0)
    j = np.flatnonzero(lon_w > 0)
    lat_slice, lon_slice = slice(int(i[0]), int(i[-1]) + 1), slice(int(j[0]), int(j[-1]) + 1)
    return MetWeights(
        lat_slice,
        lon_slice,
        lat_w[lat_slice] / lat_w.sum(),
        lon_w[lon_slice] / lon_w.sum(),
    )
