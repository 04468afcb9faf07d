"""Models: the cross-modal attention predictor, its neural baselines, precision handling.

Sits after ``data/`` and before ``training/``: tensors in (normalized, NaN already 0), tensors
out (normalized NO2). See ``docs/model.md`` for the architecture.
"""

from __future__ import annotations

from no2fusion.models.fusion import (
    MODEL_KINDS,
    ConcatFusion,
    CrossModalNO2Predictor,
    SatelliteOnly,
    build_model,
)
from no2fusion.models.precision import autocast_context, resolve_precision

__all__ = [
    "MODEL_KINDS",
    "ConcatFusion",
    "CrossModalNO2Predictor",
    "SatelliteOnly",
    "autocast_context",
    "build_model",
    "resolve_precision",
]
