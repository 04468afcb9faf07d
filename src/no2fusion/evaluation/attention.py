"""Attention inspection: how selective it is, which hour each place looks at, per test day.

Sits in ``evaluation/`` on top of ``inference.py``. The cross-modal model's weights
(B, layers, heads, tokens, T) come from ``TiledPredictor.forward(..., return_attention=True)``
on the same inputs as every prediction; tokens are the row-major (H / stride) x (W / stride)
grid of satellite tokens. ``entropy_ratio`` feeds the ablation (``ablation.py``);
``attention_maps`` returns the maps ``report/plots.py`` draws with the day's wind.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray

from no2fusion.data.batch import stack_samples
from no2fusion.data.dataset import DayInputs, NO2TileDataset
from no2fusion.data.tiles import Tile
from no2fusion.evaluation.inference import TiledPredictor
from no2fusion.evaluation.metrics import as_array
from no2fusion.evaluation.tiling import overlapping_tiles

_EPS = 1e-12


def attention_entropy(weights: ArrayLike) -> NDArray[np.float64]:
    """Shannon entropy (nats) over the last axis (T) of attention weights that sum to 1."""
    p = as_array(weights)
    return -(p * np.log(np.clip(p, _EPS, None))).sum(axis=-1)


def entropy_ratio(weights: ArrayLike) -> float:
    """Mean entropy / ln T over every leading index (batch, layer, head, token); 1 = uniform."""
    p = as_array(weights)
    steps = p.shape[-1]
    if steps < 2:
        return math.nan
    return float(attention_entropy(p).mean() / math.log(steps))


def entropy_ratio_per_layer(weights: ArrayLike) -> list[float]:
    """Entropy ratio of each layer for weights (B, layers, heads, tokens, T)."""
    p = as_array(weights)
    return [entropy_ratio(p[:, layer]) for layer in range(p.shape[1])]


def attention_weights(
    predictor: TiledPredictor, dataset: NO2TileDataset, days: Sequence[DayInputs]
) -> Iterator[NDArray[np.float32]]:
    """Weights (B, layers, heads, tokens, T) of every tile of ``days`` (the predictor's tiling),
    batch by batch; nothing for a model without attention."""
    size, overlap = predictor.settings.tile_size, predictor.settings.overlap
    tiles = overlapping_tiles(dataset.arrays.shape, size, overlap)
    jobs = [(day, tile) for day in days for tile in tiles]
    step = predictor.settings.batch_size
    for start in range(0, len(jobs), step):
        batch = stack_samples(
            [dataset.tile_sample(day, tile) for day, tile in jobs[start : start + step]]
        )
        _, weights = predictor.forward(batch, return_attention=True)
        if weights is None:
            return
        yield weights.numpy()


def mean_entropy_ratio(
    predictor: TiledPredictor, dataset: NO2TileDataset, days: Sequence[DayInputs]
) -> tuple[float, tuple[float, ...]]:
    """Entropy ratio over every tile of ``days``, overall and per layer (NaN and () for a model
    without attention); the weights of all days are never held at once."""
    total, per_layer, count = 0.0, np.zeros(0), 0
    for weights in attention_weights(predictor, dataset, days):
        n = weights.shape[0]
        total += entropy_ratio(weights) * n
        layers = np.asarray(entropy_ratio_per_layer(weights)) * n
        per_layer = layers if per_layer.size == 0 else per_layer + layers
        count += n
    if count == 0:
        return math.nan, ()
    return total / count, tuple(float(v) for v in per_layer / count)


@dataclass(frozen=True)
class AttentionSummary:
    """argmax_hour, entropy_ratio: (h, w) token maps; mean_weight: (T,) over tokens/heads/layers."""

    argmax_hour: NDArray[np.float64]
    entropy_ratio: NDArray[np.float64]
    mean_weight: NDArray[np.float64]


def summarise_attention(
    weights: ArrayLike, token_shape: tuple[int, int], hours: ArrayLike
) -> AttentionSummary:
    """Maps of one sample's attention (layers, heads, tokens, T).

    ``argmax_hour``: the hour offset (from ``hours``, (T,)) with the largest weight after
    averaging over layers and heads; ``entropy_ratio``: per-token mean over layers and heads
    of entropy / ln T; ``mean_weight``: mean weight per hour over everything else.
    """
    p = as_array(weights)
    if p.ndim != 4:
        raise ValueError(f"attention must be (layers, heads, tokens, T), got {p.shape}")
    h, w = token_shape
    steps = p.shape[-1]
    if p.shape[2] != h * w:
        raise ValueError(f"{p.shape[2]} tokens do not form a {h} x {w} grid")
    mean_over_heads = p.mean(axis=(0, 1))  # (tokens, T)
    hour_values = as_array(hours)
    argmax = hour_values[np.argmax(mean_over_heads, axis=-1)].reshape(h, w)  # (h, w)
    entropy = attention_entropy(p).mean(axis=(0, 1)) / math.log(steps)  # (tokens,)
    return AttentionSummary(
        argmax_hour=argmax,
        entropy_ratio=entropy.reshape(h, w),
        mean_weight=mean_over_heads.mean(axis=0),
    )


def token_centres(
    lat: ArrayLike, lon: ArrayLike, stride: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centres of stride x stride token blocks from cell centres (H,), (W,) -> (H/s,), (W/s,)."""
    la, lo = as_array(lat), as_array(lon)
    return la.reshape(-1, stride).mean(axis=1), lo.reshape(-1, stride).mean(axis=1)


def pick_days(valid_counts: ArrayLike, n: int) -> list[int]:
    """Indices of ``n`` test days spread through the split, each the best-observed of its
    stretch (most valid target cells), so the maps show days with something to see."""
    counts = as_array(valid_counts)
    if counts.size == 0:
        return []
    chunks = np.array_split(np.arange(counts.size), min(n, counts.size))
    return [int(chunk[np.argmax(counts[chunk])]) for chunk in chunks if chunk.size]


@dataclass(frozen=True)
class Wind:
    """The 10 m wind at the overpass over one tile's met cells.

    u, v: (m_lat, m_lon) eastward and northward wind, m s-1; lat (m_lat,), lon (m_lon,): the
    met cell centres, degrees.
    """

    u: NDArray[np.float64]
    v: NDArray[np.float64]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]


