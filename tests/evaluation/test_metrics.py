"""Metrics against analytic values: area weighting, NaN padding, skill scores, units."""

from __future__ import annotations

import math

import numpy as np
import pytest

from no2fusion import MetricsCalculator
from no2fusion.evaluation.metrics import compute_all, relative_change
from no2fusion.vocab import UMOL_M2_TO_MOLEC_CM2


def test_constant_error_gives_analytic_scores() -> None:
    target = np.arange(12, dtype=float).reshape(3, 2, 2)
    scores = MetricsCalculator().compute_all(target + 2.0, target)
    assert scores["rmse"] == pytest.approx(2.0)
    assert scores["mae"] == pytest.approx(2.0)
    assert scores["bias"] == pytest.approx(2.0)
    assert scores["n_valid"] == 12
    # r2 = 1 - 4 / var(0..11) with var = (12^2 - 1) / 12
    assert scores["r2"] == pytest.approx(1 - 4 / (143 / 12))
    assert scores["spatial_correlation"] == pytest.approx(1.0)
    assert scores["rmse_molec_cm2"] == pytest.approx(2.0 * UMOL_M2_TO_MOLEC_CM2)
    assert scores["units"] == "umol m-2" and scores["units_molec_cm2"] == "molec cm-2"


def test_rmse_is_root_of_mean_not_mean_of_roots() -> None:
    target = np.zeros((2, 1, 2))
    pred = np.array([[[1.0, 1.0]], [[3.0, 3.0]]])  # daily RMSE 1 and 3
    assert compute_all(pred, target)["rmse"] == pytest.approx(math.sqrt((1 + 9) / 2))


def test_area_weighting() -> None:
    target = np.zeros((1, 2, 1))
    pred = np.array([[[1.0], [3.0]]])
    area = np.array([[3.0], [1.0]])
    scores = compute_all(pred, target, cell_area=area)
    assert scores["mae"] == pytest.approx((3 * 1 + 1 * 3) / 4)
    assert scores["rmse"] == pytest.approx(math.sqrt((3 * 1 + 1 * 9) / 4))
    assert scores["bias"] == pytest.approx(1.5)


def test_nan_padding_and_mask_do_not_change_scores() -> None:
    rng = np.random.default_rng(0)
    target = rng.gamma(2.0, 20.0, size=(4, 5, 6))
    pred = target + rng.normal(0, 5, size=target.shape)
    area = rng.uniform(1, 2, size=(5, 6))
    base = compute_all(pred, target, cell_area=area)
    # pad with NaN cells (target NaN, pred NaN, and masked-out garbage)
    pad_t = np.full((4, 5, 3), np.nan)
    padded_target = np.concatenate([target, pad_t], axis=2)
    padded_pred = np.concatenate([pred, np.full((4, 5, 3), 1e6)], axis=2)
    padded_area = np.concatenate([area, np.ones((5, 3))], axis=1)
    padded = compute_all(padded_pred, padded_target, cell_area=padded_area)
    masked_pred = np.concatenate([pred, np.full((4, 5, 3), 1e6)], axis=2)
    masked_target = np.concatenate([target, np.full((4, 5, 3), 7.0)], axis=2)
    mask = np.concatenate([np.ones((5, 6)), np.zeros((5, 3))], axis=1)
    masked = compute_all(masked_pred, masked_target, mask=mask, cell_area=padded_area)
    for key in ("rmse", "mae", "bias", "r2", "spatial_correlation", "n_valid"):
        assert padded[key] == pytest.approx(base[key]), key
        assert masked[key] == pytest.approx(base[key]), key


def test_skill_scores_perfect_and_reference() -> None:
    rng = np.random.default_rng(1)
    target = rng.normal(50, 10, size=(3, 4, 4))
    reference = target + rng.normal(0, 3, size=target.shape)
    perfect = compute_all(target, target, references={"persistence": reference})
    assert perfect["skill_vs_persistence"] == pytest.approx(1.0)
    same = compute_all(reference, target, references={"persistence": reference})
    assert same["skill_vs_persistence"] == pytest.approx(0.0)
    # half the error -> MSE / 4 -> skill 0.75
    half = compute_all(target + 0.5 * (reference - target), target, references={"clim": reference})
    assert half["skill_vs_clim"] == pytest.approx(0.75)


def test_spatial_correlation_is_per_day_mean() -> None:
    target = np.array([[[1.0, 2.0, 3.0, 4.0]], [[1.0, 2.0, 3.0, 4.0]]])
    pred = np.array([[[2.0, 4.0, 6.0, 8.0]], [[4.0, 3.0, 2.0, 1.0]]])  # r = +1 and -1
    assert compute_all(pred, target)["spatial_correlation"] == pytest.approx(0.0)


def test_no_valid_cell_reports_nan_and_zero_count() -> None:
    scores = compute_all(np.full((2, 2), np.nan), np.zeros((2, 2)))
    assert scores["n_valid"] == 0 and math.isnan(scores["rmse"])


def test_torch_tensors_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    scores = MetricsCalculator().compute_all(torch.ones(2, 3, 3), torch.zeros(2, 3, 3))
    assert scores["rmse"] == pytest.approx(1.0)


def test_relative_change() -> None:
    assert relative_change(1.1, 1.0) == pytest.approx(0.1)
    assert math.isnan(relative_change(1.0, 0.0))


def test_calculator_breakdown_helpers() -> None:
    target = np.zeros((2, 1, 2))
    pred = np.array([[[1.0, 2.0]], [[1.0, 2.0]]])
    times = np.array(["2021-01-01", "2021-04-01"], dtype="datetime64[ns]")
    calc = MetricsCalculator()
    regions = calc.compute_by_region(pred, target, np.array([[0, 3]]))
    assert regions["background"]["rmse"] == pytest.approx(1.0) and regions["urban"][
        "rmse"
    ] == pytest.approx(2.0)
    seasons = calc.compute_by_season(pred, target, times)
    assert (
        seasons["DJF"]["n_valid"] == 2
        and seasons["MAM"]["n_valid"] == 2
        and seasons["JJA"]["n_valid"] == 0
    )
