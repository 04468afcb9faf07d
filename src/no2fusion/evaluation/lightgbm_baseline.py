"""The LightGBM baseline: gradient-boosted trees on per-cell features, with the model's inputs.

Sits in ``evaluation/`` beside ``baselines.py`` (which runs it with the other classical
baselines). The trees get the same information as the neural model, per cell (DESIGN §7):

- the satellite input of day d - lead as the model sees it (value and validity) and its 3 x 3
  and 7 x 7 neighbourhood means and valid fractions;
- the trailing composite and its valid fraction, and the per-cell training climatology (the
  model's ``composite``, ``composite_fraction`` and ``climatology`` channels);
- the calendar: weekday (categorical) and day of year (sin, cos);
- the meteorology where the cell is: the 13 features at the overpass step and the 24-h means of
  the 9 meteorological ones, bilinearly interpolated from the met grid to the cell centre.

The region class is never a feature (it comes from the true emission map in the simulated world).
Memory is bounded by days, not by days x cells: features are built one day at a time
(``day_features``); training draws at most ``lightgbm_max_samples`` valid cells of the training
days (seeded) and keeps only their rows; prediction goes day by day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from no2fusion.data.dataset import DayInputs, NO2TileDataset
from no2fusion.data.inputs import weekday_of
from no2fusion.vocab import FEATURES

F32 = NDArray[np.float32]
# Met features given as their 24-h means (the time features only at the overpass step).
_MET_MEAN_FEATURES = FEATURES[:9]
_SATELLITE_NAMES = (
    "input",
    "input_valid",
    "mean3",
    "valid_fraction3",
    "mean7",
    "valid_fraction7",
    "composite",
    "composite_fraction",
    "climatology",
)
_CALENDAR_NAMES = ("weekday", "doy_sin", "doy_cos")
FEATURE_NAMES: tuple[str, ...] = (
    *_SATELLITE_NAMES,
    *_CALENDAR_NAMES,
    *(f"{name}@overpass" for name in FEATURES),
    *(f"{name}_24h_mean" for name in _MET_MEAN_FEATURES),
)
WEEKDAY_COLUMN = FEATURE_NAMES.index("weekday")


def _neighbourhood(values: F32, size: int) -> tuple[F32, F32]:
    """Mean of the finite values of a (lat, lon) field in a size x size window (NaN where the
    window has none) and the finite fraction."""
    finite = np.isfinite(values)
    total = ndimage.uniform_filter(np.where(finite, values, 0.0), size, mode="constant")
    fraction = ndimage.uniform_filter(finite.astype(np.float64), size, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(fraction > 1e-9, total / fraction, np.nan)
    return mean.astype(np.float32), fraction.astype(np.float32)


def _linear_weights(
    targets: NDArray[np.float64], grid: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """For each target coordinate, the lower grid index and the weight of the upper neighbour
    of linear interpolation on an ascending grid (clamped at its ends)."""
    position = np.interp(targets, grid, np.arange(grid.size, dtype=np.float64))
    lower = np.clip(np.floor(position).astype(np.int64), 0, max(grid.size - 2, 0))
    weight = np.clip(position - lower, 0.0, 1.0) if grid.size > 1 else np.zeros_like(position)
    return lower, weight


class DayFeatures:
    """Builds the (lat, lon, n_features) float32 feature map of one day of a dataset."""

    def __init__(self, dataset: NO2TileDataset) -> None:
        self.dataset = dataset
        arrays = dataset.arrays
        self._i0, self._wi = _linear_weights(arrays.lat, arrays.met_lat)
        self._j0, self._wj = _linear_weights(arrays.lon, arrays.met_lon)
        self._single_lat = arrays.met_lat.size == 1
        self._single_lon = arrays.met_lon.size == 1
        self._mean_index = [FEATURES.index(name) for name in _MET_MEAN_FEATURES]

    def _met_at_cells(self, met_index: int) -> F32:
        """(lat, lon, 22) float32: overpass step and 24-h means, interpolated to the cells."""
        raw = self.dataset.arrays.raw_features(np.array([met_index]))[0]  # (T, mh, mw, F)
        met = np.concatenate([raw[-1], raw[..., self._mean_index].mean(axis=0)], axis=-1)
        i1 = self._i0 if self._single_lat else self._i0 + 1
        j1 = self._j0 if self._single_lon else self._j0 + 1
        wi, wj = self._wi[:, None, None], self._wj[None, :, None]
        rows_low, rows_high = met[self._i0], met[i1]  # (lat, mw, k)
        by_lat = rows_low[:, self._j0] * (1 - wj) + rows_low[:, j1] * wj
        by_lat_high = rows_high[:, self._j0] * (1 - wj) + rows_high[:, j1] * wj
        return np.nan_to_num(by_lat * (1 - wi) + by_lat_high * wi).astype(np.float32)

    def __call__(self, day: DayInputs) -> F32:
        """Feature map (lat, lon, len(FEATURE_NAMES)) of ``day`` (NaN where a value is
        undefined: LightGBM's missing value)."""
        arrays = self.dataset.arrays
        x = day.observation
        mean3, fraction3 = _neighbourhood(x, 3)
        mean7, fraction7 = _neighbourhood(x, 7)
        target_day = np.asarray(arrays.times[day.target_index], dtype="datetime64[D]")
        day_of_year = float((target_day - target_day.astype("datetime64[Y]")).astype(int)) + 1.0
        angle = 2 * np.pi * day_of_year / 365.25
        weekday = weekday_of(target_day)
        shape = x.shape
        planes = [
            x,
            np.isfinite(x).astype(np.float32),
            mean3,
            fraction3,
            mean7,
            fraction7,
            day.composite,
            day.composite_fraction,
            day.climatology,
            np.full(shape, weekday, dtype=np.float32),
            np.full(shape, np.sin(angle), dtype=np.float32),
            np.full(shape, np.cos(angle), dtype=np.float32),
        ]
        satellite = np.stack(planes, axis=-1).astype(np.float32)  # (lat, lon, 12)
        return np.concatenate([satellite, self._met_at_cells(day.met_index)], axis=-1)


def fit_lightgbm_rows(
    rows: F32, labels: NDArray[np.floating], rounds: int, seed: int = 0, num_threads: int = 1
) -> Any:
    """Train a LightGBM regressor on feature ``rows`` (n, len(FEATURE_NAMES)) and ``labels``
    (n,) umol m-2. ``num_threads`` 0 = all cores. Deterministic for a seed and thread count."""
    import lightgbm as lgb

    data = lgb.Dataset(
        rows,
        label=np.asarray(labels, dtype=np.float64),
        feature_name=list(FEATURE_NAMES),
        categorical_feature=[WEEKDAY_COLUMN],
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


def _base(dataset: NO2TileDataset, day: DayInputs) -> F32:
    """(lat, lon) umol m-2 the anomaly trees add to: the per-cell training climatology, the
    training median where a cell has none (the neural model's ``climatology`` channel)."""
    median = float(np.asarray(dataset.normalizers.no2.median_).reshape(-1)[0])
    return np.where(np.isfinite(day.climatology), day.climatology, median).astype(np.float32)


@dataclass(frozen=True)
class LightGBMBaseline:
    """A booster trained on a dataset's training days (``fit``), predicting day by day.

    ``anomaly``: the trees learn the departure from the per-cell training climatology, which
    prediction adds back (as the neural models' ``model.residual: climatology``)."""

    booster: Any
    anomaly: bool = False

    @classmethod
    def fit(
        cls,
        train_set: NO2TileDataset,
        rounds: int,
        max_samples: int,
        seed: int,
        num_threads: int = 1,
        anomaly: bool = False,
    ) -> LightGBMBaseline:
        """Fit on at most ``max_samples`` valid target cells of ``train_set``'s days (drawn
        uniformly, seeded), building features one day at a time; ``anomaly``: on the departure
        from the climatology (class docstring)."""
        arrays = train_set.arrays
        positions = train_set.evaluation_positions()
        targets = [int(train_set.day_indices[k]) for k in positions]
        valid = np.isfinite(arrays.no2[targets])  # (days, lat, lon) bool, small
        day, row, col = np.nonzero(valid)
        if day.size == 0:
            raise ValueError("lightgbm: no finite training target")
        if day.size > max_samples:
            keep = np.sort(np.random.default_rng(seed).choice(day.size, max_samples, replace=False))
            day, row, col = day[keep], row[keep], col[keep]
        build = DayFeatures(train_set)
        rows: list[F32] = []
        labels: list[NDArray[np.float32]] = []
        for local in np.unique(day):
            chosen = day == local
            inputs = train_set.evaluation_inputs(positions[int(local)])
            features = build(inputs)
            rows.append(features[row[chosen], col[chosen]])
            label = arrays.no2[targets[int(local)], row[chosen], col[chosen]]
            if anomaly:
                label = label - _base(train_set, inputs)[row[chosen], col[chosen]]
            labels.append(label)
        booster = fit_lightgbm_rows(
            np.concatenate(rows), np.concatenate(labels), rounds, seed, num_threads
        )
        return cls(booster, anomaly)

    def predict(self, dataset: NO2TileDataset, days: Iterable[DayInputs]) -> NDArray[np.float64]:
        """(days, lat, lon) umol m-2, one day's cells per ``booster.predict`` call."""
        build = DayFeatures(dataset)
        out = []
        for day in days:
            features = build(day)  # (lat, lon, n)
            flat = features.reshape(-1, features.shape[-1])
            values = self.booster.predict(flat).reshape(features.shape[:2])
            out.append(values + _base(dataset, day) if self.anomaly else values)
        if not out:
            return np.zeros((0, *dataset.arrays.shape))
        return np.stack(out).astype(np.float64)
