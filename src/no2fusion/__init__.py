"""no2fusion: TROPOMI NO2 + ERA5 -> exact area-weighted datacube -> cross-modal attention model.

The seed's public API is exported here lazily, so ``import no2fusion`` stays cheap (torch,
numba and xarray load only when the name that needs them is first used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "create_target_grid": "no2fusion.grid",
    "Grid": "no2fusion.grid",
    "BBox": "no2fusion.grid",
    "load_config": "no2fusion.config",
    "SentinelDataLoader": "no2fusion.io.tropomi",
    "AreaWeightedRegridder": "no2fusion.pipeline.regrid",
    "TemporalAligner": "no2fusion.pipeline.align",
    "FeatureEngineer": "no2fusion.pipeline.features",
    "RobustNormalizer": "no2fusion.pipeline.normalize",
    "CrossModalNO2Predictor": "no2fusion.models.fusion",
    "Trainer": "no2fusion.training.trainer",
    "TrainerConfig": "no2fusion.training.trainer",
    "MetricsCalculator": "no2fusion.evaluation.metrics",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'no2fusion' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
