"""Breakdowns and classical baselines on tiny arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from no2fusion.evaluation.baselines import (
    CellFeatures,
    MonthlyClimatology,
    fit_lightgbm,
    persistence,
    predict_lightgbm,
)
from no2fusion.evaluation.breakdown import (
    by_pollution_level,
    by_region,
    by_season,
    pollution_bin_edges,
    pollution_bin_labels,
    season_of_month,
)


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


def test_lightgbm_learns_a_simple_rule() -> None:
    rng = np.random.default_rng(0)
    n_time, n = 40, 8
    times = np.datetime64("2021-01-01") + np.arange(n_time).astype("timedelta64[D]")
    inputs = rng.uniform(10, 100, size=(n_time, n, n))
    met = rng.normal(size=(n_time, 2))
    target = 0.8 * inputs + 10 * met[:, :1, None]  # depends on input and the first met feature
    inputs_gappy = inputs.copy()
    inputs_gappy[rng.uniform(size=inputs.shape) < 0.1] = np.nan
    clim = np.full_like(inputs, 50.0)
    region = np.zeros((n, n), dtype=int)
    feats = CellFeatures.build(inputs_gappy, clim, region, times, met, ["m0", "m1"])
    assert feats.names[-2:] == ["m0", "m1"] and feats.shape == (n_time, n, n)
    booster = fit_lightgbm(feats, target, rounds=200, max_samples=2000, seed=0, num_threads=1)
    pred = predict_lightgbm(booster, feats)
    assert pred.shape == target.shape
    ok = np.isfinite(inputs_gappy)
    rmse = np.sqrt(np.mean((pred - target)[ok] ** 2))
    assert rmse < 0.15 * np.std(target[ok])
