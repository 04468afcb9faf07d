"""A small but complete ``EvaluationResult`` built from the real metric functions on seeded
synthetic fields (no model), for the figure and report tests."""

from __future__ import annotations

import numpy as np
import pytest

from no2fusion.evaluation import ablation, robustness
from no2fusion.evaluation.breakdown import (
    by_pollution_level,
    by_region,
    by_season,
    pollution_bin_edges,
)
from no2fusion.evaluation.evaluate import EvaluationResult, _summary
from no2fusion.evaluation.metrics import compute_all
from no2fusion.vocab import UMOL_M2_TO_MOLEC_CM2


@pytest.fixture(scope="session")
def fake_result() -> EvaluationResult:
    return make_fake_result()


def make_fake_result() -> EvaluationResult:
    """The result (usable outside pytest too, e.g. to look at the report)."""
    rng = np.random.default_rng(3)
    n_days, n = 8, 16
    times = np.datetime64("2021-01-01") + np.arange(n_days) * np.timedelta64(45, "D")
    lat = 50.05 + 0.1 * np.arange(n)
    lon = 6.05 + 0.1 * np.arange(n)
    area = np.cos(np.deg2rad(lat))[:, None] * np.ones((1, n)) * 1e8
    region = rng.integers(0, 5, size=(n, n))
    target = rng.gamma(2.0, 25.0, size=(n_days, n, n))
    target[rng.uniform(size=target.shape) < 0.3] = np.nan
    prediction = np.where(np.isfinite(target), target, 50.0) + rng.normal(0, 8, size=target.shape)
    fields = {
        "persistence": target + rng.normal(0, 15, size=target.shape),
        "climatology": np.full_like(target, 50.0),
        "concat": target + rng.normal(0, 8.2, size=target.shape),
    }
    scored = np.isfinite(target)
    edges = pollution_bin_edges(target, (0.5, 0.9))
    refs = {"persistence": fields["persistence"], "climatology": fields["climatology"]}

    def scores(pred: np.ndarray) -> tuple[dict, dict]:
        return compute_all(pred, target, scored, area, refs), {
            "region": by_region(pred, target, scored, region, area),
            "season": by_season(pred, target, scored, times, area),
            "pollution": by_pollution_level(pred, target, scored, edges, (0.5, 0.9), area),
        }

    model_scores, model_breakdowns = scores(prediction)
    baselines = {}
    for name, values in fields.items():
        g, b = scores(values)
        baselines[name] = {"global": g, "breakdowns": b}
    rows = [
        {
            "category": "dropout_random",
            "label": "random",
            "setting": 0.1,
            "setting_label": "10 %",
            "rmse": 8.4,
            "rmse_change": 0.05,
        },
        {
            "category": "dropout_cloud",
            "label": "cloud",
            "setting": 0.5,
            "setting_label": "50 %",
            "rmse": 9.9,
            "rmse_change": 0.24,
        },
        {
            "category": "noise",
            "label": "noise",
            "setting": 0.05,
            "setting_label": "5 %",
            "rmse": 8.9,
            "rmse_change": 0.11,
        },
        {
            "category": "feature_group",
            "label": "group",
            "setting": "wind",
            "setting_label": "wind",
            "rmse": 8.1,
            "rmse_change": 0.01,
        },
        {
            "category": "feature_group",
            "label": "group",
            "setting": "blh",
            "setting_label": "blh",
            "rmse": 8.3,
            "rmse_change": 0.03,
        },
    ]
    tests = robustness.judge(rows, climatology_rmse=20.0)
    weights = rng.dirichlet(np.ones(24), size=(2, 1, 2, 16))
    ratio = ablation.entropy_ratio(weights)
    baseline_rmse = {k: v["global"]["rmse"] for k, v in baselines.items()}
    summary = _summary("cross_modal", model_scores, model_breakdowns, baselines)
    summary["verdicts"] = ablation.verdicts(model_scores["rmse"], baseline_rmse, ratio, 0.002, 0.01)
    metrics = {
        "schema_version": 1,
        "model": "cross_modal",
        "units": "umol m-2",
        "unit_factor_molec_cm2": UMOL_M2_TO_MOLEC_CM2,
        "global": model_scores,
        "split": {
            "lead": 1,
            "scored_cells": "valid target cells",
            "test_days": n_days,
            "first_day": str(times[0]),
            "last_day": str(times[-1]),
            "train_days": 40,
            "val_days": 8,
        },
        "breakdowns": model_breakdowns,
        "baselines": baselines,
        "ablation": {
            "entropy_ratio": ratio,
            "entropy_ratio_per_layer": [ratio],
            "collapse_threshold": 0.9,
            "collapsed": ratio > 0.9,
            "shuffle_threshold": 0.01,
            "shuffle_reference_rmse": 8.0,
            "shuffle": {
                "samples": {"description": "across samples", "rmse": 8.02, "rmse_change": 0.002}
            },
            "n_samples": 8,
        },
        "robustness": {
            "reference_rmse": 8.0,
            "climatology_rmse": 20.0,
            "n_samples": 8,
            "tests": tests,
        },
        "truth": None,
        "summary": summary,
    }
    hours = np.arange(-23.0, 1.0)
    day_maps = {
        "date": "2021-01-01",
        "hours": hours,
        "argmax_hour": rng.integers(-23, 1, size=(4, 4)).astype(float),
        "entropy_ratio": rng.uniform(0.5, 1, size=(4, 4)),
        "mean_weight": np.full(24, 1 / 24),
        "lat": lat.reshape(4, 4).mean(1),
        "lon": lon.reshape(4, 4).mean(1),
        "wind_u": rng.normal(size=(3, 3)),
        "wind_v": rng.normal(size=(3, 3)),
        "wind_lat": np.array([50.25, 50.75, 51.25]),
        "wind_lon": np.array([6.25, 6.75, 7.25]),
    }
    history = [
        {
            "epoch": e,
            "phase": "warmup" if e < 2 else "finetune",
            "train_loss": 1 / (e + 1),
            "val_loss": 1.2 / (e + 1),
        }
        for e in range(5)
    ]
    return EvaluationResult(
        metrics=metrics,
        times=times,
        lat=lat,
        lon=lon,
        cell_area=area,
        prediction=prediction,
        target=target,
        scored=scored,
        input_field=fields["persistence"],
        baselines=fields,
        histories={"cross_modal": history, "concat": history},
        attention_days=[day_maps],
        lead=1,
    )
