"""Tiled inference: a model trained on ``tile x tile`` windows, run over a domain of any size.

Sits in ``evaluation/`` (used by ``evaluation/predict.py`` and ``no2fusion predict``). Pure
numpy/torch: the model is any callable ``(sat (B, C, s, s), aux (B, T, F)) -> (B, s, s)`` (a
tuple output is taken at index 0, so the project's models plug in directly), and the inputs of a
window come from a callable too, so this module knows nothing about cubes or checkpoints.

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
from collections.abc import Callable, Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from no2fusion.data.tiles import Tile
from no2fusion.errors import ConfigError

TileModel = Callable[[Tensor, Tensor], "Tensor | tuple[Tensor, ...]"]
TileInputs = Callable[[Tile], tuple[Tensor, Tensor]]


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


def _as_prediction(output: Tensor | tuple[Tensor, ...]) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def tiled_inference(
    model: TileModel,
    inputs: TileInputs,
    shape: tuple[int, int],
    *,
    tile_size: int,
    overlap: int,
    batch_size: int = 16,
    tiles: Sequence[Tile] | None = None,
) -> NDArray[np.float32]:
    """Blend the model's predictions over overlapping tiles into one (n_lat, n_lon) field.

    Args:
        model: ``(sat (B, C, s, s), aux (B, T, F)) -> (B, s, s)`` (or a tuple led by it), in
            whatever units the caller wants back; called under ``torch.inference_mode``.
        inputs: ``tile -> (sat (C, s, s), aux (T, F))`` for each tile.
        shape: (n_lat, n_lon) of the domain.
        tile_size: ``s``, the window the model was trained on.
        overlap: cells shared by neighbouring tiles (0..s/2); 0 gives hard seams.
        batch_size: tiles per forward pass.
        tiles: override the tiling (default ``overlapping_tiles(shape, s, overlap)``).

    Returns:
        (n_lat, n_lon) float32: ``sum_k w_k pred_k / sum_k w_k`` per cell.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    tiles = list(tiles) if tiles is not None else overlapping_tiles(shape, tile_size, overlap)
    window = blend_window(tile_size, overlap)
    weight_2d = np.outer(window, window)  # (s, s)
    total = np.zeros(shape, dtype=np.float64)
    weight_sum = np.zeros(shape, dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(tiles), batch_size):
            batch = tiles[start : start + batch_size]
            pairs = [inputs(tile) for tile in batch]
            sat = torch.stack([pair[0] for pair in pairs])  # (B, C, s, s)
            aux = torch.stack([pair[1] for pair in pairs])  # (B, T, F)
            pred = _as_prediction(model(sat, aux)).float().cpu().numpy()  # (B, s, s)
            if pred.shape != (len(batch), tile_size, tile_size):
                raise ValueError(
                    f"model returned {pred.shape}, expected {(len(batch), tile_size, tile_size)}"
                )
            for tile, values in zip(batch, pred, strict=True):
                total[tile.rows, tile.cols] += weight_2d * values
                weight_sum[tile.rows, tile.cols] += weight_2d
    if not np.all(weight_sum > 0):
        raise ValueError("the tiles do not cover the whole domain")
    return (total / weight_sum).astype(np.float32)


def predict_field(
    model: TileModel,
    sat: Tensor,
    aux: Tensor | Callable[[Tile], Tensor],
    *,
    tile_size: int,
    overlap: int,
    batch_size: int = 16,
) -> NDArray[np.float32]:
    """Tiled prediction over a whole satellite field ``sat`` (C, H, W) -> (H, W).

    ``aux`` is one (T, F) tensor shared by every tile, or ``tile -> (T, F)`` (e.g. meteorology
    averaged over each tile, as in training).
    """
    if sat.ndim != 3:
        raise ValueError(f"sat must be (C, H, W), got {tuple(sat.shape)}")

    def inputs(tile: Tile) -> tuple[Tensor, Tensor]:
        tile_aux = aux(tile) if callable(aux) else aux
        return sat[:, tile.rows, tile.cols], tile_aux

    shape = (int(sat.shape[1]), int(sat.shape[2]))
    return tiled_inference(
        model, inputs, shape, tile_size=tile_size, overlap=overlap, batch_size=batch_size
    )
