"""Scores of a prediction on the scored cells, its breakdowns, and the headline summary.

Sits in ``evaluation/`` on top of ``metrics.py`` and ``breakdown.py``: every number goes through
``metrics.compute_all`` on (time, lat, lon) fields in umol m-2 and comes back typed
(``results.ModelScores``). ``ScoringCells`` carries what every model shares (the identical
scored cells, cell areas, region map, test days, pollution bins and the two reference
forecasts), so the model and each baseline are scored by the same call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from no2fusion.evaluation.breakdown import by_pollution_level, by_region, by_season
from no2fusion.evaluation.metrics import compute_all
from no2fusion.evaluation.results import (
    Breakdowns,
    HeadlineScores,
    ModelScores,
    Scores,
    TableRow,
    TruthRow,
    TruthScores,
    parse,
)

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class ScoringCells:
    """What every row of the headline table is scored on.

    scored: (days, lat, lon) bool, the identical cells of every model and baseline;
    target: (days, lat, lon) umol m-2; cell_area (lat, lon) m2; region (lat, lon) codes;
    times (days,) datetime64; pollution_edges / quantiles from the TRAINING targets;
    references: persistence and climatology (days, lat, lon) for the skill scores.
    """

    scored: NDArray[np.bool_]
    target: F64
    cell_area: F64
    region: NDArray[np.int64]
    times: NDArray[np.datetime64]
    pollution_edges: tuple[float, ...]
    quantiles: tuple[float, ...]
    references: dict[str, F64]

    def restricted(self, keep: NDArray[np.bool_]) -> ScoringCells:
        """The same cells on the days ``keep`` (days,) only."""
        return ScoringCells(
            self.scored[keep],
            self.target[keep],
            self.cell_area,
            self.region,
            self.times[keep],
            self.pollution_edges,
            self.quantiles,
            {name: field[keep] for name, field in self.references.items()},
        )


def rmse(prediction: F64, target: F64, mask: NDArray[np.bool_], cell_area: F64) -> float:
    """Area-weighted RMSE on ``mask`` (``compute_all``), umol m-2."""
    return float(compute_all(prediction, target, mask, cell_area)["rmse"])


def score_scores(prediction: F64, target: F64, mask: NDArray[np.bool_], cell_area: F64) -> Scores:
    """``compute_all`` without references, typed."""
    return parse(Scores, compute_all(prediction, target, mask, cell_area))


def score_model(prediction: F64, cells: ScoringCells) -> ModelScores:
    """Headline scores (with skills) and region / season / pollution breakdowns of one
    (days, lat, lon) prediction on ``cells.scored``."""
    args = (prediction, cells.target, cells.scored)
    headline = compute_all(*args, cells.cell_area, dict(cells.references))
    pollution = by_pollution_level(*args, cells.pollution_edges, cells.quantiles, cells.cell_area)
    breakdowns = {
        "region": by_region(*args, cells.region, cells.cell_area),
        "season": by_season(*args, cells.times, cells.cell_area),
        "pollution": pollution,
    }
    return ModelScores(parse(HeadlineScores, headline), parse(Breakdowns, breakdowns))


def headline_table(scores: dict[str, ModelScores]) -> tuple[TableRow, ...]:
    """One row per model (in the order given) from its headline scores."""
    return tuple(
        TableRow(
            name=name,
            rmse=s.global_.rmse,
            mae=s.global_.mae,
            bias=s.global_.bias,
            r2=s.global_.r2,
            spatial_correlation=s.global_.spatial_correlation,
            skill_vs_persistence=s.global_.skill_vs_persistence,
            skill_vs_climatology=s.global_.skill_vs_climatology,
            n_valid=s.global_.n_valid,
        )
        for name, s in scores.items()
    )


def best_rmse(table: tuple[TableRow, ...]) -> str | None:
    """Name of the row with the lowest finite RMSE."""
    finite = [row for row in table if math.isfinite(row.rmse)]
    return min(finite, key=lambda row: row.rmse).name if finite else None


def not_winning(model: ModelScores, baselines: dict[str, ModelScores]) -> tuple[str, ...]:
    """Plain statements of every place (globally, per region, season and pollution level)
    where a baseline has a lower RMSE than the model."""
    lines = [
        f"globally, {name} has a lower or equal RMSE "
        f"({b.global_.rmse:.2f} vs {model.global_.rmse:.2f})"
        for name, b in baselines.items()
        if b.global_.rmse <= model.global_.rmse
    ]
    groups: list[tuple[str, dict[str, Scores], dict[str, dict[str, Scores]]]] = [
        (
            "region",
            dict(model.breakdowns.region),
            {n: dict(b.breakdowns.region) for n, b in baselines.items()},
        ),
        (
            "season",
            dict(model.breakdowns.season),
            {n: dict(b.breakdowns.season) for n, b in baselines.items()},
        ),
        (
            "pollution level",
            dict(model.breakdowns.pollution.bins),
            {n: dict(b.breakdowns.pollution.bins) for n, b in baselines.items()},
        ),
    ]
    for label, categories, others in groups:
        for category, scores in categories.items():
            if not scores.n_valid:
                continue
            better = [
                f"{name} ({other[category].rmse:.2f})"
                for name, other in others.items()
                if other[category].rmse < scores.rmse
            ]
            if better:
                lines.append(
                    f"{label} '{category}': model RMSE {scores.rmse:.2f} is beaten by "
                    + ", ".join(better)
                )
    return tuple(lines)


def truth_scores(
    truth: F64, observed: F64, predictions: Mapping[str, F64], cells: ScoringCells
) -> TruthScores:
    """Every model of ``predictions`` (the main model first), fields (days, lat, lon) umol m-2,
    against the simulated noise-free ``truth`` on the scored cells, beside the observation-noise
    floor: the RMSE of the ``observed`` targets against the truth on the same cells.

    ``explained_predictable_variance`` is the R2 against the truth: the fraction of the variance
    a perfect model could explain (the truth's) that this one does. ``truth_by_region`` scores
    the truth itself against the observations per region class (``TruthScores`` says when its
    R2 bounds a model's and when it does not).
    """
    floor = score_scores(observed, truth, cells.scored, cells.cell_area).rmse
    weights = np.broadcast_to(cells.cell_area, truth.shape)[cells.scored]
    values = truth[cells.scored]
    mean = float(np.sum(values * weights) / np.sum(weights))
    truth_std = math.sqrt(float(np.sum((values - mean) ** 2 * weights) / np.sum(weights)))
    rows = []
    scores: dict[str, Scores] = {}
    for name, prediction in predictions.items():
        scores[name] = score_scores(prediction, truth, cells.scored, cells.cell_area)
        rows.append(
            TruthRow(
                name=name,
                rmse=scores[name].rmse,
                mae=scores[name].mae,
                bias=scores[name].bias,
                explained_predictable_variance=scores[name].r2,
                rmse_over_floor=scores[name].rmse / floor if floor > 0 else math.nan,
            )
        )
    main = next(iter(predictions))
    by_class = by_region(truth, observed, cells.scored, cells.region, cells.cell_area)
    truth_by_region = {name: parse(Scores, values) for name, values in by_class.items()}
    return TruthScores(floor, truth_std, scores[main], tuple(rows), truth_by_region)
