"""Every figure of a run, drawn from an ``EvaluationResult`` and written as PNG.

Sits in ``report/`` between ``evaluation.evaluate`` (the numbers and arrays) and ``html.py``
(the page): ``write_figures`` maps the result to the pure functions of ``plots.py`` and returns
figure file name -> path, which ``html.write_report`` embeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from no2fusion.evaluation.evaluate import EvaluationResult
from no2fusion.report import plots


def spatial_day(result: EvaluationResult) -> int:
    """The test day with the most scored cells (the one drawn in spatial_comparison.png)."""
    return int(np.argmax(result.scored.reshape(result.scored.shape[0], -1).sum(axis=1)))


def write_figures(result: EvaluationResult, run_dir: str | Path) -> dict[str, Path]:
    """Draw and save every figure into ``run_dir``; returns file name -> path."""
    run_dir = Path(run_dir)
    metrics = result.metrics
    models = metrics.model_scores()  # the model first, then each baseline
    paths: dict[str, Path] = {}

    def save(name: str, figure: Any) -> None:
        paths[name] = plots.save_figure(figure, run_dir / name)

    save("training_curves.png", plots.training_curves(result.histories))
    save(
        "predictions_vs_actual.png",
        plots.predictions_vs_actual(
            result.prediction, result.target, result.scored, metrics.global_
        ),
    )
    day = spatial_day(result)
    target_day = np.where(np.isfinite(result.target[day]), result.target[day], np.nan)
    save(
        "spatial_comparison.png",
        plots.spatial_comparison(
            result.input_field[day],
            target_day,
            result.prediction[day],
            result.lat,
            result.lon,
            title=f"Test day {str(result.times[day])[:10]} (white = no valid observation)",
        ),
    )
    if result.attention_maps:
        save("attention_maps.png", plots.attention_maps(result.attention_maps))
    save(
        "breakdown_region_season.png",
        plots.breakdown_figure(
            {name: dict(s.breakdowns.region) for name, s in models.items()},
            {name: dict(s.breakdowns.season) for name, s in models.items()},
        ),
    )
    save(
        "breakdown_pollution.png",
        plots.pollution_figure(
            {name: dict(s.breakdowns.pollution.bins) for name, s in models.items()}
        ),
    )
    save("robustness_curves.png", plots.robustness_curves(metrics.robustness.tests))
    save(
        "baseline_comparison.png",
        plots.baseline_comparison({name: s.global_ for name, s in models.items()}),
    )
    return paths
