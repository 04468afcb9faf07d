"""Perturbations of the model's inputs and the seed's expectations for them.

Sits in ``evaluation/``; pure numpy on NORMALIZED model inputs (``sat`` (N, C, H, W) with the
NO2 value in channel ``VALUE_CHANNEL`` and its validity mask in ``MASK_CHANNEL``; ``aux``
(N, T, F) in ``vocab.FEATURES`` order). ``evaluate.py`` runs the model on each perturbed copy
and scores it on the unchanged targets.

- satellite-cell dropout: a fraction of the VALID input cells is hidden (value 0 = the
  normalized median, mask 0), either at random or with the shape of a real cloud gap borrowed
  from another day;
- meteorological feature-group dropout: the group's features set to 0, the normalized median;
- noise: multiplicative Gaussian noise on the physical input values, x (1 + level * eps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from no2fusion.vocab import FEATURE_GROUPS, FEATURES

VALUE_CHANNEL = 0
MASK_CHANNEL = 1
Floats = NDArray[np.float32] | NDArray[np.float64]
Mask = NDArray[np.bool_]

# The seed's expectations ("Robustness Testing"): an x % perturbation may raise RMSE by < x %;
# at >= 50 % dropout the model "should still produce reasonable predictions", which we test with
# the same rule (< +x % RMSE) and report beside the climatology RMSE for context.
REASONABLE_RATE = 0.5
GROUP_EXPECTATIONS = {"wind": "high degradation", "blh": "medium degradation"}
MEASURABLE_CHANGE = 0.01


def hide_cells(sat: Floats, hide: Mask) -> Floats:
    """Copy of ``sat`` with cells ``hide`` (N, H, W) set to value 0 and mask 0."""
    out = sat.copy()
    out[:, VALUE_CHANNEL][hide] = 0.0
    out[:, MASK_CHANNEL][hide] = 0.0
    return out


def input_valid(sat: Floats) -> Mask:
    """Valid input cells (N, H, W) from the mask channel."""
    return np.asarray(sat[:, MASK_CHANNEL] > 0.5)


def random_dropout(valid: Mask, rate: float, rng: np.random.Generator) -> Mask:
    """Per sample, hide round(rate * n_valid) of its valid cells, uniformly at random."""
    hide = np.zeros_like(valid)
    for i, sample in enumerate(valid):
        cells = np.flatnonzero(sample)
        n = round(rate * cells.size)
        if n:
            chosen = rng.choice(cells, size=n, replace=False)
            hide[i].flat[chosen] = True
    return hide


def cloud_dropout(
    valid: Mask, pool: Mask, rate: float, rng: np.random.Generator
) -> tuple[Mask, float]:
    """Per sample, hide the valid cells under a real gap pattern borrowed from ``pool``.

    pool: (M, H, W) gap masks (True = no observation) of other days. For each sample the
    pattern whose hidden share of the sample's valid cells is closest to ``rate`` is used
    (ties broken at random). Returns the masks and the achieved mean hidden fraction.
    """
    if pool.shape[0] == 0:
        raise ValueError("cloud dropout needs at least one gap pattern")
    hide = np.zeros_like(valid)
    fractions = []
    flat_pool = pool.reshape(pool.shape[0], -1)
    for i, sample in enumerate(valid):
        n_valid = int(sample.sum())
        if n_valid == 0:
            continue
        hidden = (flat_pool & sample.ravel()[None]).sum(axis=1) / n_valid  # (M,)
        distance = np.abs(hidden - rate)
        best = np.flatnonzero(distance <= distance.min() + 1e-9)
        choice = int(rng.choice(best))
        hide[i] = pool[choice] & sample
        fractions.append(float(hidden[choice]))
    return hide, float(np.mean(fractions)) if fractions else 0.0


def drop_feature_group(aux: Floats, group: str) -> Floats:
    """Copy of ``aux`` (N, T, F) with the group's features set to 0 (the normalized median)."""
    out = aux.copy()
    for name in FEATURE_GROUPS[group]:
        out[..., FEATURES.index(name)] = 0.0
    return out


def add_noise(
    sat: Floats,
    level: float,
    rng: np.random.Generator,
    to_physical: Callable[[Floats], Floats],
    to_normalized: Callable[[Floats], Floats],
) -> Floats:
    """Copy of ``sat`` whose valid input values get x -> x (1 + level * eps), eps ~ N(0, 1).

    The noise is applied in physical units (``to_physical`` / ``to_normalized`` convert the
    value channel); hidden cells stay 0.
    """
    out = sat.copy()
    valid = input_valid(sat)
    physical = to_physical(sat[:, VALUE_CHANNEL])
    noisy = physical * (1.0 + level * rng.standard_normal(physical.shape))
    out[:, VALUE_CHANNEL] = np.where(valid, to_normalized(noisy), 0.0)
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


def judge(rows: Sequence[dict[str, Any]], climatology_rmse: float | None) -> list[dict[str, Any]]:
    """Add ``expectation``, ``limit``, ``passed`` (True/False/None) and
    ``better_than_climatology`` (context; None without a climatology RMSE) to each test row.

    Rows carry ``category``, ``setting`` and ``rmse_change`` (fraction) and ``rmse``.
    Feature groups: 'wind' passes when its change is the largest of all groups and measurable
    (> 1 %); 'blh' when measurable; other groups have no expectation (None).
    """
    groups = [r for r in rows if r["category"] == "feature_group"]
    largest = max((r["rmse_change"] for r in groups), default=float("nan"))
    judged = []
    for row in rows:
        text, limit = expectation(row["category"], row["setting"])
        passed: bool | None
        if limit is not None:
            passed = bool(row["rmse_change"] < limit)
        elif row["category"] == "feature_group":
            change = row["rmse_change"]
            if row["setting"] == "wind":
                passed = bool(change >= largest and change > MEASURABLE_CHANGE)
            elif row["setting"] == "blh":
                passed = bool(change > MEASURABLE_CHANGE)
            else:
                passed = None
        else:
            passed = None
        better = None if climatology_rmse is None else bool(row["rmse"] < climatology_rmse)
        judged.append(
            {
                **row,
                "expectation": text,
                "limit": limit,
                "passed": passed,
                "better_than_climatology": better,
            }
        )
    return judged
