"""Where the model wins and fails: scores by region class, season and pollution level.

Sits in ``evaluation/`` on top of ``metrics.py``: each breakdown restricts the valid-cell mask
and calls ``compute_all`` on the same (time, lat, lon) fields, so the numbers are directly
comparable with the global scores. Pollution-level bins come from quantiles of the TRAINING
targets (never the test targets), and their edges are reported with the scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from no2fusion.evaluation.metrics import as_array, compute_all
from no2fusion.vocab import REGION_CLASSES

SEASONS: dict[str, tuple[int, ...]] = {
    "DJF": (12, 1, 2),
    "MAM": (3, 4, 5),
    "JJA": (6, 7, 8),
    "SON": (9, 10, 11),
}


def season_of_month(month: int) -> str:
    """'DJF' | 'MAM' | 'JJA' | 'SON' for a calendar month 1..12."""
    for season, months in SEASONS.items():
        if month in months:
            return season
    raise ValueError(f"month must be 1..12, got {month}")


def months_of(times: ArrayLike) -> NDArray[np.int64]:
    """Calendar months 1..12 of datetime64 values (any resolution), shape of ``times``."""
    t = np.asarray(times, dtype="datetime64[M]")
    return (t.astype(np.int64) % 12 + 1).astype(np.int64)


def by_region(
    pred: ArrayLike,
    target: ArrayLike,
    valid: ArrayLike,
    region: ArrayLike,
    cell_area: ArrayLike | None = None,
    classes: Sequence[str] = REGION_CLASSES,
) -> dict[str, dict[str, Any]]:
    """Scores per region class. region: (lat, lon) int codes (index into ``classes``)."""
    codes = np.asarray(region)
    base = as_array(valid) > 0
    out = {}
    for code, name in enumerate(classes):
        in_class = np.broadcast_to(codes == code, base.shape)
        out[name] = compute_all(pred, target, base & in_class, cell_area)
    return out


def by_season(
    pred: ArrayLike,
    target: ArrayLike,
    valid: ArrayLike,
    times: ArrayLike,
    cell_area: ArrayLike | None = None,
) -> dict[str, dict[str, Any]]:
    """Scores per meteorological season; fields are (time, lat, lon), times (time,)."""
    base = as_array(valid) > 0
    seasons = np.array([season_of_month(int(m)) for m in months_of(times)])
    out = {}
    for season in SEASONS:
        in_season = (seasons == season)[:, None, None]
        out[season] = compute_all(pred, target, base & in_season, cell_area)
        out[season]["n_days"] = int(in_season.sum())
    return out


def pollution_bin_edges(train_target: ArrayLike, quantiles: Sequence[float]) -> list[float]:
    """Quantiles of the finite training targets, umol m-2, ascending (the inner bin edges)."""
    values = as_array(train_target)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no finite training target to derive pollution bins from")
    return [float(v) for v in np.quantile(values, sorted(quantiles))]


def pollution_bin_labels(quantiles: Sequence[float]) -> list[str]:
    """Bin names from quantile levels, e.g. (0.5, 0.9) -> ['<q50', 'q50-q90', '>=q90']."""
    q = [f"q{round(100 * level):d}" for level in sorted(quantiles)]
    return [f"<{q[0]}"] + [f"{a}-{b}" for a, b in zip(q[:-1], q[1:], strict=True)] + [f">={q[-1]}"]


def by_pollution_level(
    pred: ArrayLike,
    target: ArrayLike,
    valid: ArrayLike,
    edges: Sequence[float],
    quantiles: Sequence[float],
    cell_area: ArrayLike | None = None,
) -> dict[str, Any]:
    """Scores per level of the OBSERVED target, binned at ``edges`` (from training quantiles).

    Returns ``{"edges": [...], "quantiles": [...], "units": ..., "bins": {label: scores}}``;
    bin i holds edges[i-1] <= target < edges[i] (open-ended at both ends).
    """
    t = as_array(target)
    base = as_array(valid) > 0
    bounds = [-math.inf, *edges, math.inf]
    bins = {}
    for label, low, high in zip(
        pollution_bin_labels(quantiles), bounds[:-1], bounds[1:], strict=True
    ):
        with np.errstate(invalid="ignore"):
            in_bin = (t >= low) & (t < high)
        scores = compute_all(pred, target, base & in_bin, cell_area)
        scores["lower"] = None if math.isinf(low) else low
        scores["upper"] = None if math.isinf(high) else high
        bins[label] = scores
    return {
        "edges": [float(e) for e in edges],
        "quantiles": [float(q) for q in sorted(quantiles)],
        "units": "umol m-2",
        "bins": bins,
    }
