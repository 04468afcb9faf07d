"""A small but complete ``EvaluationResult`` built from the real scoring functions on seeded
synthetic fields (no model), for the figure, report and metrics-schema tests."""

from __future__ import annotations

import numpy as np
import pytest

from no2fusion.evaluation import ablation, robustness
from no2fusion.evaluation.attention import AttentionMap, AttentionSummary, Wind, entropy_ratio
from no2fusion.evaluation.breakdown import pollution_bin_edges
from no2fusion.evaluation.evaluate import EvaluationResult
from no2fusion.evaluation.results import (
    SCHEMA_VERSION,
    AblationResult,
    InferenceInfo,
    Metrics,
    RobustnessResult,
    ShuffleTest,
    SplitInfo,
    Summary,
)
from no2fusion.evaluation.robustness import Perturbed
from no2fusion.evaluation.runs import HistoryRow
from no2fusion.evaluation.scoring import (
    ScoringCells,
    best_rmse,
    headline_table,
    not_winning,
    score_model,
    truth_scores,
)
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
    truth = rng.gamma(2.0, 25.0, size=(n_days, n, n))
    target = truth + rng.normal(0, 5, size=truth.shape)  # observation noise 5
    target[rng.uniform(size=target.shape) < 0.3] = np.nan
    prediction = np.where(np.isfinite(target), target, 50.0) + rng.normal(0, 8, size=target.shape)
    fields = {
        "persistence": target + rng.normal(0, 15, size=target.shape),
        "climatology": np.full_like(target, 50.0),
        "concat": target + rng.normal(0, 8.2, size=target.shape),
    }
    scored = np.isfinite(target)
    cells = ScoringCells(
        scored,
        target,
        area,
        region,
        times,
        tuple(pollution_bin_edges(target, (0.5, 0.9))),
        (0.5, 0.9),
        {"persistence": fields["persistence"], "climatology": fields["climatology"]},
    )
    model_scores = score_model(prediction, cells)
    baselines = {name: score_model(values, cells) for name, values in fields.items()}
    rows = [
        Perturbed("dropout_random", "random", 0.1, "10 %", 8.4, 0.05, 0.1),
        Perturbed("dropout_cloud", "cloud", 0.5, "50 %", 9.9, 0.24, 0.5),
        Perturbed("noise", "noise", 0.05, "5 %", 8.9, 0.11),
        Perturbed("feature_group", "group", "wind", "wind", 8.1, 0.01),
        Perturbed("feature_group", "group", "blh", "blh", 8.3, 0.03),
    ]
    tests = robustness.judge(rows, climatology_rmse=20.0)
    weights = rng.dirichlet(np.ones(24), size=(2, 1, 2, 16))
    ratio = entropy_ratio(weights)
    table = headline_table({"cross_modal": model_scores, **baselines})
    verdicts = ablation.verdicts(
        model_scores.global_.rmse,
        {k: v.global_.rmse for k, v in baselines.items()},
        ratio,
        0.002,
        0.01,
    )
    metrics = Metrics(
        schema_version=SCHEMA_VERSION,
        model="cross_modal",
        units="umol m-2",
        unit_factor_molec_cm2=UMOL_M2_TO_MOLEC_CM2,
        global_=model_scores.global_,
        split=SplitInfo(1, "valid target cells", n_days, str(times[0]), str(times[-1]), 40, 8),
        inference=InferenceInfo(16, 4, "raised cosine", 4, "cpu", "fp32"),
        breakdowns=model_scores.breakdowns,
        baselines=baselines,
        ablation=AblationResult(
            entropy_ratio=ratio,
            entropy_ratio_per_layer=(ratio,),
            collapse_threshold=0.9,
            collapsed=ratio > 0.9,
            shuffle_threshold=0.01,
            shuffle_reference_rmse=8.0,
            shuffle={"samples": ShuffleTest("across days", 8.02, 0.002)},
            n_days=8,
        ),
        robustness=RobustnessResult(8.0, 20.0, 8, tests),
        truth=truth_scores(truth, target, {"cross_modal": prediction, **fields}, cells),
        summary=Summary(table, best_rmse(table), not_winning(model_scores, baselines), verdicts),
        checkpoints={"cross_modal": "run/checkpoints/cross_modal/checkpoints/best.ckpt"},
        evaluation_seconds=1.5,
        evaluation_phases_seconds={"test split and model predictions": 0.5},
    )
    hours = np.arange(-23.0, 1.0)
    summary = AttentionSummary(
        argmax_hour=rng.integers(-23, 1, size=(4, 4)).astype(float),
        entropy_ratio=rng.uniform(0.5, 1, size=(4, 4)),
        mean_weight=np.full(24, 1 / 24),
    )
    wind = Wind(
        rng.normal(size=(3, 3)),
        rng.normal(size=(3, 3)),
        np.array([50.25, 50.75, 51.25]),
        np.array([6.25, 6.75, 7.25]),
    )
    token_lat, token_lon = lat.reshape(4, 4).mean(1), lon.reshape(4, 4).mean(1)
    attention = AttentionMap("2021-01-01", hours, summary, token_lat, token_lon, wind)
    history = tuple(
        HistoryRow(e, "warmup" if e < 2 else "finetune", 1 / (e + 1), 1.2 / (e + 1))
        for e in range(5)
    )
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
        attention_maps=(attention,),
        lead=1,
    )
