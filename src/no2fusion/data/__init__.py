"""Cube -> samples: blocked splits, tiles, the torch Dataset and the Lightning DataModule.

Sits after ``io/`` and ``pipeline/`` and before ``models/``: NaN stops here (NaN -> 0 plus a
validity-mask channel) and torch starts here (DESIGN §2, §3).
"""

from __future__ import annotations

from no2fusion.data.arrays import CubeArrays, Normalizers, fit_normalizers
from no2fusion.data.batch import Batch, stack_samples
from no2fusion.data.datamodule import NO2DataModule
from no2fusion.data.dataset import DayInputs, EpochSampler, NO2TileDataset
from no2fusion.data.splits import SEASONS, Split, blocked_split, season_of
from no2fusion.data.tiles import Tile, covering_tiles, met_weights, random_tile

__all__ = [
    "SEASONS",
    "Batch",
    "CubeArrays",
    "DayInputs",
    "EpochSampler",
    "NO2DataModule",
    "NO2TileDataset",
    "Normalizers",
    "Split",
    "Tile",
    "blocked_split",
    "covering_tiles",
    "fit_normalizers",
    "met_weights",
    "random_tile",
    "season_of",
    "stack_samples",
]
