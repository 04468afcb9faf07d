"""Scores against the simulated noise-free truth on arrays with known answers: the
observation-noise floor, each model's share of the predictable variance, and the per-region
truth against the observations (the R2 a perfect model reaches where the noise is zero-mean)."""

from __future__ import annotations

import numpy as np
import pytest

from no2fusion.evaluation.breakdown import pollution_bin_edges
from no2fusion.evaluation.results import TruthScores, dump, parse
from no2fusion.evaluation.scoring import ScoringCells, truth_scores
from no2fusion.vocab import REGION_CODES


def _cells(observed: np.ndarray, region: np.ndarray) -> ScoringCells:
    times = np.array(["2023-07-01"], dtype="datetime64[ns]")
    return ScoringCells(
        np.ones(observed.shape, dtype=bool),
        observed,
        np.ones(observed.shape[1:]),
        region,
        times,
        tuple(pollution_bin_edges(observed, (0.5, 0.9))),
        (0.5, 0.9),
        {"persistence": observed, "climatology": observed},
    )


def test_floor_and_truth_by_region_have_their_analytic_values() -> None:
    # industrial: truth 0, 0, 2, 2 with noise +1, -1, +1, -1 (orthogonal to the truth), so the
    # observations vary by 2 (variance var(truth) + 1 = 2) and the truth leaves 1 unexplained:
    # R2 = 1 - 1 / 2. urban: observed exactly, R2 = 1.
    truth = np.array([[[0.0, 0.0, 2.0, 2.0, 5.0, 7.0, 9.0, 11.0]]])  # (days, lat, lon)
    noise = np.array([[[1.0, -1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0]]])
    observed = truth + noise
    region = np.array([[REGION_CODES["industrial"]] * 4 + [REGION_CODES["urban"]] * 4])
    cells = _cells(observed, region)
    scores = truth_scores(truth, observed, {"perfect": truth, "zero": np.zeros_like(truth)}, cells)

    assert scores.noise_floor_rmse == pytest.approx(np.sqrt(4 / 8))
    assert scores.truth_by_region["industrial"].r2 == pytest.approx(0.5)
    assert scores.truth_by_region["industrial"].rmse == pytest.approx(1.0)
    assert scores.truth_by_region["urban"].r2 == pytest.approx(1.0)
    assert scores.truth_by_region["urban"].rmse == pytest.approx(0.0)
    assert scores.truth_by_region["background"].n_valid == 0  # no such cells: not scored

    perfect, zero = scores.rows
    assert perfect.explained_predictable_variance == pytest.approx(1.0)
    assert perfect.rmse_over_floor == pytest.approx(0.0)
    assert zero.rmse == pytest.approx(np.sqrt(np.mean(truth**2)))
    assert scores.model.rmse == pytest.approx(0.0)  # the first prediction is the model


def test_truth_by_region_survives_a_metrics_round_trip() -> None:
    """Older metrics files have no ``truth_by_region``: they parse with an empty one."""
    truth = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    observed = truth + np.array([[[0.5, -0.5, 0.5, -0.5]]])
    region = np.full((1, 4), REGION_CODES["urban"])
    scores = truth_scores(truth, observed, {"model": truth}, _cells(observed, region))
    stored = dump(scores)
    assert parse(TruthScores, stored).truth_by_region["urban"].r2 == pytest.approx(
        scores.truth_by_region["urban"].r2
    )
    del stored["truth_by_region"]
    assert parse(TruthScores, stored).truth_by_region == {}
