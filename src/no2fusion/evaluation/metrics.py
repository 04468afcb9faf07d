"""Area-weighted, NaN-aware verification metrics in physical units (WeatherBench-2 style).

Sits in ``evaluation/``, after training: every score in ``metrics.json`` (the model, the
baselines, the breakdowns, the ablation and robustness tables) comes from ``compute_all`` on
fields in umol m-2, so all of them are comparable. Pure numpy; torch tensors are accepted and
converted. The seed's ``MetricsCalculator`` (``no2fusion.seed_api``) is a thin class over it.

Definitions (w = cell area of a valid cell, e = pred - target, sums over valid cells only):

- ``rmse`` = sqrt(sum w e^2 / sum w): the root of the area-weighted mean squared error (one
  root over all days, not a mean of daily RMSEs);
- ``mae`` = sum w |e| / sum w; ``bias`` = sum w e / sum w;
- ``r2`` = 1 - sum w e^2 / sum w (target - weighted mean target)^2;
- ``spatial_correlation``: per time slice, the area-weighted Pearson correlation between the
  predicted and the observed pattern, averaged over the slices with >= 3 valid cells and a
  non-constant pattern;
- ``skill_vs_<ref>`` = 1 - MSE(pred) / MSE(ref) on the cells where the reference is finite too
  (1 = perfect, 0 = no better than the reference, < 0 = worse);
- ``n_valid``: number of cells that entered the scores.

A cell is valid where ``mask`` is true and both ``pred`` and ``target`` are finite; NaN padding
therefore never changes a score.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from no2fusion.vocab import NO2_UNITS, UMOL_M2_TO_MOLEC_CM2

Array = NDArray[np.float64]

# Scores that carry the units of the field (and get a molec cm-2 twin in ``compute_all``).
DIMENSIONAL_METRICS: tuple[str, ...] = ("rmse", "mae", "bias")
MOLEC_UNITS = "molec cm-2"
MIN_CELLS_FOR_CORRELATION = 3


def as_array(values: Any) -> Array:
    """A float64 numpy copy of a numpy array, list or torch tensor (detached, on CPU)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().float().numpy()
    return np.asarray(values, dtype=np.float64)


def valid_cells(pred: Array, target: Array, mask: ArrayLike | None = None) -> NDArray[np.bool_]:
    """Boolean map of cells where ``mask`` holds and both fields are finite (same shape)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} differs from target shape {target.shape}")
    valid = np.isfinite(pred) & np.isfinite(target)
    if mask is not None:
        valid &= np.broadcast_to(as_array(mask) > 0, pred.shape)
    return valid


def cell_weights(shape: tuple[int, ...], cell_area: ArrayLike | None) -> Array:
    """Per-cell weights broadcast to ``shape``; cell_area is (lat, lon) m2 (trailing dims)."""
    if cell_area is None:
        return np.ones(shape, dtype=np.float64)
    area = as_array(cell_area)
    if np.any(~np.isfinite(area)) or np.any(area < 0):
        raise ValueError("cell_area must be finite and non-negative")
    return np.broadcast_to(area, shape)


def _weighted_mean(values: Array, weights: Array) -> float:
    total = float(weights.sum())
    return float((weights * values).sum() / total) if total > 0 else math.nan


def spatial_correlation(
    pred: Array, target: Array, valid: NDArray[np.bool_], weights: Array
) -> float:
    """Mean over time slices (axis 0 when ndim >= 3) of the area-weighted pattern correlation."""
    if pred.ndim < 3:
        pred, target, weights = pred[None], target[None], weights[None]
        valid = valid[None]
    correlations = []
    for p, t, v, w in zip(pred, target, valid, weights, strict=True):
        if v.sum() < MIN_CELLS_FOR_CORRELATION:
            continue
        p, t, w = p[v], t[v], w[v]
        dp = p - _weighted_mean(p, w)
        dt = t - _weighted_mean(t, w)
        denominator = math.sqrt(float((w * dp * dp).sum()) * float((w * dt * dt).sum()))
        if denominator > 0:
            correlations.append(float((w * dp * dt).sum()) / denominator)
    return float(np.mean(correlations)) if correlations else math.nan


def mean_squared_error(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    cell_area: ArrayLike | None = None,
) -> float:
    """Area-weighted MSE over valid cells, (units of the field)^2; NaN when no cell is valid."""
    p, t = as_array(pred), as_array(target)
    valid = valid_cells(p, t, mask)
    w = cell_weights(p.shape, cell_area)[valid]
    return _weighted_mean((p[valid] - t[valid]) ** 2, w)


def skill_score(mse_model: float, mse_reference: float) -> float:
    """1 - MSE/MSE_ref; NaN when the reference MSE is zero or undefined."""
    if not math.isfinite(mse_reference) or mse_reference <= 0 or not math.isfinite(mse_model):
        return math.nan
    return 1.0 - mse_model / mse_reference


def compute_all(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    cell_area: ArrayLike | None = None,
    references: dict[str, ArrayLike] | None = None,
    *,
    units: str = NO2_UNITS,
    to_molec_cm2: float | None = UMOL_M2_TO_MOLEC_CM2,
) -> dict[str, Any]:
    """Every score of the module docstring as a flat JSON-ready dict.

    Args:
        pred, target: (..., lat, lon) fields in ``units`` (time first when there is a time
            axis); NaN = missing; numpy arrays, lists or torch tensors.
        mask: optional bool/0-1 array broadcastable to the fields; False excludes a cell.
        cell_area: optional (lat, lon) cell areas in m2 (None = equal weights).
        references: optional name -> reference forecast on the same cells (e.g.
            ``{"persistence": ..., "climatology": ...}``) giving ``skill_vs_<name>``.
        units: only labels the output.
        to_molec_cm2: factor for the twin ``*_molec_cm2`` keys of the dimensional scores
            (None switches them off, e.g. for normalized fields).
    """
    p, t = as_array(pred), as_array(target)
    valid = valid_cells(p, t, mask)
    weights = cell_weights(p.shape, cell_area)
    n_valid = int(valid.sum())
    out: dict[str, Any] = {"n_valid": n_valid, "units": units}
    if n_valid == 0:
        for name in (*DIMENSIONAL_METRICS, "r2", "spatial_correlation"):
            out[name] = math.nan
    else:
        w, pv, tv = weights[valid], p[valid], t[valid]
        error = pv - tv
        mse = _weighted_mean(error**2, w)
        out["rmse"] = math.sqrt(mse)
        out["mae"] = _weighted_mean(np.abs(error), w)
        out["bias"] = _weighted_mean(error, w)
        variance = _weighted_mean((tv - _weighted_mean(tv, w)) ** 2, w)
        out["r2"] = 1.0 - mse / variance if variance > 0 else math.nan
        out["spatial_correlation"] = spatial_correlation(p, t, valid, weights)
    for name, reference in (references or {}).items():
        ref = as_array(reference)
        common = valid & np.isfinite(ref)
        out[f"skill_vs_{name}"] = skill_score(
            mean_squared_error(p, t, common, cell_area),
            mean_squared_error(ref, t, common, cell_area),
        )
    if to_molec_cm2 is not None:
        for name in DIMENSIONAL_METRICS:
            out[f"{name}_molec_cm2"] = out[name] * to_molec_cm2
        out["units_molec_cm2"] = MOLEC_UNITS
    return out


def relative_change(value: float, reference: float) -> float:
    """(value - reference) / reference; NaN when the reference is zero or undefined."""
    if not (math.isfinite(value) and math.isfinite(reference)) or reference == 0:
        return math.nan
    return (value - reference) / reference
