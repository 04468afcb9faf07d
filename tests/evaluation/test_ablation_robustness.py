"""Attention entropy, verdicts, perturbations and the seed's robustness expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from no2fusion.evaluation import ablation, robustness
from no2fusion.evaluation.attention import pick_days, summarise_attention, token_centres
from no2fusion.vocab import FEATURE_GROUPS, FEATURES


def test_entropy_ratio_of_uniform_and_one_hot() -> None:
    uniform = np.full((2, 1, 3, 5, 24), 1 / 24)
    assert ablation.entropy_ratio(uniform) == pytest.approx(1.0)
    one_hot = np.zeros((2, 1, 3, 5, 24))
    one_hot[..., 7] = 1.0
    assert ablation.entropy_ratio(one_hot) == pytest.approx(0.0, abs=1e-9)
    half = np.zeros((1, 1, 1, 1, 4))
    half[..., :2] = 0.5  # entropy ln 2 over ln 4
    assert ablation.entropy_ratio(half) == pytest.approx(0.5)
    mixed = np.concatenate([uniform, one_hot], axis=1)  # layer 0 uniform, layer 1 one-hot
    assert ablation.entropy_ratio_per_layer(mixed) == pytest.approx([1.0, 0.0], abs=1e-9)


def test_verdicts_state_failures_plainly() -> None:
    out = ablation.verdicts(
        10.0, {"concat": 10.2, "satellite_only": 9.0, "climatology": 20.0}, 0.95, 0.001, 0.01
    )
    concat, satellite, attention, shuffle, climatology = out
    assert concat["passed"] is False and "does NOT beat" in concat["statement"]
    assert concat["value"] == pytest.approx(1 - 10.0 / 10.2)
    assert satellite["passed"] is False and "does NOT help" in satellite["statement"]
    assert attention["passed"] is False and "collapsed" in attention["statement"]
    assert shuffle["passed"] is False
    assert climatology["passed"] is True and "climatology" in climatology["criterion"]
    good = ablation.verdicts(9.0, {"concat": 10.0, "satellite_only": 9.5}, 0.5, 0.2, 0.01)
    assert [v["passed"] for v in good] == [True, True, True, True]
    missing = ablation.verdicts(9.0, {}, None, None, 0.01)
    assert [v["passed"] for v in missing] == [None, None, None, None]


def _sat(n: int = 3, size: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sat = np.zeros((n, 2, size, size), dtype=np.float32)
    valid = rng.uniform(size=(n, size, size)) < 0.6
    sat[:, 0] = np.where(valid, rng.normal(size=(n, size, size)), 0.0)
    sat[:, 1] = valid
    return sat


def test_random_dropout_hides_the_requested_share_of_valid_cells() -> None:
    sat = _sat()
    valid = robustness.input_valid(sat)
    hide = robustness.random_dropout(valid, 0.3, np.random.default_rng(1))
    assert not (hide & ~valid).any()
    for sample, hidden in zip(valid, hide, strict=True):
        assert hidden.sum() == round(0.3 * sample.sum())
    out = robustness.hide_cells(sat, hide)
    assert (out[:, 0][hide] == 0).all() and (out[:, 1][hide] == 0).all()
    assert np.array_equal(out[:, 0][~hide], sat[:, 0][~hide]) and sat[:, 1][hide].all()


def test_cloud_dropout_uses_the_closest_borrowed_gap() -> None:
    valid = np.ones((1, 4, 4), dtype=bool)
    pool = np.zeros((3, 4, 4), dtype=bool)
    pool[0, :1] = True  # hides 25 %
    pool[1, :2] = True  # hides 50 %
    pool[2, :] = True  # hides 100 %
    hide, achieved = robustness.cloud_dropout(valid, pool, 0.45, np.random.default_rng(0))
    assert np.array_equal(hide[0], pool[1]) and achieved == pytest.approx(0.5)


def test_feature_group_dropout_zeroes_exactly_the_group() -> None:
    aux = np.ones((2, 24, len(FEATURES)), dtype=np.float32)
    out = robustness.drop_feature_group(aux, "wind")
    zeroed = [FEATURES[i] for i in range(len(FEATURES)) if (out[..., i] == 0).all()]
    assert zeroed == list(FEATURE_GROUPS["wind"]) and aux.min() == 1.0


def test_noise_is_multiplicative_in_physical_units() -> None:
    sat = _sat(n=50, size=20)
    sat[:, 0] = np.where(sat[:, 1] > 0, 2.0, 0.0)  # normalized 2 -> physical 2 * 10 + 30 = 50

    def to_phys(z: np.ndarray) -> np.ndarray:
        return z * 10.0 + 30.0

    def to_norm(x: np.ndarray) -> np.ndarray:
        return (x - 30.0) / 10.0

    out = robustness.add_noise(sat, 0.1, np.random.default_rng(0), to_phys, to_norm)
    valid = sat[:, 1] > 0
    physical = to_phys(out[:, 0][valid])
    assert physical.mean() == pytest.approx(50.0, rel=0.01)
    assert physical.std() == pytest.approx(5.0, rel=0.05)  # 10 % of 50
    assert (out[:, 0][~valid] == 0).all()


def test_judge_against_the_seed() -> None:
    rows = [
        {"category": "dropout_random", "setting": 0.1, "rmse": 1.05, "rmse_change": 0.05},
        {"category": "dropout_random", "setting": 0.3, "rmse": 1.4, "rmse_change": 0.4},
        {"category": "dropout_cloud", "setting": 0.5, "rmse": 1.3, "rmse_change": 0.3},
        {"category": "noise", "setting": 0.05, "rmse": 1.06, "rmse_change": 0.06},
        {"category": "feature_group", "setting": "wind", "rmse": 1.2, "rmse_change": 0.2},
        {"category": "feature_group", "setting": "blh", "rmse": 1.001, "rmse_change": 0.001},
        {"category": "feature_group", "setting": "time", "rmse": 1.1, "rmse_change": 0.1},
    ]
    judged = robustness.judge(rows, climatology_rmse=1.35)
    assert [r["passed"] for r in judged] == [True, False, True, False, True, False, None]
    assert [r["better_than_climatology"] for r in judged][:3] == [True, False, True]
    assert judged[0]["expectation"] == "< +10 % RMSE"


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
    assert math.isnan(ablation.entropy_ratio(np.ones((1, 1))))
