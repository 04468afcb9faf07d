"""The source-aware and local inputs of a sample: composite, climatology, calendar, met block.

Sits in ``data/`` beside ``dataset.py``, which calls these pure numpy functions while it builds a
sample (DESIGN §2). Everything here is causal: the trailing composite uses only the input day
and the days before it; the climatology is fitted on training days only (``fit_climatology``).

- **Trailing composite**: the mean of the valid observations of the ``composite_days`` calendar
  days ending at the input day, and the fraction of those days with a valid observation. Where
  the sources are shows through clouds that hide them on any one day.
- **Climatology**: the per-cell mean of the valid training observations (umol m-2); cells never
  observed in training take the median of all valid training values.
- **Calendar**: a one-hot weekday of the target day (Monday = 0). Traffic emissions follow the
  week; the 13 seed features carry the day of the year but not the day of the week.
- **Met block**: the meteorology of a sample is the block of met cells around its tile (plus
  ``margin`` cells each side, indices clamped at the edge of the met grid, so the block's edge
  values stand in beyond it) and an affine map from tile cell indices to block indices:
  ``i_block = a_i + b_i * row``, ``j_block = a_j + b_j * col`` (``MetBlock.affine``, float32
  (a_i, b_i, a_j, b_j)). The model samples the block at its token centres and along
  back-trajectories with it.
- **Wind in cells per hour**: the 10 m wind converted to target-grid cells per hour (rows are
  northward, columns eastward) on the met block, the displacement the back-trajectories take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from no2fusion.data.tiles import Tile
from no2fusion.grid import EARTH_RADIUS_M

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
WEEKDAYS = 7
METRES_PER_DEGREE = math.pi * EARTH_RADIUS_M / 180.0  # along a meridian, m per degree
SECONDS_PER_HOUR = 3600.0


def fit_climatology(training_fields: NDArray[np.floating]) -> F32:
    """Per-cell mean of the finite values of TRAINING fields (N, lat, lon) umol m-2 -> (lat, lon)
    float32; cells without a finite value get the median of all finite values.

    Raises ``ValueError`` when no value is finite.
    """
    fields = np.asarray(training_fields, dtype=np.float64)
    finite = np.isfinite(fields)
    if not finite.any():
        raise ValueError("climatology: the training fields have no finite value")
    count = finite.sum(axis=0)
    total = np.where(finite, fields, 0.0).sum(axis=0)
    fallback = float(np.median(fields[finite]))
    return np.where(count > 0, total / np.maximum(count, 1), fallback).astype(np.float32)


def trailing_composite(fields: NDArray[np.floating]) -> tuple[F32, F32]:
    """Mean of the finite values over the leading axis of (W, lat, lon) and the fraction of the
    W fields with a finite value: ((lat, lon) NaN where none, (lat, lon) in 0..1)."""
    values = np.asarray(fields, dtype=np.float32)
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, np.float32(0.0)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.float32(np.nan))
    return mean.astype(np.float32), (count / max(values.shape[0], 1)).astype(np.float32)


def weekday_of(day: np.datetime64 | NDArray[np.datetime64]) -> int:
    """The weekday of ``day``, Monday = 0."""
    days_since_epoch = int(np.asarray(day, dtype="datetime64[D]").astype(np.int64))
    return (days_since_epoch + 3) % WEEKDAYS  # 1970-01-01 was a Thursday


def weekday_one_hot(day: np.datetime64) -> F32:
    """(7,) float32 one-hot of the weekday of ``day`` (Monday = 0)."""
    out = np.zeros(WEEKDAYS, dtype=np.float32)
    out[weekday_of(day)] = 1.0
    return out


@dataclass(frozen=True)
class MetBlock:
    """The met cells of one tile's sample: ``lat_index`` (mh,) and ``lon_index`` (mw,) into the
    cube's met grid (clamped at its edges) and ``affine`` (a_i, b_i, a_j, b_j), float32, from
    tile cell indices to block indices."""

    lat_index: NDArray[np.int64]
    lon_index: NDArray[np.int64]
    affine: F32


def _axis_block(
    centres: F64, met: F64, start: int, size: int, margin: int, length: int
) -> tuple[NDArray[np.int64], float, float]:
    """Indices (length,) of the met cells of one axis for the cells ``start..start+size-1`` and
    the affine (a, b) from tile cell index to block index (regular, ascending axes)."""
    step = float(met[1] - met[0]) if met.size > 1 else 1.0
    first = centres[start]
    virtual_start = int(math.floor((first - met[0]) / step)) - margin
    index = np.clip(virtual_start + np.arange(length), 0, met.size - 1).astype(np.int64)
    cell = float(centres[1] - centres[0]) if centres.size > 1 else step
    a = (first - (met[0] + virtual_start * step)) / step
    return index, a, cell / step


def block_length(tile_size: int, cell_deg: float, met_deg: float, margin: int) -> int:
    """Met cells along one axis of a block: the tile's extent plus one cell and ``margin`` each
    side (the same for every tile, so samples stack)."""
    return int(math.ceil(tile_size * cell_deg / met_deg)) + 1 + 2 * margin


def met_block(
    tile: Tile,
    lat: F64,
    lon: F64,
    met_lat: F64,
    met_lon: F64,
    margin: int,
) -> MetBlock:
    """The met block of ``tile`` on a target grid with ascending cell centres ``lat``/``lon``
    and an ascending met grid ``met_lat``/``met_lon`` (degrees)."""
    met_lat_step = float(met_lat[1] - met_lat[0]) if met_lat.size > 1 else 1.0
    met_lon_step = float(met_lon[1] - met_lon[0]) if met_lon.size > 1 else 1.0
    cell_lat = float(lat[1] - lat[0]) if lat.size > 1 else met_lat_step
    cell_lon = float(lon[1] - lon[0]) if lon.size > 1 else met_lon_step
    n_i = block_length(tile.size, cell_lat, met_lat_step, margin)
    n_j = block_length(tile.size, cell_lon, met_lon_step, margin)
    lat_index, a_i, b_i = _axis_block(lat, met_lat, tile.row, tile.size, margin, n_i)
    lon_index, a_j, b_j = _axis_block(lon, met_lon, tile.col, tile.size, margin, n_j)
    return MetBlock(lat_index, lon_index, np.array([a_i, b_i, a_j, b_j], dtype=np.float32))


def wind_cells_per_hour(
    u: NDArray[np.floating],
    v: NDArray[np.floating],
    met_lat: F64,
    cell_lat_deg: float,
    cell_lon_deg: float,
) -> F32:
    """Displacement per hour in target-grid cells of the wind ``u`` (east), ``v`` (north) m s-1
    of shape (..., mh, mw) on met rows at latitudes ``met_lat`` (mh,) degrees:
    (..., 2, mh, mw) float32 with [0] = rows (north) and [1] = columns (east) per hour."""
    metres_north = cell_lat_deg * METRES_PER_DEGREE  # height of a target cell, m
    metres_east = cell_lon_deg * METRES_PER_DEGREE * np.cos(np.deg2rad(met_lat))  # (mh,)
    rows = np.asarray(v, dtype=np.float64) * SECONDS_PER_HOUR / metres_north
    cols = np.asarray(u, dtype=np.float64) * SECONDS_PER_HOUR / metres_east[:, None]
    return np.stack([rows, cols], axis=-3).astype(np.float32)
