"""Cube -> samples: the torch Dataset of (satellite, meteorology, target) tiles.

Sits in ``data/`` after ``arrays.py`` (the cube's arrays and the statistics fitted on training
days) and before ``models/``. Here NaN stops (NaN -> 0 plus validity channels) and torch starts.
A sample (a ``data.batch.Batch`` without the batch dimension) is one target day ``d`` on one
tile of ``H x W`` cells (DESIGN §2):

- ``sat`` (C=5, H, W) float32, every channel satellite-derived (``satellite_channel_names``):
  ``no2`` the NO2 of day d - lead (normalized, clipped, 0 where not visible), ``no2_valid``
  (1 = visible), ``composite`` the trailing composite of the ``data.composite_days`` days ending
  at the input day (normalized, 0 where none), ``composite_fraction`` (share of those days with
  a valid value) and ``climatology`` (the per-cell training mean, normalized);
- ``aux`` (T, F, mh, mw) float32: the F=13 normalized features of the T=24 hourly steps ending at
  the day-d overpass on the met block around the tile (``data.inputs.MetBlock``);
- ``wind`` (T, 2, mh, mw) float32: the 10 m wind on that block in target cells per hour
  (rows north, columns east), which the model's back-trajectories follow;
- ``met_affine`` (4,) float32: block index = a + b * tile cell index, (a_i, b_i, a_j, b_j);
- ``calendar`` (7,) float32: one-hot weekday of day d;
- ``target`` (H, W) float32: normalized NO2 of day d, never clipped, 0 where invalid;
- ``target_mask`` (H, W) bool: cells valid on day d (losses and metrics use only these);
- ``hidden_mask`` (H, W) bool: target cells not visible in the input (lead 0: the cells hidden
  by a borrowed cloud mask; lead >= 1: valid today but missing on the input day);
- ``weight`` (H, W) float32: cell area / mean cell area of the tile (area-weighted losses);
- ``day_index`` (index into ``CubeArrays.times``), ``row``, ``col`` (tile origin) int64.

Nothing from day d (beyond its meteorology up to the overpass), later days or other splits'
fitted statistics reaches an input: the composite ends at the input day, the climatology and
normalizers are fitted on training days (tested in ``tests/data/test_causality.py``).

Gap filling (``lead = 0``): the input is day d itself with the cells that were invalid on another
day (drawn, seeded, from the same split) hidden as well, in the observation and in day d's share
of the composite, so the model reconstructs real cloud-shaped gaps; the loss covers every valid
target cell and ``hidden_mask`` lets evaluation score the reconstructed cells alone.

Training covers the domain: an epoch holds one entry per (day, covering tile) with a valid target
cell, each drawn with a random shift of up to half a tile (``data.tiles_per_day`` instead draws
that many random tiles per day). Inputs are built in two steps: ``DayInputs`` holds what the
model may see of one day on the whole domain, and ``tile_sample`` cuts one tile of it into a
sample. Training, evaluation (its robustness and shuffle tests only change ``DayInputs``) and
``no2fusion predict`` share both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset, Sampler

from no2fusion.config import DataConfig
from no2fusion.data.arrays import CubeArrays, Normalizers
from no2fusion.data.batch import Batch
from no2fusion.data.inputs import (
    MetBlock,
    met_block,
    trailing_composite,
    weekday_one_hot,
    wind_cells_per_hour,
)
from no2fusion.data.tiles import Tile, check_tile_fits, covering_tiles, random_tile
from no2fusion.pipeline.features import REFERENCE_WIND_M_S
from no2fusion.vocab import FEATURES

_CROP_TRIES = 10
F32 = NDArray[np.float32]
# The channels of ``sat``, all computed from satellite observations.
SATELLITE_CHANNELS: tuple[str, ...] = (
    "no2",
    "no2_valid",
    "composite",
    "composite_fraction",
    "climatology",
)


@dataclass(frozen=True)
class Perturbation:
    """A change to the satellite-derived inputs of a day (robustness tests): ``observations``
    maps the stack of observed fields the day's inputs come from, (W, lat, lon) umol m-2 with
    NaN = not visible (the composite window, the input day last), to the same; ``climatology``
    (optional) maps the (lat, lon) climatology."""

    observations: Callable[[F32], F32]
    climatology: Callable[[F32], F32] | None = None


@dataclass(frozen=True)
class DayInputs:
    """What the model is given for one target day, before it is cut into tiles.

    ``observation`` (lat, lon) float32 umol m-2: the satellite field of the input day as the
    model may see it (NaN where no valid pixel or hidden). ``composite`` (lat, lon) umol m-2 (NaN
    where none) and ``composite_fraction`` (lat, lon) 0..1: the trailing composite ending at the
    input day. ``climatology`` (lat, lon) umol m-2. ``met_index`` is the day whose meteorology is
    used: the target day, except in the shuffle test. Indices are into ``CubeArrays.times``;
    ``position`` into ``day_indices``.
    """

    position: int
    target_index: int
    input_index: int
    observation: F32
    composite: F32
    composite_fraction: F32
    climatology: F32
    met_index: int


class NO2TileDataset(Dataset[Batch]):
    """Samples of the target ``days`` (one split) of a cube; see the module docstring.

    ``training=True``: entries per (day, tile) drawn afresh every epoch (keys from
    ``EpochSampler`` carry the epoch, so shifts and borrowed masks change every epoch yet are
    reproducible from ``seed``). ``training=False``: one entry per (day, covering tile) whose
    target has a valid cell, always the same; the borrowed gap-filling mask is drawn once per
    day, so every tile of a day (and the evaluation's tiled predictor) sees the same input.

    ``hidden_days``: days whose observations are never an input (``Split.hidden_from``: a
    training sample never sees a validation or test day, not even in its composite).

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
        hidden_days: NDArray[np.datetime64] | None = None,
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
            if training and config.tiles_per_day is not None:
                if valid_cells[t].any():
                    self.entries += [(k, None)] * config.tiles_per_day
                continue
            for tile in self.tiles:
                if valid_cells[t, tile.rows, tile.cols].any():
                    self.entries.append((k, tile))
        # observations never used as an input here (other splits: ``Split.hidden_from``)
        hidden = [
            arrays.index_of(day)
            for day in np.asarray(
                hidden_days if hidden_days is not None else [], dtype="datetime64[D]"
            )
        ]
        self._hidden = {i for i in hidden if i is not None}
        self._blocks: dict[tuple[int, int], MetBlock] = {}
        # the training climatology on this cube's cells (another domain: ``no2fusion predict``)
        self._climatology, self.climatology_coverage = normalizers.climatology_on(
            arrays.lat, arrays.lon
        )

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def satellite_channel_names(self) -> tuple[str, ...]:
        """Names of the channels of ``sat``, in order (module docstring)."""
        return SATELLITE_CHANNELS

    @property
    def observation_channel_names(self) -> tuple[str, ...]:
        """The channels of ``sat`` computed from satellite observations (today all of them):
        robustness dropout and noise, which change ``DayInputs``, must reach each of them
        (tested)."""
        return SATELLITE_CHANNELS

    @property
    def satellite_channels(self) -> int:
        """C of ``sat``."""
        return len(self.satellite_channel_names)

    @property
    def aux_axes(self) -> tuple[str, ...]:
        """Names of the axes of one sample's ``aux`` (after the batch axis): (``hour``,
        ``feature``, ``met_lat``, ``met_lon``), features in ``vocab.FEATURES`` order."""
        return ("hour", "feature", "met_lat", "met_lon")

    def block_of(self, tile: Tile) -> MetBlock:
        """The met block of ``tile`` (cached per tile origin)."""
        key = (tile.row, tile.col)
        if key not in self._blocks:
            arrays = self.arrays
            self._blocks[key] = met_block(
                tile,
                arrays.lat,
                arrays.lon,
                arrays.met_lat,
                arrays.met_lon,
                self.config.met_margin_cells,
            )
        return self._blocks[key]

    def _borrowed_day(self, k: int, rng: np.random.Generator) -> int | None:
        """A day index of this split other than day position ``k`` whose invalid cells gap
        filling hides (None when masks are not borrowed)."""
        if not self.borrow_masks or len(self.day_indices) < 2:
            return None
        other = int(rng.integers(0, len(self.day_indices) - 1))
        return int(self.day_indices[other + (other >= k)])  # any day but day d

    def observation_window(self, k: int, hide_day: int | None = None) -> F32:
        """The observed fields the inputs of day position ``k`` come from: (W, lat, lon) umol
        m-2 of the ``composite_days`` calendar days ending at the input day (the input day
        last; days the cube lacks and ``hidden_days`` are all NaN); cells invalid on day index
        ``hide_day`` are hidden in the input day (gap filling)."""
        t_in = int(self.input_indices[k])
        width = self.config.composite_days
        day = self.arrays.times[t_in]
        window = np.full((width, *self.arrays.shape), np.nan, dtype=np.float32)
        for offset in range(width):
            index = self.arrays.index_of(day - np.timedelta64(width - 1 - offset, "D"))
            if index is not None and index not in self._hidden:
                window[offset] = self.arrays.no2[index]
        if hide_day is not None:
            window[-1] = np.where(self._valid[hide_day], window[-1], np.float32(np.nan))
        return window

    def day_inputs(
        self, k: int, hide_day: int | None = None, perturbation: Perturbation | None = None
    ) -> DayInputs:
        """The inputs of day position ``k``; cells invalid on day index ``hide_day`` are hidden
        from the input day as well (gap filling); ``perturbation`` changes the observed fields
        and the climatology before anything is derived from them (robustness tests)."""
        window = self.observation_window(k, hide_day)
        climatology = self._climatology
        if perturbation is not None:
            window = perturbation.observations(window)
            if perturbation.climatology is not None:
                climatology = perturbation.climatology(climatology)
        composite, fraction = trailing_composite(window)
        t, t_in = int(self.day_indices[k]), int(self.input_indices[k])
        return DayInputs(k, t, t_in, window[-1], composite, fraction, climatology, met_index=t)

    def evaluation_inputs(self, k: int, perturbation: Perturbation | None = None) -> DayInputs:
        """The fixed inputs of day position ``k`` outside training: the borrowed gap-filling
        mask (lead 0) is drawn from (seed, k) only, the same for every tile of the day."""
        hide_day = self._borrowed_day(k, np.random.default_rng([self.seed, k]))
        return self.day_inputs(k, hide_day, perturbation)

    def evaluation_positions(self) -> list[int]:
        """Day positions of every usable day whose target has a valid cell, in order."""
        return sorted({k for k, _ in self.entries})

    def evaluation_days(self) -> list[DayInputs]:
        """``evaluation_inputs`` of every usable day whose target has a valid cell, in order."""
        return [self.evaluation_inputs(k) for k in self.evaluation_positions()]

    def _training_tile(self, t: int, tile: Tile | None, rng: np.random.Generator) -> Tile:
        """A random tile with a valid target cell on day index ``t``: ``tile`` shifted by up to
        half a tile (clamped to the domain), or anywhere when ``tile`` is None."""
        n_lat, n_lon = self.arrays.shape
        size = self.tile_size
        for _ in range(_CROP_TRIES):
            if tile is None:
                candidate = random_tile(self.arrays.shape, size, rng)
            else:
                shift = rng.integers(-(size // 2), size // 2 + 1, size=2)
                row = int(np.clip(tile.row + shift[0], 0, n_lat - size))
                col = int(np.clip(tile.col + shift[1], 0, n_lon - size))
                candidate = Tile(row, col, size)
            if self._valid[t, candidate.rows, candidate.cols].any():
                return candidate
        return tile if tile is not None else candidate

    def __getitem__(self, key: int) -> Batch:
        """``key`` = epoch * len(self) + index (plain indices are epoch 0)."""
        key = int(key)
        epoch, index = divmod(key, len(self))
        k, tile = self.entries[index]
        if not self.training:
            assert tile is not None
            return self.tile_sample(self.evaluation_inputs(k), tile)
        rng = np.random.default_rng([self.seed, epoch, index])
        chosen = self._training_tile(int(self.day_indices[k]), tile, rng)
        return self.tile_sample(self.day_inputs(k, self._borrowed_day(k, rng)), chosen)

    def _wind_cells(self, block: MetBlock, u: F32, v: F32) -> F32:
        """Wind (T, mh, mw) m s-1 on ``block`` -> (T, 2, mh, mw) target cells per hour."""
        arrays = self.arrays
        cell_lat = float(arrays.lat_edges[1] - arrays.lat_edges[0])
        cell_lon = float(arrays.lon_edges[1] - arrays.lon_edges[0])
        return wind_cells_per_hour(u, v, arrays.met_lat[block.lat_index], cell_lat, cell_lon)

    def median_wind_like(self, batch: Batch) -> torch.Tensor:
        """The ``wind`` of ``batch`` replaced by the training median 10 m wind (the normalized
        0 of u_norm / v_norm) at every hour and met cell (wind feature-group dropout)."""
        median = np.asarray(self.normalizers.features.median_, dtype=np.float64)
        u_ms = float(median[FEATURES.index("u_norm")]) * REFERENCE_WIND_M_S
        v_ms = float(median[FEATURES.index("v_norm")]) * REFERENCE_WIND_M_S
        steps, _, mh, mw = batch.wind.shape[1:]
        out = []
        for row, col in zip(batch.row.tolist(), batch.col.tolist(), strict=True):
            block = self.block_of(Tile(int(row), int(col), self.tile_size))
            u = np.full((steps, mh, mw), u_ms, dtype=np.float32)
            v = np.full((steps, mh, mw), v_ms, dtype=np.float32)
            out.append(torch.from_numpy(self._wind_cells(block, u, v)))
        return torch.stack(out).to(batch.wind.dtype)

    def _normalized(self, field: F32) -> F32:
        """NO2 field (any shape) umol m-2 -> normalized and clipped, 0 where NaN."""
        visible = np.isfinite(field)
        values = self.normalizers.no2.transform(np.where(visible, field, 0.0), clip=True)
        return np.where(visible, values, 0.0).astype(np.float32)

    def tile_sample(self, day: DayInputs, tile: Tile) -> Batch:
        """The sample of ``day`` on ``tile``: every model input is built here (module
        docstring), from ``day``'s fields and the meteorology of ``day.met_index``."""
        arrays, norm = self.arrays, self.normalizers
        rows, cols = tile.rows, tile.cols
        x = day.observation[rows, cols]  # (H, W) umol m-2, NaN = not visible
        visible = np.isfinite(x)
        sat = np.stack(
            [
                self._normalized(x),
                visible.astype(np.float32),
                self._normalized(day.composite[rows, cols]),
                day.composite_fraction[rows, cols],
                self._normalized(day.climatology[rows, cols]),
            ]
        ).astype(np.float32)  # (C, H, W)

        y = arrays.no2[day.target_index, rows, cols]
        target_mask = np.isfinite(y)
        target = np.where(
            target_mask, norm.no2.transform(np.where(target_mask, y, 0.0), clip=False), 0.0
        )

        block = self.block_of(tile)
        features, u, v = arrays.met_block(day.met_index, block, norm.features)  # (T, mh, mw, F)
        wind = self._wind_cells(block, u, v)  # (T, 2, mh, mw)

        area = arrays.cell_area[rows, cols]
        return Batch(
            sat=torch.from_numpy(sat),
            aux=torch.from_numpy(np.ascontiguousarray(features.transpose(0, 3, 1, 2))),
            wind=torch.from_numpy(wind),
            met_affine=torch.from_numpy(block.affine.copy()),
            calendar=torch.from_numpy(weekday_one_hot(arrays.times[day.target_index])),
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
