"""The seed's Python API in one thin module on top of the real one.

The original specification's snippets keep working (``from no2fusion import Trainer, ...``);
the package top level exports these names lazily. Each is either the real class (re-exported)
or a few lines over the real API, and nothing below this module depends on it:

- ``SentinelDataLoader`` (``io.tropomi``), ``create_target_grid`` (``grid``),
  ``AreaWeightedRegridder``, ``TemporalAligner``, ``FeatureEngineer``, ``RobustNormalizer``
  (``pipeline``), ``CrossModalNO2Predictor`` (``models``): the real classes.
- ``TrainerConfig``: the ``training`` config section (``config.TrainingConfig``) plus the four
  settings the seed's trainer takes besides it; ``Trainer``: the project's LightningModule and
  Lightning ``Trainer`` over any ``DataLoader`` of ``data.batch.Batch`` objects or of the seed's
  ``(sat, aux, target[, mask])`` tuples (NaN in ``target`` marks missing cells)::

      trainer = Trainer(model, TrainerConfig(warmup_epochs=10, finetune_epochs=40))
      history = trainer.train(train_loader, val_loader)   # one value per epoch and key

- ``MetricsCalculator``: ``evaluation.metrics.compute_all`` and the region/season breakdowns of
  ``evaluation.breakdown`` as methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from numpy.typing import ArrayLike
from pydantic import ValidationError
from torch import Tensor, nn
from torch.utils.data import DataLoader

from no2fusion.config import TrainingConfig
from no2fusion.data.batch import Batch
from no2fusion.errors import ConfigError
from no2fusion.evaluation.breakdown import by_region, by_season
from no2fusion.evaluation.metrics import compute_all
from no2fusion.grid import create_target_grid
from no2fusion.io.tropomi import SentinelDataLoader
from no2fusion.models.fusion import CrossModalNO2Predictor
from no2fusion.pipeline.align import TemporalAligner
from no2fusion.pipeline.features import FeatureEngineer
from no2fusion.pipeline.normalize import RobustNormalizer
from no2fusion.pipeline.regrid import AreaWeightedRegridder
from no2fusion.training.module import NO2LightningModule
from no2fusion.training.train import lightning_trainer
from no2fusion.vocab import NO2_UNITS, UMOL_M2_TO_MOLEC_CM2

__all__ = [
    "AreaWeightedRegridder",
    "CrossModalNO2Predictor",
    "FeatureEngineer",
    "MetricsCalculator",
    "RobustNormalizer",
    "SentinelDataLoader",
    "TemporalAligner",
    "Trainer",
    "TrainerConfig",
    "create_target_grid",
]


class TrainerConfig(TrainingConfig):
    """``TrainingConfig`` (defaults: the seed's values) plus the seed trainer's own settings.

    ``seed``: seeds torch, numpy and Python before training. ``checkpoint_dir``: where
    ``best.ckpt``/``last.ckpt`` and the CSV log go (None: nowhere). ``no2_iqr``: the NO2
    normalizer's IQR in umol m-2, to report val RMSE in physical units. An invalid value is a
    one-line ``ConfigError`` naming the key.
    """

    seed: int = 42
    checkpoint_dir: Path | None = None
    no2_iqr: float | None = None
    enable_progress_bar: bool = False

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"TrainerConfig.{key}: {first['msg']}") from None

    def to_training_config(self) -> TrainingConfig:
        """The ``training`` config section alone."""
        return TrainingConfig(**{name: getattr(self, name) for name in TrainingConfig.model_fields})

    @classmethod
    def from_training_config(cls, config: TrainingConfig, seed: int = 42) -> TrainerConfig:
        """The seed-API view of a ``training`` config section."""
        return cls(**config.model_dump(), seed=seed)


class _SeedModule(NO2LightningModule):
    """The project's LightningModule, also taking the seed's tuple batches."""

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Batch:
        if isinstance(batch, Batch):
            return batch
        if isinstance(batch, (tuple, list)) and len(batch) in (3, 4):
            return Batch.from_inputs(*batch)
        raise TypeError(
            "a batch must be a data.batch.Batch or a tuple (sat, aux, target[, mask]); "
            f"got {type(batch).__name__}"
        )


class Trainer:
    """Warm-start training of ``model`` (see the module docstring)."""

    def __init__(self, model: nn.Module, config: TrainerConfig | None = None) -> None:
        self.model = model
        self.config = config or TrainerConfig()
        self.module: NO2LightningModule | None = None
        self.lightning: pl.Trainer | None = None

    def train(
        self, train_loader: DataLoader, val_loader: DataLoader | None = None
    ) -> dict[str, list[float]]:
        """Run both phases; return the per-epoch history.

        Keys: ``train_loss``, ``val_loss`` (NaN without ``val_loader``), ``val_rmse``,
        ``val_rmse_umol_m2`` (NaN without ``no2_iqr``), ``lr`` (attention/head LR), ``epoch``.
        The model is trained in place.
        """
        config = self.config
        pl.seed_everything(config.seed, workers=True, verbose=False)
        training = config.to_training_config()
        self.module = _SeedModule(
            self.model,
            training,
            config.no2_iqr,
            meta={"trainer_config": config.model_dump(mode="json")},
        )
        self.lightning = lightning_trainer(
            training,
            checkpoint_dir=config.checkpoint_dir,
            log_dir=config.checkpoint_dir.parent if config.checkpoint_dir else None,
            progress_bar=config.enable_progress_bar,
        )
        self.lightning.fit(self.module, train_dataloaders=train_loader, val_dataloaders=val_loader)
        return {key: list(values) for key, values in self.module.history.items()}


class MetricsCalculator:
    """``MetricsCalculator().compute_all(pred, target, ...)``: ``evaluation.metrics.compute_all``.

    Fields are (..., lat, lon) in umol m-2 (time first when there is a time axis). ``units``
    only labels the output; ``to_molec_cm2`` converts the dimensional scores for the twin
    ``*_molec_cm2`` keys (None switches them off, e.g. for normalized fields).
    """

    def __init__(self, units: str = NO2_UNITS, to_molec_cm2: float | None = UMOL_M2_TO_MOLEC_CM2):
        self.units = units
        self.to_molec_cm2 = to_molec_cm2

    def compute_all(
        self,
        pred: ArrayLike | Tensor,
        target: ArrayLike | Tensor,
        mask: ArrayLike | Tensor | None = None,
        cell_area: ArrayLike | None = None,
        references: dict[str, ArrayLike] | None = None,
    ) -> dict[str, Any]:
        """Every score of ``evaluation.metrics`` as a flat JSON-ready dict."""
        return compute_all(
            pred,
            target,
            mask,
            cell_area,
            references,
            units=self.units,
            to_molec_cm2=self.to_molec_cm2,
        )

    def compute_by_region(
        self,
        pred: ArrayLike,
        target: ArrayLike,
        region: ArrayLike,
        mask: ArrayLike | None = None,
        cell_area: ArrayLike | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Scores per region class; region: (lat, lon) codes of ``vocab.REGION_CLASSES``."""
        return by_region(pred, target, _all_cells(target, mask), region, cell_area)

    def compute_by_season(
        self,
        pred: ArrayLike,
        target: ArrayLike,
        times: ArrayLike,
        mask: ArrayLike | None = None,
        cell_area: ArrayLike | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Scores per season (DJF, MAM, JJA, SON); fields (time, lat, lon), times (time,)."""
        return by_season(pred, target, _all_cells(target, mask), times, cell_area)


def _all_cells(target: ArrayLike, mask: ArrayLike | None) -> ArrayLike:
    """``mask``, or every cell of ``target`` when None."""
    return np.ones(np.shape(target), dtype=bool) if mask is None else mask
