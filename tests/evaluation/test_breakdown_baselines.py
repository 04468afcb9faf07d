"""Breakdowns and classical baselines on tiny arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from no2fusion.config import DataConfig, SplitConfig
from no2fusion.data.arrays import CubeArrays, fit_normalizers
from no2fusion.data.dataset import NO2TileDataset
from no2fusion.data.splits import blocked_split
from no2fusion.evaluation.baselines import MonthlyClimatology, persistence
from no2fusion.evaluation.breakdown import (
    by_pollution_level,
    by_region,
    by_season,
    pollution_bin_edges,
    pollution_bin_labels,
    season_of_month,
)
from no2fusion.evaluation.lightgbm_baseline import FEATURE_NAMES, DayFeatures, LightGBMBaseline
from no2fusion.io.cube import open_cube
from no2fusion.vocab import FEATURES


def test_seasons() -> None:
    assert [season_of_month(m) for m in (12, 1, 3, 6, 9, 11)] == [
        "DJF",
        "DJF",
        "MAM",
        "JJA",
        "SON",
        "SON",
    ]


def test_by_region_splits_cells_by_code() -> None:
    target = np.zeros((2, 1, 3))
    pred = np.array([[[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0]]])
    region = np.array([[0, 3, 3]])
    out = by_region(pred, target, np.ones_like(target), region)
    assert out["background"]["rmse"] == pytest.approx(1.0)
    assert out["urban"]["rmse"] == pytest.approx(np.sqrt((4 + 9) / 2))
    assert out["urban"]["n_valid"] == 4 and out["rural"]["n_valid"] == 0


def test_by_season_uses_the_day_month() -> None:
    times = np.array(["2021-01-15", "2021-07-01"], dtype="datetime64[ns]")
    target = np.zeros((2, 2, 2))
    pred = np.stack([np.ones((2, 2)), 3 * np.ones((2, 2))])
    out = by_season(pred, target, np.ones_like(target), times)
    assert out["DJF"]["rmse"] == pytest.approx(1.0) and out["JJA"]["rmse"] == pytest.approx(3.0)
    assert out["MAM"]["n_valid"] == 0 and out["DJF"]["n_days"] == 1


def test_pollution_bins_come_from_training_quantiles() -> None:
    train = np.concatenate([np.arange(1.0, 101.0), [np.nan]])
    edges = pollution_bin_edges(train, (0.5, 0.9))
    assert edges == pytest.approx([50.5, 90.1])
    assert pollution_bin_labels((0.5, 0.9)) == ["<q50", "q50-q90", ">=q90"]
    target = np.array([[[10.0, 60.0, 95.0, np.nan]]])
    out = by_pollution_level(target + 1, target, np.ones_like(target), edges, (0.5, 0.9))
    assert [out["bins"][k]["n_valid"] for k in ("<q50", "q50-q90", ">=q90")] == [1, 1, 1]
    assert out["edges"] == pytest.approx(edges) and out["bins"]["<q50"]["upper"] == pytest.approx(
        50.5
    )


def test_monthly_climatology_and_fallbacks() -> None:
    times = np.array(["2021-01-01", "2021-01-02", "2021-02-01"], dtype="datetime64[ns]")
    field = np.array([[[1.0, np.nan]], [[3.0, np.nan]], [[10.0, np.nan]]])
    clim = MonthlyClimatology.fit(field, times)
    jan = clim.predict(np.array(["2022-01-20"], dtype="datetime64[ns]"))
    assert jan[0, 0, 0] == pytest.approx(2.0)
    # a month without training data falls back to the cell's mean; an empty cell to the domain mean
    june = clim.predict(np.array(["2022-06-01"], dtype="datetime64[ns]"))
    assert june[0, 0, 0] == pytest.approx(14.0 / 3)
    assert june[0, 0, 1] == pytest.approx(14.0 / 3)
    assert np.isfinite(clim.means).all()


def test_persistence_fills_gaps() -> None:
    out = persistence(np.array([1.0, np.nan]), np.array([5.0, 6.0]))
    assert out.tolist() == [1.0, 6.0]


SPLIT = SplitConfig(block_days=7, buffer_days=1, val_fraction=0.2, test_fraction=0.2, seed=0)


def _datasets(make_cube):  # type: ignore[no-untyped-def]
    arrays = CubeArrays(open_cube(make_cube(days=60, cloud_fraction=0.2)))
    split = blocked_split(arrays.times, SPLIT)
    config = DataConfig(tile_size=16, split=SPLIT, lead=1, composite_days=5)
    normalizers = fit_normalizers(arrays, split.train, (-10.0, 10.0))

    def dataset(name: str) -> NO2TileDataset:
        return NO2TileDataset(
            arrays, normalizers, split.days(name), config, False, 0, split.hidden_from(name)
        )

    return arrays, dataset("train"), dataset("test")


def test_lightgbm_features_are_the_model_inputs_at_each_cell(make_cube) -> None:  # type: ignore[no-untyped-def]
    """Satellite planes are the day's inputs; the met planes are the met grid's features
    interpolated to the cell centres (linear in the met_lat index, so exact)."""
    arrays, _, test_set = _datasets(make_cube)
    day = test_set.evaluation_inputs(test_set.evaluation_positions()[0])
    features = DayFeatures(test_set)(day)
    assert features.shape == (*arrays.shape, len(FEATURE_NAMES))
    column = {name: k for k, name in enumerate(FEATURE_NAMES)}
    np.testing.assert_array_equal(features[..., column["input"]], day.observation)
    np.testing.assert_array_equal(features[..., column["composite"]], day.composite)
    np.testing.assert_array_equal(features[..., column["climatology"]], day.climatology)
    # features[t, h, i, j, f] = f + 0.01 t + 0.1 i with i the met_lat index of the cell centre
    met_position = (arrays.lat - arrays.met_lat[0]) / (arrays.met_lat[1] - arrays.met_lat[0])
    for name in ("t2m", "blh"):
        f = FEATURES.index(name)
        expected = f + 0.01 * day.met_index + 0.1 * met_position[:, None]
        actual = features[..., column[f"{name}@overpass"]]
        np.testing.assert_allclose(actual, np.broadcast_to(expected, actual.shape), atol=1e-4)
    assert "region" not in " ".join(FEATURE_NAMES)  # the region class is never an input


def test_lightgbm_anomaly_target_adds_the_climatology_back(make_cube) -> None:  # type: ignore[no-untyped-def]
    """``anomaly``: the trees' output is the departure from the per-cell training climatology;
    the prediction is that output plus the climatology (the median where a cell has none)."""
    arrays, train_set, test_set = _datasets(make_cube)
    baseline = LightGBMBaseline.fit(train_set, rounds=50, max_samples=5000, seed=0, anomaly=True)
    days = test_set.evaluation_days()[:3]
    pred = baseline.predict(test_set, days)
    build = DayFeatures(test_set)
    median = float(np.asarray(test_set.normalizers.no2.median_).reshape(-1)[0])
    for k, day in enumerate(days):
        features = build(day)
        raw = baseline.booster.predict(features.reshape(-1, features.shape[-1]))
        base = np.where(np.isfinite(day.climatology), day.climatology, median)
        np.testing.assert_allclose(pred[k], raw.reshape(arrays.shape) + base, rtol=1e-5)
    # what the trees learned is small next to the values: the climatology carries the level
    assert float(np.abs(raw).mean()) < 0.5 * float(np.nanmean(np.abs(base)))


def test_lightgbm_learns_the_next_day_from_its_inputs(make_cube) -> None:  # type: ignore[no-untyped-def]
    """no2[t] = 40 + t + 10 row / n: the next day is the input plus one wherever it was seen."""
    arrays, train_set, test_set = _datasets(make_cube)
    baseline = LightGBMBaseline.fit(train_set, rounds=200, max_samples=5000, seed=0)
    days = test_set.evaluation_days()
    pred = baseline.predict(test_set, days)
    assert pred.shape == (len(days), *arrays.shape)
    targets = arrays.no2[[day.target_index for day in days]]
    seen = np.isfinite(targets) & np.isfinite(np.stack([day.observation for day in days]))
    rmse = float(np.sqrt(np.mean((pred - targets)[seen] ** 2)))
    # test days lie beyond the training days' range: trees cannot extrapolate t, but the input
    # carries it
    assert rmse < 0.15 * float(np.std(targets[seen]))
