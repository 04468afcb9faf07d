"""Classical baselines the model must beat, scored on the identical test cells.

Sits in ``evaluation/`` after ``data/``: numpy (+ LightGBM) on (time, lat, lon) fields in
umol m-2. ``SplitFields`` holds the observed fields of a split's days as the model sees them
(from ``DayInputs``), ``run_baselines`` fits and predicts every classical baseline from them.

- ``MonthlyClimatology``: per-cell mean of the TRAINING split by calendar month (fallbacks: the
  cell's all-month training mean, then the domain's training mean);
- ``persistence``: the model's input field (day d - lead), gaps filled from climatology;
- ``CellFeatures`` + ``fit_lightgbm`` / ``predict_lightgbm``: gradient-boosted trees on per-cell
  features (input value and validity, 3x3 / 7x7 neighbourhood means and valid fractions, the
  cell's training climatology, region class, day of year, and the tile-mean meteorology the
  neural model sees), trained on the training split only, subsampled to ``max_samples`` rows.

The neural baselines (concatenation fusion, satellite-only) are trained by ``training/`` with
the model's own regime and predicted by the same tiled predictor as the model (``evaluate.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from no2fusion.config import EvaluationConfig
from no2fusion.data.dataset import DayInputs, NO2TileDataset
from no2fusion.evaluation.breakdown import months_of
from no2fusion.evaluation.metrics import as_array
from no2fusion.vocab import FEATURES

Array = NDArray[np.float64]
# Met features given to LightGBM as their 24-h means (the time features are left at overpass).
_MET_MEAN_FEATURES = FEATURES[:9]


@dataclass(frozen=True)
class MonthlyClimatology:
    """Per-cell monthly means. ``means``: (12, lat, lon) umol m-2, finite everywhere."""

    means: Array

    @classmethod
    def fit(cls, field: ArrayLike, times: ArrayLike) -> MonthlyClimatology:
        """Fit on TRAINING fields (time, lat, lon) umol m-2 with NaN gaps; times (time,)."""
        values = as_array(field)
        if values.ndim != 3:
            raise ValueError(f"climatology needs (time, lat, lon), got shape {values.shape}")
        finite = np.isfinite(values)
        if not finite.any():
            raise ValueError("climatology: the training field has no finite value")
        filled = np.where(finite, values, 0.0)
        months = months_of(times)
        sums = np.zeros((12, *values.shape[1:]))
        counts = np.zeros((12, *values.shape[1:]))
        for month in range(1, 13):
            days = months == month
            sums[month - 1] = filled[days].sum(axis=0)
            counts[month - 1] = finite[days].sum(axis=0)
        cell_count = counts.sum(axis=0)
        domain_mean = float(filled.sum() / finite.sum())
        cell_mean = np.where(
            cell_count > 0, sums.sum(axis=0) / np.maximum(cell_count, 1), domain_mean
        )
        means = np.where(counts > 0, sums / np.maximum(counts, 1), cell_mean[None])
        return cls(means=means)

    def predict(self, times: ArrayLike) -> Array:
        """Climatological field for each time: (time, lat, lon) umol m-2."""
        return self.means[months_of(times) - 1]


def persistence(input_field: ArrayLike, fill: ArrayLike) -> Array:
    """The input field (time, lat, lon) where finite, else ``fill`` (same shape), umol m-2."""
    x, f = as_array(input_field), as_array(fill)
    return np.where(np.isfinite(x), x, f)


def _neighbourhood(values: Array, finite: NDArray[np.bool_], size: int) -> tuple[Array, Array]:
    """Mean of the finite values and the finite fraction in a size x size window, per day."""
    filled = np.where(finite, values, 0.0)
    footprint = (1, size, size)  # no smoothing across time
    total = ndimage.uniform_filter(filled, footprint, mode="constant")
    fraction = ndimage.uniform_filter(finite.astype(np.float64), footprint, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(fraction > 1e-9, total / fraction, np.nan)
    return mean, fraction


@dataclass
class CellFeatures:
    """Per-cell feature table for the tree baseline, materialised row by row on demand.

    ``spatial``: name -> (time, lat, lon) arrays; ``met``: (time, k) or (time, lat, lon, k)
    tile-mean meteorology (any monotonic scaling, e.g. normalized); ``met_names``: k names.
    """

    spatial: dict[str, Array]
    met: Array
    met_names: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        input_field: ArrayLike,
        climatology: ArrayLike,
        region: ArrayLike,
        times: ArrayLike,
        met: ArrayLike,
        met_names: Sequence[str],
    ) -> CellFeatures:
        """Features of each (day, cell).

        Args:
            input_field: (time, lat, lon) the model's satellite input, umol m-2, NaN = gap.
            climatology: (time, lat, lon) training climatology for each day, umol m-2.
            region: (lat, lon) region class codes.
            times: (time,) datetime64 target days (day of year features).
            met: (time, k) or (time, lat, lon, k) meteorology features.
            met_names: the k names.
        """
        x = as_array(input_field)
        finite = np.isfinite(x)
        mean3, _ = _neighbourhood(x, finite, 3)
        mean7, frac7 = _neighbourhood(x, finite, 7)
        doy = np.asarray(times, dtype="datetime64[D]")
        day_of_year = (doy - doy.astype("datetime64[Y]")).astype(np.float64) + 1.0
        angle = 2 * np.pi * day_of_year / 365.25
        shape = x.shape
        spatial = {
            "input": x,
            "input_valid": finite.astype(np.float64),
            "mean3": mean3,
            "mean7": mean7,
            "valid_fraction7": frac7,
            "climatology": np.broadcast_to(as_array(climatology), shape),
            "region": np.broadcast_to(as_array(region), shape),
            "doy_sin": np.broadcast_to(np.sin(angle)[:, None, None], shape),
            "doy_cos": np.broadcast_to(np.cos(angle)[:, None, None], shape),
        }
        met_array = as_array(met)
        if met_array.shape[0] != shape[0] or met_array.ndim not in (2, 4):
            raise ValueError(f"met must be (time, k) or (time, lat, lon, k), got {met_array.shape}")
        return cls(spatial=spatial, met=met_array, met_names=list(met_names))

    @property
    def names(self) -> list[str]:
        return [*self.spatial, *self.met_names]

    @property
    def shape(self) -> tuple[int, ...]:
        return next(iter(self.spatial.values())).shape

    def rows(
        self, t: NDArray[np.int64], y: NDArray[np.int64], x: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        """Feature rows (n, n_features) float32 for cells (t[i], y[i], x[i])."""
        columns = [values[t, y, x] for values in self.spatial.values()]
        met = self.met[t] if self.met.ndim == 2 else self.met[t, y, x]  # (n, k)
        return np.column_stack([*columns, met]).astype(np.float32)


def fit_lightgbm(
    features: CellFeatures,
    target: ArrayLike,
    rounds: int,
    max_samples: int,
    seed: int = 0,
    num_threads: int = 1,
) -> Any:
    """Train a LightGBM regressor on cells with a finite TRAINING target (time, lat, lon).

    At most ``max_samples`` cells, drawn uniformly at random (seeded). ``num_threads`` 0 means
    all cores. Returns the Booster (deterministic for a given seed and thread count).
    """
    import lightgbm as lgb

    y_field = as_array(target)
    t, y, x = np.nonzero(np.isfinite(y_field))
    if t.size == 0:
        raise ValueError("lightgbm: no finite training target")
    if t.size > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(t.size, max_samples, replace=False))
        t, y, x = t[keep], y[keep], x[keep]
    data = lgb.Dataset(
        features.rows(t, y, x),
        label=y_field[t, y, x],
        feature_name=features.names,
        free_raw_data=True,
    )
    params = {
        "objective": "regression",
        "learning_rate": 0.05,
        "num_leaves": 63,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": seed,
        "deterministic": True,
        "num_threads": num_threads,
        "verbosity": -1,
    }
    return lgb.train(params, data, num_boost_round=rounds)


def predict_lightgbm(booster: Any, features: CellFeatures, chunk_cells: int = 262_144) -> Array:
    """Predictions for every cell: (time, lat, lon) in the target's units (several days per
    ``booster.predict`` call, up to ``chunk_cells`` rows)."""
    n_time, n_lat, n_lon = features.shape
    y, x = (a.ravel() for a in np.meshgrid(np.arange(n_lat), np.arange(n_lon), indexing="ij"))
    days_per_call = max(1, chunk_cells // y.size)
    out = np.empty((n_time, n_lat, n_lon))
    for start in range(0, n_time, days_per_call):
        days = np.arange(start, min(start + days_per_call, n_time))
        t = np.repeat(days, y.size)  # (days * cells,) day-major, like the reshape below
        rows = features.rows(t, np.tile(y, days.size), np.tile(x, days.size))
        out[days] = booster.predict(rows).reshape(days.size, n_lat, n_lon)
    return out


@dataclass(frozen=True)
class SplitFields:
    """The observed fields of some days of a split, umol m-2.

    times (n,) target days; target (n, lat, lon) the QA-filtered observation of each target
    day; observation (n, lat, lon) the satellite input as the model sees it (day d - lead, NaN
    where not observed or hidden).
    """

    days: tuple[DayInputs, ...]
    times: NDArray[np.datetime64]
    target: Array
    observation: Array

    @classmethod
    def of(cls, dataset: NO2TileDataset, days: Sequence[DayInputs]) -> SplitFields:
        arrays = dataset.arrays
        targets = [day.target_index for day in days]
        observation = np.stack([day.observation for day in days]) if days else np.zeros(0)
        return cls(
            days=tuple(days),
            times=arrays.times[targets],
            target=arrays.no2[targets].astype(np.float64),
            observation=np.asarray(observation, dtype=np.float64),
        )


def met_features(dataset: NO2TileDataset, days: Sequence[DayInputs]) -> tuple[Array, list[str]]:
    """The meteorology the model sees, as LightGBM features: per day the overpass step of all
    13 features plus the 24-h means of the 9 meteorological ones (normalized), from each
    covering tile's sample; (days, k) for a one-tile domain, else (days, lat, lon, k) with each
    cell taking its covering tile's values. Axes of ``aux`` other than hour and feature (if
    any) are averaged."""
    hour, feature = dataset.aux_axes.index("hour"), dataset.aux_axes.index("feature")
    other = tuple(axis for axis in range(len(dataset.aux_axes)) if axis not in (hour, feature))
    mean_index = [FEATURES.index(name) for name in _MET_MEAN_FEATURES]
    names = [f"{n}@overpass" for n in FEATURES] + [f"{n}_24h_mean" for n in _MET_MEAN_FEATURES]

    def vector(day: DayInputs, tile: Any) -> Array:
        aux = dataset.tile_sample(day, tile).aux.numpy().astype(np.float64)
        series = np.moveaxis(aux.mean(axis=other) if other else aux, (hour, feature), (0, 1))
        return np.concatenate([series[-1], series[:, mean_index].mean(axis=0)])  # (k,)

    tiles = dataset.tiles
    if len(tiles) == 1:
        return np.stack([vector(day, tiles[0]) for day in days]), names
    met = np.zeros((len(days), *dataset.arrays.shape, len(names)))
    for k, day in enumerate(days):
        for tile in tiles:
            met[k, tile.rows, tile.cols] = vector(day, tile)
    return met, names


@dataclass(frozen=True)
class BaselineFields:
    """The classical baselines' test fields (days, lat, lon) umol m-2: ``fields`` holds those
    asked for; persistence and climatology are always there as the skill references."""

    fields: dict[str, Array]
    persistence: Array
    climatology: Array


def run_baselines(
    train_set: NO2TileDataset,
    test_set: NO2TileDataset,
    test: SplitFields,
    train_day_indices: NDArray[np.int64],
    wanted: Sequence[str],
    config: EvaluationConfig,
    seed: int,
) -> BaselineFields:
    """Fit the climatology on every training day, LightGBM (when wanted) on the training
    split's evaluated days, and predict the test days of ``test``."""
    arrays = train_set.arrays
    train_field = arrays.no2[train_day_indices].astype(np.float64)
    climatology = MonthlyClimatology.fit(train_field, arrays.times[train_day_indices])
    clim_test = climatology.predict(test.times)
    persisted = persistence(test.observation, clim_test)
    fields: dict[str, Array] = {}
    if "persistence" in wanted:
        fields["persistence"] = persisted
    if "climatology" in wanted:
        fields["climatology"] = clim_test
    if "lightgbm" in wanted:
        train = SplitFields.of(train_set, train_set.evaluation_days())
        train_met, names = met_features(train_set, train.days)
        train_features = CellFeatures.build(
            train.observation,
            climatology.predict(train.times),
            arrays.region,
            train.times,
            train_met,
            names,
        )
        booster = fit_lightgbm(
            train_features,
            train.target,
            config.lightgbm_rounds,
            config.lightgbm_max_samples,
            seed,
            num_threads=config.lightgbm_threads,
        )
        test_met, _ = met_features(test_set, test.days)
        test_features = CellFeatures.build(
            test.observation, clim_test, arrays.region, test.times, test_met, names
        )
        fields["lightgbm"] = predict_lightgbm(booster, test_features)
    return BaselineFields(fields, persisted, clim_test)
