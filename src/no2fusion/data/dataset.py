"""Cube -> samples: the torch Dataset of (satellite, meteorology, target) tiles.

Sits in ``data/`` after ``io/cube.py`` (which opens and checks the Zarr cube) and before
``models/``. Here NaN stops (NaN -> 0 plus a validity-mask channel) and torch starts. A sample
(a ``data.batch.Batch`` without the batch dimension) is one target day ``d`` on one tile
(DESIGN §2):

- ``sat`` (C, H, W) float32: [normalized NO2 of day d - lead (clipped, NaN -> 0), validity mask
  (1 = observed), and with ``static_channels`` one channel per region class (one-hot)];
- ``aux`` (T, F) float32: the F=13 features of the T=24 hourly steps ending at the day-d
  overpass, averaged over the tile with spherical-area overlap weights, normalized and clipped;
- ``target`` (H, W) float32: normalized NO2 of day d, never clipped, 0 where invalid;
- ``target_mask`` (H, W) bool: cells valid on day d (losses and metrics use only these);
- ``hidden_mask`` (H, W) bool: target cells not visible in the input (lead 0: the cells hidden
  by a borrowed cloud mask; lead >= 1: valid today but missing on the input day);
- ``weight`` (H, W) float32: cell area / mean cell area of the tile (area-weighted losses);
- ``day_index`` (index into ``CubeArrays.times``), ``row``, ``col`` (tile origin) int64.

Gap filling (``lead = 0``): the input is day d itself with the cells that were invalid on another
day (drawn, seeded, from the same split) hidden as well, so the model reconstructs real
cloud-shaped gaps; the loss covers every valid target cell (hidden and visible) and
``hidden_mask`` lets evaluation score the reconstructed cells alone.

Target days whose target has no valid cell are skipped; a random training crop is redrawn (up to
``_CROP_TRIES`` times) until its target has a valid cell.

Inputs are built in two steps: ``DayInputs`` holds what the model may see of one day on the whole
domain (the input day's observation with hidden cells as NaN, and which day's meteorology), and
``NO2TileDataset.tile_sample`` cuts one tile of it into a sample. Training, evaluation (also its
robustness and shuffle tests, which only change ``DayInputs``) and ``no2fusion predict`` share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np
import torch
import xarray as xr
from numpy.typing import NDArray
from torch.utils.data import Dataset, Sampler

from no2fusion.config import DataConfig
from no2fusion.data.batch import Batch
from no2fusion.data.tiles import (
    MetWeights,
    Tile,
    check_tile_fits,
    covering_tiles,
    met_weights,
    overlap_lengths,
    random_tile,
)
from no2fusion.errors import CubeSchemaError
from no2fusion.grid import edges_from_centres
from no2fusion.pipeline.normalize import RobustNormalizer
from no2fusion.vocab import REGION_CLASSES

_CROP_TRIES = 10
# The channels of ``sat`` that come from the satellite observation of the input day.
SATELLITE_OBSERVATION_CHANNELS: tuple[str, ...] = ("no2", "no2_valid")


@dataclass
class Normalizers:
    """The two fitted normalizers: NO2 (scalar, umol m-2) and features (per feature, (F,))."""

    no2: RobustNormalizer
    features: RobustNormalizer

    def to_dict(self) -> dict[str, Any]:
        return {"no2": self.no2.to_dict(), "features": self.features.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Normalizers:
        return cls(
            RobustNormalizer.from_dict(values["no2"]),
            RobustNormalizer.from_dict(values["features"]),
        )


def _edges(cube: xr.Dataset, name: str, centres: str) -> NDArray[np.float64]:
    """Cell edges (n+1,) from ``<name>`` bounds [n, 2] when stored, else from the centres."""
    if name in cube.variables:
        bounds = np.asarray(cube[name].values, dtype=np.float64)  # (n, 2)
        return np.concatenate([bounds[:, 0], bounds[-1:, 1]])
    return edges_from_centres(np.asarray(cube[centres].values, dtype=np.float64))


class CubeArrays:
    """The arrays of one cube that samples are cut from.

    ``no2`` (time, lat, lon) umol m-2 is always held in memory (float32). ``features``
    (time, hour, met_lat, met_lon, feature), cropped to the met cells that overlap the domain, is
    held in memory when ``cache`` and it needs at most ``cache_max_bytes``; otherwise each
    sample reads its tile's met cells from the Zarr store.
    """

    def __init__(
        self,
        cube: xr.Dataset,
        cache: bool = True,
        cache_max_bytes: float = 4e9,
        path: str | Path = "cube",
    ) -> None:
        self.path = Path(path)
        self.times = np.asarray(cube["time"].values).astype("datetime64[D]")  # (n_time,)
        self.lat_edges = _edges(cube, "lat_bounds", "lat")
        self.lon_edges = _edges(cube, "lon_bounds", "lon")
        self.met_lat_edges = _edges(cube, "met_lat_bounds", "met_lat")
        self.met_lon_edges = _edges(cube, "met_lon_bounds", "met_lon")
        self.shape = (self.lat_edges.size - 1, self.lon_edges.size - 1)
        self.no2 = np.asarray(cube["no2"].values, dtype=np.float32)  # (time, lat, lon)
        self.region = np.asarray(cube["region"].values, dtype=np.int64)  # (lat, lon)
        self.cell_area = np.asarray(cube["cell_area"].values, dtype=np.float64)  # (lat, lon) m2
        self.n_hours = int(cube.sizes["hour"])
        self.n_features = int(cube.sizes["feature"])
        if self.no2.shape[1:] != self.shape:
            raise CubeSchemaError(
                f"no2 has {self.no2.shape[1:]} cells but lat/lon bounds give {self.shape}", path
            )
        # met cells overlapping the whole domain (every tile lies inside it)
        self.domain = self._domain_weights()
        self._features_lazy = cube["features"].isel(
            met_lat=self.domain.lat_slice, met_lon=self.domain.lon_slice
        )
        n_bytes = 4.0 * np.prod([int(n) for n in self._features_lazy.shape])
        self.features: NDArray[np.float32] | None = None
        if cache and n_bytes <= cache_max_bytes:
            self.features = np.asarray(self._features_lazy.values, dtype=np.float32)
        self._day_index = {day: i for i, day in enumerate(self.times.tolist())}

    def _domain_weights(self) -> MetWeights:
        """Area weights of the met cells over the whole (possibly non-square) domain."""
        lat_w = overlap_lengths(self.lat_edges[0], self.lat_edges[-1], self.met_lat_edges, "sin")
        lon_w = overlap_lengths(self.lon_edges[0], self.lon_edges[-1], self.met_lon_edges)
        i, j = np.flatnonzero(lat_w > 0), np.flatnonzero(lon_w > 0)
        if i.size == 0 or j.size == 0:
            raise CubeSchemaError("the meteorology grid does not overlap the NO2 grid", self.path)
        lat_slice, lon_slice = slice(int(i[0]), int(i[-1]) + 1), slice(int(j[0]), int(j[-1]) + 1)
        return MetWeights(
            lat_slice, lon_slice, lat_w[lat_slice] / lat_w.sum(), lon_w[lon_slice] / lon_w.sum()
        )

    def index_of(self, day: np.datetime64) -> int | None:
        """Index of a calendar day in ``times``, or None when the cube lacks it."""
        return self._day_index.get(np.asarray(day).astype("datetime64[D]").item())

    def indices_of(self, days: NDArray[np.datetime64]) -> NDArray[np.int64]:
        """Indices of ``days`` (all must be in the cube)."""
        found = [self.index_of(day) for day in days]
        if any(i is None for i in found):
            raise CubeSchemaError("split days are not all in the cube", self.path)
        return np.asarray(found, dtype=np.int64)

    def tile_weights(self, tile: Tile) -> MetWeights:
        """Met-cell area weights of ``tile``, sliced relative to the cropped feature array."""
        weights = met_weights(
            tile, self.lat_edges, self.lon_edges, self.met_lat_edges, self.met_lon_edges
        )
        offset_i, offset_j = self.domain.lat_slice.start, self.domain.lon_slice.start
        return MetWeights(
            slice(weights.lat_slice.start - offset_i, weights.lat_slice.stop - offset_i),
            slice(weights.lon_slice.start - offset_j, weights.lon_slice.stop - offset_j),
            weights.lat_w,
            weights.lon_w,
        )

    def met_block(self, t: int, weights: MetWeights) -> NDArray[np.float32]:
        """Features (hour, i, j, feature) of day index ``t`` on the met cells of ``weights``."""
        if self.features is not None:
            return self.features[t, :, weights.lat_slice, weights.lon_slice, :]
        block = self._features_lazy.isel(
            time=t, met_lat=weights.lat_slice, met_lon=weights.lon_slice
        )
        # synchronous: a DataLoader worker forked from a process whose dask thread pool was
        # in use would deadlock on that pool
        with dask.config.set(scheduler="synchronous"):
            return np.asarray(block.values, dtype=np.float32)

    def tile_features(self, t: int, weights: MetWeights) -> NDArray[np.float64]:
        """Area-weighted tile mean of the raw features of day index ``t``: (hour, feature)."""
        block = self.met_block(t, weights).astype(np.float64)  # (T, i, j, F)
        return np.einsum("tijf,i,j->tf", block, weights.lat_w, weights.lon_w)

    def domain_features(self, indices: NDArray[np.int64]) -> NDArray[np.float64]:
        """Area-weighted domain means of the raw features: (len(indices), hour, feature)."""
        if self.features is not None:
            block = self.features[indices].astype(np.float64)  # (N, T, i, j, F)
            return np.einsum("ntijf,i,j->ntf", block, self.domain.lat_w, self.domain.lon_w)
        lat_w = xr.DataArray(self.domain.lat_w, dims="met_lat")
        lon_w = xr.DataArray(self.domain.lon_w, dims="met_lon")
        lazy = self._features_lazy.isel(time=indices)
        mean = (lazy.astype(np.float64) * lat_w * lon_w).sum(("met_lat", "met_lon"))
        return np.asarray(mean.transpose("time", "hour", "feature").values)


def fit_normalizers(
    arrays: CubeArrays, train_days: NDArray[np.datetime64], clip_range: tuple[float, float]
) -> Normalizers:
    """Fit both normalizers on the training days only, on valid (finite) values only.

    NO2: one median/IQR over every valid cell of every training day. Features: per feature over
    the area-weighted domain-mean feature vectors of every hour of every training day (what the
    model sees when the tile is the domain).
    """
    indices = arrays.indices_of(train_days)
    no2 = arrays.no2[indices]  # (N, lat, lon)
    no2_normalizer = RobustNormalizer(clip_range).fit(no2[np.isfinite(no2)])
    features = arrays.domain_features(indices)  # (N, T, F)
    feature_normalizer = RobustNormalizer(clip_range).fit(features, axis=(0, 1))
    return Normalizers(no2_normalizer, feature_normalizer)


@dataclass(frozen=True)
class DayInputs:
    """What the model is given for one target day, before it is cut into tiles.

    ``observation`` (lat, lon) float32 umol m-2 is the satellite field of the input day as the
    model may see it: NaN where no valid pixel was observed or where a cell is hidden (gap
    filling's borrowed cloud mask; robustness tests hide or perturb cells here).
    ``met_index`` is the day whose meteorology is used: the target day, except in the shuffle
    test. Indices are into ``CubeArrays.times``; ``position`` into ``day_indices``.
    """

    position: int
    target_index: int
    input_index: int
    observation: NDArray[np.float32]
    met_index: int


class NO2TileDataset(Dataset[Batch]):
    """Samples of the target ``days`` (one split) of a cube; see the module docstring.

    ``training=True``: one entry per usable target day; each draw takes a random tile (keys from
    ``EpochSampler`` carry the epoch, so crops and borrowed masks change every epoch yet are
    reproducible from ``seed``). ``training=False``: one entry per (day, covering tile) whose
    target has a valid cell, always the same; the borrowed gap-filling mask is drawn once per
    day, so every tile of a day (and the evaluation's tiled predictor) sees the same input.

    ``tile_sample`` is the one place where model inputs are built: training, validation,
    evaluation and ``no2fusion predict`` all go through it.
    """

    def __init__(
        self,
        arrays: CubeArrays,
        normalizers: Normalizers,
        days: NDArray[np.datetime64],
        config: DataConfig,
        training: bool,
        seed: int = 0,
    ) -> None:
        check_tile_fits(config.tile_size, arrays.shape, str(arrays.path))
        self.arrays = arrays
        self.normalizers = normalizers
        self.config = config
        self.training = training
        self.seed = int(seed)
        self.lead = config.lead
        self.tile_size = config.tile_size
        self.borrow_masks = config.lead == 0 and config.gap_fill_extra_mask
        valid_cells = np.isfinite(arrays.no2)  # (time, lat, lon)
        self._valid = valid_cells
        targets: list[int] = []
        inputs: list[int] = []
        for day in np.asarray(days, dtype="datetime64[D]"):
            t = arrays.index_of(day)
            t_in = arrays.index_of(day - np.timedelta64(self.lead, "D"))
            if t is None or t_in is None:
                continue  # target or input day absent from the cube
            targets.append(t)
            inputs.append(t_in)
        self.day_indices = np.asarray(targets, dtype=np.int64)  # target day per usable day
        self.input_indices = np.asarray(inputs, dtype=np.int64)
        self.tiles = covering_tiles(arrays.shape, self.tile_size)
        self.entries: list[tuple[int, Tile | None]] = []  # (position in day_indices, tile)
        for k, t in enumerate(self.day_indices):
            if training:
                if valid_cells[t].any():
                    self.entries.append((k, None))
                continue
            for tile in self.tiles:
                if valid_cells[t, tile.rows, tile.cols].any():
                    self.entries.append((k, tile))
        self._weights: dict[tuple[int, int], MetWeights] = {}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def satellite_channel_names(self) -> tuple[str, ...]:
        """Names of the channels of ``sat``, in order: ``no2`` (normalized, clipped, 0 where
        not visible) and ``no2_valid`` (1 = visible), then ``region_<class>`` one-hots with
        ``data.static_channels``."""
        names = SATELLITE_OBSERVATION_CHANNELS
        if self.config.static_channels:
            names += tuple(f"region_{name}" for name in REGION_CLASSES)
        return names

    @property
    def observation_channel_names(self) -> tuple[str, ...]:
        """The channels of ``sat`` computed from satellite observations (the others are static
        maps): robustness dropout and noise, which change ``DayInputs``, must reach each of
        them (tested)."""
        return SATELLITE_OBSERVATION_CHANNELS

    @property
    def satellite_channels(self) -> int:
        """C of ``sat``."""
        return len(self.satellite_channel_names)

    @property
    def aux_axes(self) -> tuple[str, ...]:
        """Names of the axes of one sample's ``aux`` (after the batch axis): today the tile-mean
        series, (``hour``, ``feature``) = (T, F), features in ``vocab.FEATURES`` order."""
        return ("hour", "feature")

    def _weights_of(self, tile: Tile) -> MetWeights:
        key = (tile.row, tile.col)
        if key not in self._weights:
            self._weights[key] = self.arrays.tile_weights(tile)
        return self._weights[key]

    def _borrowed_day(self, k: int, rng: np.random.Generator) -> int | None:
        """A day index of this split other than day position ``k`` whose invalid cells gap
        filling hides (None when masks are not borrowed)."""
        if not self.borrow_masks or len(self.day_indices) < 2:
            return None
        other = int(rng.integers(0, len(self.day_indices) - 1))
        return int(self.day_indices[other + (other >= k)])  # any day but day d

    def day_inputs(self, k: int, hide_day: int | None = None) -> DayInputs:
        """The inputs of day position ``k``; cells invalid on day index ``hide_day`` are hidden
        from the observation as well (gap filling)."""
        t, t_in = int(self.day_indices[k]), int(self.input_indices[k])
        observation = self.arrays.no2[t_in]  # (lat, lon) umol m-2, NaN = no data
        if hide_day is not None:
            observation = np.where(self._valid[hide_day], observation, np.float32(np.nan))
        return DayInputs(k, t, t_in, observation, met_index=t)

    def evaluation_inputs(self, k: int) -> DayInputs:
        """The fixed inputs of day position ``k`` outside training: the borrowed gap-filling
        mask (lead 0) is drawn from (seed, k) only, the same for every tile of the day."""
        return self.day_inputs(k, self._borrowed_day(k, np.random.default_rng([self.seed, k])))

    def evaluation_days(self) -> list[DayInputs]:
        """``evaluation_inputs`` of every usable day whose target has a valid cell, in order."""
        positions = sorted({k for k, _ in self.entries})
        return [self.evaluation_inputs(k) for k in positions]

    def __getitem__(self, key: int) -> Batch:
        """``key`` = epoch * len(self) + index (plain indices are epoch 0)."""
        key = int(key)
        epoch, index = divmod(key, len(self))
        k, tile = self.entries[index]
        if not self.training:
            assert tile is not None
            return self.tile_sample(self.evaluation_inputs(k), tile)
        rng = np.random.default_rng([self.seed, epoch, index])
        t = int(self.day_indices[k])
        for _ in range(_CROP_TRIES):  # random crop with a valid target cell
            tile = random_tile(self.arrays.shape, self.tile_size, rng)
            if self._valid[t, tile.rows, tile.cols].any():
                break
        assert tile is not None
        return self.tile_sample(self.day_inputs(k, self._borrowed_day(k, rng)), tile)

    def tile_sample(self, day: DayInputs, tile: Tile) -> Batch:
        """The sample of ``day`` on ``tile``: every model input is built here (module
        docstring), from ``day.observation`` and the meteorology of ``day.met_index``."""
        arrays, norm = self.arrays, self.normalizers
        rows, cols = tile.rows, tile.cols
        x = day.observation[rows, cols]  # (H, W) umol m-2, NaN = not visible
        visible = np.isfinite(x)
        x_norm = np.where(visible, norm.no2.transform(np.where(visible, x, 0.0), clip=True), 0.0)
        channels = [x_norm, visible.astype(np.float32)]
        if self.config.static_channels:
            region = arrays.region[rows, cols]  # (H, W) int codes
            channels += [(region == code).astype(np.float32) for code in range(len(REGION_CLASSES))]
        sat = np.stack(channels).astype(np.float32)  # (C, H, W)

        y = arrays.no2[day.target_index, rows, cols]
        target_mask = np.isfinite(y)
        target = np.where(
            target_mask, norm.no2.transform(np.where(target_mask, y, 0.0), clip=False), 0.0
        )

        aux_raw = arrays.tile_features(day.met_index, self._weights_of(tile))  # (T, F)
        aux = np.nan_to_num(
            norm.features.transform(aux_raw, clip=True), nan=0.0, posinf=0.0, neginf=0.0
        )

        area = arrays.cell_area[rows, cols]
        return Batch(
            sat=torch.from_numpy(sat),
            aux=torch.from_numpy(aux.astype(np.float32)),
            target=torch.from_numpy(target.astype(np.float32)),
            target_mask=torch.from_numpy(target_mask),
            hidden_mask=torch.from_numpy(target_mask & ~visible),
            weight=torch.from_numpy((area / area.mean()).astype(np.float32)),
            day_index=torch.tensor(day.target_index, dtype=torch.int64),
            row=torch.tensor(tile.row, dtype=torch.int64),
            col=torch.tensor(tile.col, dtype=torch.int64),
        )


class EpochSampler(Sampler[int]):
    """Shuffled keys ``epoch * n + i`` for a training ``NO2TileDataset`` of length ``n``.

    The permutation depends only on (seed, epoch), and Lightning calls ``set_epoch`` (also
    through its distributed wrapper), so a resumed run draws exactly the batches and crops the
    uninterrupted run would have drawn.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n = n
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):  # type: ignore[no-untyped-def]
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            if self.shuffle
            else np.arange(self.n)
        )
        offset = self.epoch * self.n
        return iter((offset + order).tolist())