@dataclass(frozen=True)
class AttentionMap:
    """What one test day's attention looks like, ready to draw: the token maps of
    ``summary`` on token centres ``lat`` (h,) / ``lon`` (w,), per hour offset ``hours`` (T,),
    with the wind over the same tile."""

    date: str
    hours: NDArray[np.float64]
    summary: AttentionSummary
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    wind: Wind


def _best_observed_tile(dataset: NO2TileDataset, day: DayInputs, tiles: Sequence[Tile]) -> Tile:
    target = np.isfinite(dataset.arrays.no2[day.target_index])
    return max(tiles, key=lambda tile: int(target[tile.rows, tile.cols].sum()))


def attention_maps(
    predictor: TiledPredictor,
    dataset: NO2TileDataset,
    days: Sequence[DayInputs],
    cube: xr.Dataset,
    token_stride: int,
) -> tuple[AttentionMap, ...]:
    """The attention of each of ``days`` on its best-observed tile, with the wind at the
    overpass over that tile (``cube``'s ``met_u10``/``met_v10``); () without attention."""
    size, overlap = predictor.settings.tile_size, predictor.settings.overlap
    tiles = overlapping_tiles(dataset.arrays.shape, size, overlap)
    cell_lat = np.asarray(cube["lat"].values, dtype=np.float64)
    cell_lon = np.asarray(cube["lon"].values, dtype=np.float64)
    met_lat = np.asarray(cube["met_lat"].values, dtype=np.float64)
    met_lon = np.asarray(cube["met_lon"].values, dtype=np.float64)
    margin = 0.5 * float(abs(met_lat[1] - met_lat[0])) if met_lat.size > 1 else 0.0
    maps = []
    for day in days:
        tile = _best_observed_tile(dataset, day, tiles)
        batch = stack_samples([dataset.tile_sample(day, tile)])
        _, weights = predictor.forward(batch, return_attention=True)
        if weights is None:
            return ()
        steps = weights.shape[-1]
        hours = (
            np.asarray(cube["hour"].values, dtype=np.float64)
            if "hour" in cube.coords
            else np.arange(-steps + 1, 1.0)
        )
        side = size // token_stride
        summary = summarise_attention(weights[0].numpy(), (side, side), hours)
        lat, lon = cell_lat[tile.rows], cell_lon[tile.cols]
        token_lat, token_lon = token_centres(lat, lon, token_stride)
        in_lat = np.flatnonzero((met_lat >= lat[0] - margin) & (met_lat <= lat[-1] + margin))
        in_lon = np.flatnonzero((met_lon >= lon[0] - margin) & (met_lon <= lon[-1] + margin))

        overpass = {"time": day.met_index, "hour": -1, "met_lat": in_lat, "met_lon": in_lon}
        u, v = (
            np.asarray(cube[name].isel(overpass).values, dtype=np.float64)
            for name in ("met_u10", "met_v10")
        )
        date = str(dataset.arrays.times[day.target_index])
        wind = Wind(u, v, met_lat[in_lat], met_lon[in_lon])
        maps.append(AttentionMap(date, hours, summary, token_lat, token_lon, wind))
    return tuple(maps)
