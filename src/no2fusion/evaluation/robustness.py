"""How the model degrades: perturbed inputs, the seed's expectations, and their runner.

Sits in ``evaluation/`` on top of ``inference.py``. Satellite perturbations are a
``data.dataset.Perturbation`` of every observed field a day's inputs come from (the input day
and each day of the trailing composite, physical units, NaN = not visible) and, for noise, of
the climatology; the dataset rebuilds the day from them, so they reach every satellite-derived
channel and travel the one input path (``NO2TileDataset.tile_sample``) like every prediction.
Meteorological ones change the normalized ``aux`` of each batch (an ``InputTransform``):

- satellite-cell dropout: a fraction of the VALID cells of every observed field is hidden (NaN,
  so the model sees value 0 = the normalized median and mask 0), either at random or with the
  shape of a real cloud gap borrowed from a training day;
- meteorological feature-group dropout: the group's features set to 0, the normalized median;
  for the wind group the wind the back-trajectories follow is set to the training median too;
- noise: multiplicative Gaussian noise on the physical values of every observed field and of
  the climatology, x (1 + level * eps).

``run_robustness`` scores every perturbation on the same cells with ``scoring.rmse`` and judges
it against the seed (``judge``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from no2fusion.config import EvaluationConfig
from no2fusion.data.batch import Batch
from no2fusion.data.dataset import DayInputs, NO2TileDataset, Perturbation
from no2fusion.evaluation.inference import InputTransform, TiledPredictor, predict_fields
from no2fusion.evaluation.metrics import relative_change
from no2fusion.evaluation.results import RobustnessResult, RobustnessTest
from no2fusion.evaluation.scoring import ScoringCells, rmse
from no2fusion.vocab import FEATURE_GROUPS, FEATURES

F32 = NDArray[np.float32]
Mask = NDArray[np.bool_]

# The seed's expectations ("Robustness Testing"): an x % perturbation may raise RMSE by < x %;
# at >= 50 % dropout the model "should still produce reasonable predictions", which we test with
# the same rule (< +x % RMSE) and report beside the climatology RMSE for context.
REASONABLE_RATE = 0.5
GROUP_EXPECTATIONS = {"wind": "high degradation", "blh": "medium degradation"}
MEASURABLE_CHANGE = 0.01


def hide(observation: F32, cells: Mask) -> F32:
    """Copy of an observation field with ``cells`` (same shape) set to NaN (not visible)."""
    return np.where(cells, np.float32(np.nan), observation).astype(np.float32)


def random_dropout(valid: Mask, rate: float, rng: np.random.Generator) -> Mask:
    """Per field (leading axis), hide round(rate * n_valid) of its valid cells at random."""
    hidden = np.zeros_like(valid)
    for i, sample in enumerate(valid):
        cells = np.flatnonzero(sample)
        n = round(rate * cells.size)
        if n:
            chosen = rng.choice(cells, size=n, replace=False)
            hidden[i].flat[chosen] = True
    return hidden


def cloud_dropout(
    valid: Mask, pool: Mask, rate: float, rng: np.random.Generator
) -> tuple[Mask, float]:
    """Per field, hide the valid cells under a real gap pattern borrowed from ``pool``.

    pool: (M, H, W) gap masks (True = no observation) of other days. For each field the
    pattern whose hidden share of the field's valid cells is closest to ``rate`` is used
    (ties broken at random). Returns the masks and the achieved mean hidden fraction.
    """
    if pool.shape[0] == 0:
        raise ValueError("cloud dropout needs at least one gap pattern")
    hidden = np.zeros_like(valid)
    fractions = []
    flat_pool = pool.reshape(pool.shape[0], -1)
    for i, sample in enumerate(valid):
        n_valid = int(sample.sum())
        if n_valid == 0:
            continue
        share = (flat_pool & sample.ravel()[None]).sum(axis=1) / n_valid  # (M,)
        distance = np.abs(share - rate)
        best = np.flatnonzero(distance <= distance.min() + 1e-9)
        choice = int(rng.choice(best))
        hidden[i] = pool[choice] & sample
        fractions.append(float(share[choice]))
    return hidden, float(np.mean(fractions)) if fractions else 0.0


def add_noise(observation: F32, level: float, rng: np.random.Generator) -> F32:
    """Copy with x -> x (1 + level * eps), eps ~ N(0, 1), on the finite (visible) values; NaN
    stays NaN. Physical units (umol m-2)."""
    noisy = observation * (1.0 + level * rng.standard_normal(observation.shape))
    return np.where(np.isfinite(observation), noisy, np.nan).astype(np.float32)


def drop_feature_group(aux: Tensor, group: str, feature_axis: int) -> Tensor:
    """Copy of normalized ``aux`` with the group's features (indices along ``feature_axis``,
    in ``vocab.FEATURES`` order) set to 0, the normalized median."""
    out = aux.clone()
    index = torch.tensor([FEATURES.index(name) for name in FEATURE_GROUPS[group]])
    out.index_fill_(feature_axis, index, 0.0)
    return out


def expectation(category: str, setting: float | str) -> tuple[str, float | None]:
    """The seed's expectation for a test as (text, allowed fractional RMSE increase or None)."""
    if category in ("dropout_random", "dropout_cloud"):
        rate = float(setting)
        if rate >= REASONABLE_RATE:
            return (f"reasonable predictions (tested as < +{100 * rate:.0f} % RMSE)", rate)
        return (f"< +{100 * rate:.0f} % RMSE", rate)
    if category == "noise":
        level = float(setting)
        return (f"< +{100 * level:.0f} % RMSE", level)
    return (GROUP_EXPECTATIONS.get(str(setting), "— (no expectation in the seed)"), None)


