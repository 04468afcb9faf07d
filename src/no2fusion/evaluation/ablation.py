"""Is the attention doing anything? Attention entropy, the shuffle tests, and the verdicts.

Sits in ``evaluation/`` on top of ``inference.py`` and ``attention.py``. ``run_ablation``
measures the cross-modal model's attention entropy ratio on every test day (one forward pass
each, so the ratio carries no day-sampling noise) and re-runs the model on a subset of test days
with the meteorology of another day and with the hours of its own day permuted, scored on the
headline cells of those days. ``verdicts`` restates the seed's criteria (beat
concatenation by > 5 % RMSE; auxiliary data must help against satellite-only; attention must
not collapse to uniform; shuffling the meteorology must hurt) and the strong baselines, on the
identical test cells, and says plainly when one fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import torch

from no2fusion.data.batch import Batch
from no2fusion.data.dataset import DayInputs, NO2TileDataset
from no2fusion.evaluation.attention import mean_entropy_ratio
from no2fusion.evaluation.inference import InputTransform, TiledPredictor, predict_fields
from no2fusion.evaluation.metrics import relative_change
from no2fusion.evaluation.results import AblationResult, ShuffleTest, Verdict
from no2fusion.evaluation.scoring import ScoringCells, rmse

COLLAPSE_THRESHOLD = 0.9  # entropy ratio above this = near-uniform attention (seed)
CONCAT_MARGIN = 0.05  # the seed: cross-modal attention must beat concatenation by > 5 % RMSE


def _verdict(
    criterion: str, passed: bool | None, statement: str, value: float | None = None
) -> Verdict:
    return Verdict(criterion=criterion, passed=passed, statement=statement, value=value)


def _improvement(model_rmse: float, other_rmse: float) -> float:
    """Fractional RMSE reduction of the model against another model (positive = model better)."""
    if not (math.isfinite(model_rmse) and math.isfinite(other_rmse)) or other_rmse <= 0:
        return math.nan
    return 1.0 - model_rmse / other_rmse


def verdicts(
    model_rmse: float,
    baseline_rmse: Mapping[str, float],
    ratio: float | None,
    shuffle_change: float | None,
    shuffle_threshold: float,
) -> tuple[Verdict, ...]:
    """The seed's ablation criteria and the strong baselines as pass/fail statements.

    Args:
        model_rmse: the cross-modal model's RMSE on the test cells (umol m-2).
        baseline_rmse: name -> RMSE on the identical cells (any of persistence, climatology,
            lightgbm, concat, satellite_only; missing ones give an N/A verdict).
        ratio: attention entropy ratio (None when not measured).
        shuffle_change: fractional RMSE change when meteorology is shuffled across samples.
        shuffle_threshold: the change above which the shuffle counts as hurting.
    """
    out = []
    concat = baseline_rmse.get("concat")
    if concat is None:
        out.append(
            _verdict(
                "beats concatenation fusion by > 5 % RMSE", None, "concat baseline not trained"
            )
        )
    else:
        gain = _improvement(model_rmse, concat)
        out.append(
            _verdict(
                "beats concatenation fusion by > 5 % RMSE (seed)",
                bool(gain > CONCAT_MARGIN),
                f"cross-modal RMSE {model_rmse:.2f} vs concat {concat:.2f}: {100 * gain:+.1f} % "
                + (
                    "— attention earns its place"
                    if gain > CONCAT_MARGIN
                    else "— attention does NOT beat plain concatenation by the required margin"
                ),
                gain,
            )
        )
    satellite = baseline_rmse.get("satellite_only")
    if satellite is None:
        out.append(
            _verdict(
                "auxiliary data helps vs satellite-only",
                None,
                "satellite-only baseline not trained",
            )
        )
    else:
        gain = _improvement(model_rmse, satellite)
        out.append(
            _verdict(
                "auxiliary (meteorological) data helps vs satellite-only (seed)",
                bool(gain > 0),
                f"cross-modal RMSE {model_rmse:.2f} vs satellite-only {satellite:.2f}: "
                f"{100 * gain:+.1f} % "
                + (
                    "— the meteorology helps"
                    if gain > 0
                    else "— the meteorology does NOT help this model"
                ),
                gain,
            )
        )
    if ratio is None or not math.isfinite(ratio):
        out.append(
            _verdict("attention is selective (entropy ratio <= 0.9)", None, "no attention weights")
        )
    else:
        collapsed = ratio > COLLAPSE_THRESHOLD
        out.append(
            _verdict(
                "attention is selective, not collapsed (entropy ratio <= 0.9, seed)",
                not collapsed,
                f"entropy ratio {ratio:.3f} "
                + (
                    "— near-uniform: the attention has collapsed"
                    if collapsed
                    else "— the attention is selective"
                ),
                ratio,
            )
        )
    if shuffle_change is None or not math.isfinite(shuffle_change):
        out.append(_verdict("shuffling meteorology hurts", None, "shuffle test not run"))
    else:
        hurts = shuffle_change > shuffle_threshold
        out.append(
            _verdict(
                "shuffling meteorology across samples hurts "
                f"(RMSE +{100 * shuffle_threshold:.0f} % or more)",
                hurts,
                f"RMSE change {100 * shuffle_change:+.1f} % "
                + (
                    "— the model uses the meteorology of its own day"
                    if hurts
                    else "— the model barely uses the day's meteorology"
                ),
                shuffle_change,
            )
        )
    for name in ("persistence", "climatology", "lightgbm"):
        if name in baseline_rmse:
            gain = _improvement(model_rmse, baseline_rmse[name])
            out.append(
                _verdict(
                    f"beats the {name} baseline",
                    bool(gain > 0),
                    f"cross-modal RMSE {model_rmse:.2f} vs {name} {baseline_rmse[name]:.2f}: "
                    f"{100 * gain:+.1f} %",
                    gain,
                )
            )
    return tuple(out)


def run_ablation(
    predictor: TiledPredictor,
    dataset: NO2TileDataset,
    days: Sequence[DayInputs],
    cells: ScoringCells,
    reference: float,
    shuffle_threshold: float,
    rng: np.random.Generator,
    attention_days: Sequence[DayInputs],
) -> AblationResult:
    """Entropy ratio on ``attention_days`` (the whole test split in an evaluation) and shuffle
    tests on ``days``, scored on ``cells`` (those days); ``reference`` is the unperturbed RMSE
    on the same cells."""
    ratio, per_layer = mean_entropy_ratio(predictor, dataset, attention_days)

    def shuffled(inputs: Sequence[DayInputs], transform: InputTransform | None = None) -> float:
        prediction = predict_fields(predictor, dataset, inputs, transform)
        return rmse(prediction, cells.target, cells.scored, cells.cell_area)

    tests: dict[str, ShuffleTest] = {}
    n = len(days)
    if n > 1:
        order = rng.permutation(n)
        while np.all(order == np.arange(n)):
            order = rng.permutation(n)
        other_met = [
            replace(day, met_index=days[int(k)].met_index)
            for day, k in zip(days, order, strict=True)
        ]
        value = shuffled(other_met)
        tests["samples"] = ShuffleTest(
            "meteorology of another test day (permuted across days)",
            value,
            relative_change(value, reference),
        )
    hour_axis = 1 + dataset.aux_axes.index("hour")  # after the batch axis
    hours = torch.as_tensor(rng.permutation(dataset.arrays.n_hours), dtype=torch.int64)

    def permute_hours(batch: Batch) -> Batch:
        return batch.with_inputs(aux=batch.aux.index_select(hour_axis, hours))

    value = shuffled(days, permute_hours)
    tests["hours"] = ShuffleTest(
        "hourly steps of the own day permuted (same permutation for all days)",
        value,
        relative_change(value, reference),
    )
    return AblationResult(
        entropy_ratio=ratio,
        entropy_ratio_per_layer=per_layer,
        collapse_threshold=COLLAPSE_THRESHOLD,
        collapsed=bool(ratio > COLLAPSE_THRESHOLD) if math.isfinite(ratio) else None,
        shuffle_threshold=shuffle_threshold,
        shuffle_reference_rmse=reference,
        shuffle=tests,
        n_days=n,
        entropy_days=len(attention_days),
    )
