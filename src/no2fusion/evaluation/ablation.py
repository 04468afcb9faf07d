"""Is the attention doing anything? Entropy of the attention, the shuffle test, verdicts.

Sits in ``evaluation/``; pure numpy. ``evaluate.py`` feeds it the cross-modal model's attention
weights (B, layers, heads, tokens, T) and the RMSEs of the model, its shuffled-input runs and
the baselines, all on the identical test cells. The verdicts restate the seed's criteria
(beat concatenation by > 5 % RMSE; auxiliary data must help against satellite-only; attention
must not collapse to uniform) and the strong baselines, and say plainly when one fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from no2fusion.evaluation.metrics import as_array

COLLAPSE_THRESHOLD = 0.9  # entropy ratio above this = near-uniform attention (seed)
CONCAT_MARGIN = 0.05  # the seed: cross-modal attention must beat concatenation by > 5 % RMSE
_EPS = 1e-12


def attention_entropy(weights: ArrayLike) -> NDArray[np.float64]:
    """Shannon entropy (nats) over the last axis (T) of attention weights that sum to 1."""
    p = as_array(weights)
    return -(p * np.log(np.clip(p, _EPS, None))).sum(axis=-1)


def entropy_ratio(weights: ArrayLike) -> float:
    """Mean entropy / ln T over every leading index (batch, layer, head, token); 1 = uniform."""
    p = as_array(weights)
    steps = p.shape[-1]
    if steps < 2:
        return math.nan
    return float(attention_entropy(p).mean() / math.log(steps))


def entropy_ratio_per_layer(weights: ArrayLike) -> list[float]:
    """Entropy ratio of each layer for weights (B, layers, heads, tokens, T)."""
    p = as_array(weights)
    return [entropy_ratio(p[:, layer]) for layer in range(p.shape[1])]


def _verdict(
    criterion: str, passed: bool | None, statement: str, value: float | None = None
) -> dict[str, Any]:
    return {"criterion": criterion, "passed": passed, "statement": statement, "value": value}


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
) -> list[dict[str, Any]]:
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
    return out