@dataclass(frozen=True)
class Perturbed:
    """The outcome of one perturbation before it is judged."""

    category: str
    label: str
    setting: float | str
    setting_label: str
    rmse: float
    rmse_change: float
    achieved_rate: float | None = None


def judge(rows: Sequence[Perturbed], climatology_rmse: float | None) -> tuple[RobustnessTest, ...]:
    """Each row with its expectation, ``limit``, ``passed`` (True/False/None) and
    ``better_than_climatology`` (context; None without a climatology RMSE).

    Feature groups: 'wind' passes when its change is the largest of all groups and measurable
    (> 1 %); 'blh' when measurable; other groups have no expectation (None).
    """
    groups = [r for r in rows if r.category == "feature_group"]
    largest = max((r.rmse_change for r in groups), default=float("nan"))
    judged = []
    for row in rows:
        text, limit = expectation(row.category, row.setting)
        passed: bool | None = None
        if limit is not None:
            passed = bool(row.rmse_change < limit)
        elif row.category == "feature_group" and row.setting == "wind":
            passed = bool(row.rmse_change >= largest and row.rmse_change > MEASURABLE_CHANGE)
        elif row.category == "feature_group" and row.setting == "blh":
            passed = bool(row.rmse_change > MEASURABLE_CHANGE)
        better = None if climatology_rmse is None else bool(row.rmse < climatology_rmse)
        judged.append(
            RobustnessTest(
                **asdict(row),
                expectation=text,
                limit=limit,
                passed=passed,
                better_than_climatology=better,
            )
        )
    return tuple(judged)


def gap_pool(
    no2: NDArray[np.float32], day_indices: NDArray[np.int64], limit: int, rng: np.random.Generator
) -> Mask:
    """Real gap patterns (M, lat, lon) (True = no valid observation) of at most ``limit`` of the
    given (training) days, drawn at random; ``no2`` is the cube's (time, lat, lon) field."""
    if day_indices.size == 0:
        return np.zeros((0, *no2.shape[1:]), dtype=bool)
    chosen = np.sort(rng.choice(day_indices, min(limit, day_indices.size), replace=False))
    return ~np.isfinite(no2[chosen])


def run_robustness(
    predictor: TiledPredictor,
    dataset: NO2TileDataset,
    days: Sequence[DayInputs],
    cells: ScoringCells,
    reference: float,
    pool: Mask,
    config: EvaluationConfig,
    rng: np.random.Generator,
    climatology_rmse: float | None,
) -> RobustnessResult:
    """Every perturbation of this module on ``days``, scored on ``cells`` (those days), each
    judged against the seed; ``reference`` is the unperturbed RMSE on the same cells."""

    def score(inputs: Sequence[DayInputs], transform: InputTransform | None = None) -> float:
        prediction = predict_fields(predictor, dataset, inputs, transform)
        return rmse(prediction, cells.target, cells.scored, cells.cell_area)

    rows: list[Perturbed] = []

    def add(
        category: str,
        label: str,
        setting: float | str,
        setting_label: str,
        value: float,
        achieved: float | None = None,
    ) -> None:
        change = relative_change(value, reference)
        rows.append(Perturbed(category, label, setting, setting_label, value, change, achieved))

    def perturbed(perturbation: Perturbation) -> list[DayInputs]:
        """The days rebuilt with ``perturbation`` on every satellite-derived field."""
        return [dataset.evaluation_inputs(day.position, perturbation) for day in days]

    for rate in config.dropout_rates:

        def random_cells(window: F32, rate: float = rate) -> F32:
            return hide(window, random_dropout(np.isfinite(window), rate, rng))

        value = score(perturbed(Perturbation(random_cells)))
        add(
            "dropout_random",
            "satellite dropout (random cells; input day and composite days)",
            rate,
            f"{100 * rate:.0f} %",
            value,
            rate,
        )
    for rate in config.dropout_rates if pool.shape[0] else ():
        achieved: list[float] = []

        def cloud_cells(window: F32, rate: float = rate, achieved: list[float] = achieved) -> F32:
            hidden, fraction = cloud_dropout(np.isfinite(window), pool, rate, rng)
            achieved.append(fraction)
            return hide(window, hidden)

        value = score(perturbed(Perturbation(cloud_cells)))
        mean_achieved = float(np.mean(achieved)) if achieved else 0.0
        add(
            "dropout_cloud",
            "satellite dropout (cloud-shaped, borrowed gaps; input day and composite days)",
            rate,
            f"{100 * rate:.0f} % (achieved {100 * mean_achieved:.0f} %)",
            value,
            mean_achieved,
        )
    for level in config.noise_levels:

        def noisy(field: F32, level: float = level) -> F32:
            return add_noise(field, level, rng)

        value = score(perturbed(Perturbation(noisy, climatology=noisy)))
        add(
            "noise",
            "multiplicative noise on every satellite-derived input",
            level,
            f"{100 * level:.0f} %",
            value,
        )
    feature_axis = 1 + dataset.aux_axes.index("feature")  # after the batch axis
    for group in FEATURE_GROUPS:

        def drop(batch: Batch, group: str = group) -> Batch:
            changed = batch.with_inputs(aux=drop_feature_group(batch.aux, group, feature_axis))
            if group == "wind" and changed.wind.numel():
                changed = changed.with_inputs(wind=dataset.median_wind_like(changed))
            return changed

        add(
            "feature_group",
            "meteorological feature-group dropout (set to median)",
            group,
            group,
            score(days, drop),
        )
    return RobustnessResult(
        reference_rmse=reference,
        climatology_rmse=climatology_rmse,
        n_days=len(days),
        tests=judge(rows, climatology_rmse),
    )
