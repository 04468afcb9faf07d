"""Tiling geometry and blending: a model trained on ``tile x tile`` windows, over any domain.

Sits in ``evaluation/`` under ``inference.py`` (the one tiled predictor, used by evaluation,
``no2fusion predict`` and the report). Pure numpy: where the windows go (``tile_origins``,
``overlapping_tiles``) and how their predictions are blended (``BlendedField``); it knows
nothing about models, cubes or checkpoints.

Windows overlap by ``overlap`` cells and are blended with a separable raised-cosine window:
along each axis the weight rises as ``0.5 - 0.5 cos(pi (i + 1/2) / overlap)`` over the first
``overlap`` cells, is 1 in the middle and falls symmetrically. Two neighbours overlapping by
exactly ``overlap`` cells have complementary ramps (they sum to 1), and the blended value is
``sum_k w_k pred_k / sum_k w_k`` everywhere, so a model that agrees with itself across tiles is
reproduced exactly, and one that does not changes smoothly over the overlap instead of jumping at
a seam. Weights are strictly positive, so the domain border (covered by one tile) is exact too.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from no2fusion.data.tiles import Tile
from no2fusion.errors import ConfigError


def default_overlap(tile_size: int) -> int:
    """Cells shared by neighbouring tiles when not given: a quarter tile (16 of 64)."""
    return tile_size // 4


def tile_origins(n: int, size: int, overlap: int) -> list[int]:
    """Origins of windows of ``size`` covering ``0..n-1`` with at least ``overlap`` shared cells.

    The stride is ``size - overlap``; the last window is flush with the end (so it may overlap
    its neighbour by more). Raises ``ConfigError`` if ``size > n`` or the overlap is invalid.
    """
    if size > n:
        raise ConfigError(f"tile size {size} is larger than the domain axis of {n} cells")
    if not 0 <= overlap <= size // 2:
        raise ConfigError(f"tile overlap must be in 0..{size // 2} (half the tile), got {overlap}")
    stride = size - overlap
    origins = list(range(0, n - size + 1, stride))
    if origins[-1] != n - size:
        origins.append(n - size)
    return origins


def blend_window(size: int, overlap: int) -> NDArray[np.float64]:
    """1-D blending weights (size,): raised-cosine ramps of ``overlap`` cells at both ends, 1
    between; strictly positive."""
    weights = np.ones(size, dtype=np.float64)
    if overlap > 0:
        ramp = 0.5 - 0.5 * np.cos(math.pi * (np.arange(overlap) + 0.5) / overlap)  # (overlap,)
        weights[:overlap] = ramp
        weights[size - overlap :] = np.minimum(weights[size - overlap :], ramp[::-1])
    return weights


def overlapping_tiles(shape: tuple[int, int], size: int, overlap: int) -> list[Tile]:
    """Row-major ``size x size`` tiles covering a (n_lat, n_lon) domain with ``overlap``."""
    return [
        Tile(row, col, size)
        for row in tile_origins(shape[0], size, overlap)
        for col in tile_origins(shape[1], size, overlap)
    ]


class BlendedField:
    """Accumulates tile predictions over one (n_lat, n_lon) domain with the raised-cosine
    window of ``blend_window`` and returns ``sum_k w_k pred_k / sum_k w_k`` per cell."""

    def __init__(self, shape: tuple[int, int], tile_size: int, overlap: int) -> None:
        window = blend_window(tile_size, overlap)
        self.tile_size = tile_size
        self._weight = np.outer(window, window)  # (s, s)
        self._total = np.zeros(shape, dtype=np.float64)
        self._weight_sum = np.zeros(shape, dtype=np.float64)

    def add(self, tile: Tile, values: NDArray[np.floating]) -> None:
        """Add one tile's prediction (s, s)."""
        expected = (self.tile_size, self.tile_size)
        if values.shape != expected:
            raise ValueError(f"model returned a {values.shape} tile, expected {expected}")
        self._total[tile.rows, tile.cols] += self._weight * values
        self._weight_sum[tile.rows, tile.cols] += self._weight

    def result(self) -> NDArray[np.float32]:
        """The blended (n_lat, n_lon) field; every cell must be covered by a tile."""
        if not np.all(self._weight_sum > 0):
            raise ValueError("the tiles do not cover the whole domain")
        return (self._total / self._weight_sum).astype(np.float32)
