"""Classical baselines the model must beat, scored on the identical test cells.

Sits in ``evaluation/`` after ``data/``: numpy (+ LightGBM) on (time, lat, lon) fields in
umol m-2. ``SplitFields`` holds the observed fields of a split's days as the model sees them
(from ``DayInputs``), ``run_baselines`` fits and predicts every classical baseline from them.

- ``MonthlyClimatology``: per-cell mean of the TRAINING split by calendar month (fallbacks: the
  cell's all-month training mean, then the domain's training mean);
- ``persistence``: the model's input field (day d - lead), gaps filled from climatology;
- LightGBM (``lightgbm_baseline.py``): gradient-boosted trees on per-cell features with the
  model's information (satellite input, composite, climatology, calendar, local meteorology),
  trained on the training split only, at most ``lightgbm_max_samples`` cells, day by day.

The neural baselines (concatenation fusion, satellite-only) are trained by ``training/`` with
the model's own regime and predicted by the same tiled predictor as the model (``evaluate.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from no2fusion.config import EvaluationConfig
from no2fusion.data.dataset import DayInputs, NO2TileDataset
from no2fusion.evaluation.breakdown import months_of
from no2fusion.evaluation.lightgbm_baseline import LightGBMBaseline
from no2fusion.evaluation.metrics import as_array

Array = NDArray[np.float64]


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
        trees = LightGBMBaseline.fit(
            train_set,
            config.lightgbm_rounds,
            config.lightgbm_max_samples,
            seed,
            num_threads=config.lightgbm_threads,
            anomaly=config.lightgbm_target == "anomaly",
        )
        fields["lightgbm"] = trees.predict(test_set, test.days)
    return BaselineFields(fields, persisted, clim_test)
