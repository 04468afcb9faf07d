"""no2fusion: TROPOMI NO2 + ERA5 -> exact area-weighted datacube -> cross-modal attention model.

The seed's public API (``no2fusion.seed_api``) is exported here lazily, so ``import no2fusion``
stays cheap (torch, numba and xarray load only when a name is first used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Grid": "no2fusion.grid",
    "BBox": "no2fusion.grid",
    "create_target_grid": "no2fusion.grid",
    "load_config": "no2fusion.config",
    **dict.fromkeys(
        (
            "SentinelDataLoader",
            "AreaWeightedRegridder",
            "TemporalAligner",
            "FeatureEngineer",
            "RobustNormalizer",
            "CrossModalNO2Predictor",
            "Trainer",
            "TrainerConfig",
            "MetricsCalculator",
        ),
        "no2fusion.seed_api",
    ),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'no2fusion' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
