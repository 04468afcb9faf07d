"""Attention entropy, verdicts, perturbations and the seed's robustness expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from no2fusion.evaluation import ablation, robustness
from no2fusion.evaluation.attention import (
    entropy_ratio,
    entropy_ratio_per_layer,
    pick_days,
    summarise_attention,
    token_centres,
)
from no2fusion.evaluation.robustness import Perturbed
from no2fusion.vocab import FEATURE_GROUPS, FEATURES


def test_entropy_ratio_of_uniform_and_one_hot() -> None:
    uniform = np.full((2, 1, 3, 5, 24), 1 / 24)
    assert entropy_ratio(uniform) == pytest.approx(1.0)
    one_hot = np.zeros((2, 1, 3, 5, 24))
    one_hot[..., 7] = 1.0
    assert entropy_ratio(one_hot) == pytest.approx(0.0, abs=1e-9)
    half = np.zeros((1, 1, 1, 1, 4))
    half[..., :2] = 0.5  # entropy ln 2 over ln 4
    assert entropy_ratio(half) == pytest.approx(0.5)
    mixed = np.concatenate([uniform, one_hot], axis=1)  # layer 0 uniform, layer 1 one-hot
    assert entropy_ratio_per_layer(mixed) == pytest.approx([1.0, 0.0], abs=1e-9)


def test_verdicts_state_failures_plainly() -> None:
    out = ablation.verdicts(
        10.0, {"concat": 10.2, "satellite_only": 9.0, "climatology": 20.0}, 0.95, 0.001, 0.01
    )
    concat, satellite, attention, shuffle, climatology = out
    assert concat.passed is False and "does NOT beat" in concat.statement
    assert concat.value == pytest.approx(1 - 10.0 / 10.2)
    assert satellite.passed is False and "does NOT help" in satellite.statement
    assert attention.passed is False and "collapsed" in attention.statement
    assert shuffle.passed is False
    assert climatology.passed is True and "climatology" in climatology.criterion
    good = ablation.verdicts(9.0, {"concat": 10.0, "satellite_only": 9.5}, 0.5, 0.2, 0.01)
    assert [v.passed for v in good] == [True, True, True, True]
    missing = ablation.verdicts(9.0, {}, None, None, 0.01)
    assert [v.passed for v in missing] == [None, None, None, None]


def _observations(n: int = 3, size: int = 10, seed: int = 0) -> np.ndarray:
    """(n, size, size) physical input fields with a seeded ~40 % of cells not observed."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(10.0, 90.0, size=(n, size, size)).astype(np.float32)
    values[rng.uniform(size=values.shape) > 0.6] = np.nan
    return values


def test_random_dropout_hides_the_requested_share_of_valid_cells() -> None:
    observation = _observations()
    valid = np.isfinite(observation)
    hidden = robustness.random_dropout(valid, 0.3, np.random.default_rng(1))
    assert not (hidden & ~valid).any()
    for sample, cells in zip(valid, hidden, strict=True):
        assert cells.sum() == round(0.3 * sample.sum())
    out = robustness.hide(observation, hidden)
    assert np.isnan(out[hidden]).all() and out.dtype == np.float32
    np.testing.assert_array_equal(out[~hidden], observation[~hidden])  # NaN where it was NaN


def test_cloud_dropout_uses_the_closest_borrowed_gap() -> None:
    valid = np.ones((1, 4, 4), dtype=bool)
    pool = np.zeros((3, 4, 4), dtype=bool)
    pool[0, :1] = True  # hides 25 %
    pool[1, :2] = True  # hides 50 %
    pool[2, :] = True  # hides 100 %
    hide, achieved = robustness.cloud_dropout(valid, pool, 0.45, np.random.default_rng(0))
    assert np.array_equal(hide[0], pool[1]) and achieved == pytest.approx(0.5)


def test_feature_group_dropout_zeroes_exactly_the_group() -> None:
    aux = torch.ones(2, 24, len(FEATURES))
    out = robustness.drop_feature_group(aux, "wind", feature_axis=2)
    zeroed = [FEATURES[i] for i in range(len(FEATURES)) if (out[..., i] == 0).all()]
    assert zeroed == list(FEATURE_GROUPS["wind"]) and float(aux.min()) == 1.0
    # the feature axis is an argument: meteorology per met cell (B, T, F, h, w) works the same
    local = robustness.drop_feature_group(torch.ones(2, 24, len(FEATURES), 3, 3), "blh", 2)
    assert (local[:, :, FEATURES.index("blh")] == 0).all() and float(local.sum()) == 2 * 24 * 12 * 9


def test_noise_is_multiplicative_in_physical_units() -> None:
    observation = _observations(n=50, size=20)
    observation = np.where(np.isfinite(observation), 50.0, np.nan).astype(np.float32)
    out = robustness.add_noise(observation, 0.1, np.random.default_rng(0))
    valid = np.isfinite(observation)
    assert out[valid].mean() == pytest.approx(50.0, rel=0.01)
    assert out[valid].std() == pytest.approx(5.0, rel=0.05)  # 10 % of 50
    assert np.isnan(out[~valid]).all() and out.dtype == np.float32


def test_judge_against_the_seed() -> None:
    rows = [
        Perturbed("dropout_random", "d", 0.1, "10 %", 1.05, 0.05),
        Perturbed("dropout_random", "d", 0.3, "30 %", 1.4, 0.4),
        Perturbed("dropout_cloud", "c", 0.5, "50 %", 1.3, 0.3),
        Perturbed("noise", "n", 0.05, "5 %", 1.06, 0.06),
        Perturbed("feature_group", "g", "wind", "wind", 1.2, 0.2),
        Perturbed("feature_group", "g", "blh", "blh", 1.001, 0.001),
        Perturbed("feature_group", "g", "time", "time", 1.1, 0.1),
    ]
    judged = robustness.judge(rows, climatology_rmse=1.35)
    assert [r.passed for r in judged] == [True, False, True, False, True, False, None]
    assert [r.better_than_climatology for r in judged][:3] == [True, False, True]
    assert judged[0].expectation == "< +10 % RMSE" and judged[0].limit == 0.1


def test_attention_summary_maps() -> None:
    weights = np.zeros((2, 2, 4, 3))  # layers, heads, tokens (2 x 2), T = 3
    weights[..., 0] = 1.0
    weights[:, :, 3] = 1 / 3  # last token uniform
    summary = summarise_attention(weights, (2, 2), hours=np.array([-2.0, -1.0, 0.0]))
    assert summary.argmax_hour.tolist() == [[-2.0, -2.0], [-2.0, -2.0]]
    assert summary.entropy_ratio[1, 1] == pytest.approx(1.0)
    assert summary.entropy_ratio[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert summary.mean_weight.sum() == pytest.approx(1.0)
    lat, lon = token_centres(np.arange(8.0), np.arange(4.0), 4)
    assert lat.tolist() == [1.5, 5.5] and lon.tolist() == [1.5]
    assert pick_days(np.array([1, 5, 2, 9, 0, 3]), 2) == [1, 3]
    assert math.isnan(entropy_ratio(np.ones((1, 1))))
