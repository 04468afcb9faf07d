"""The seed's Python API: ``Trainer(model, TrainerConfig(...)).train(train_loader, val_loader)``.

Sits in ``training/`` beside ``train.py`` (the cube-driven entry point); both run the same
LightningModule, warm-start callbacks and Lightning ``Trainer``. This one takes any
``DataLoader`` whose batches are the dicts of ``data.dataset`` or tuples
``(sat, aux, target[, mask])`` (NaN in ``target`` marks missing cells), and any model with
``forward(sat, aux) -> (pred, attention)`` or ``-> pred``::

    config = TrainerConfig(warmup_epochs=10, finetune_epochs=40)
    trainer = Trainer(model, config)
    history = trainer.train(train_loader, val_loader)
    history["train_loss"], history["val_loss"]  # one value per epoch
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
from pydantic import ValidationError
from torch import nn
from torch.utils.data import DataLoader

from no2fusion.config import TrainingConfig
from no2fusion.errors import ConfigError
from no2fusion.training.module import NO2LightningModule
from no2fusion.training.train import lightning_trainer


@dataclass
class TrainerConfig:
    """The seed's training settings (defaults: the seed's values).

    ``checkpoint_dir``: where ``best.ckpt``/``last.ckpt`` and the CSV log go (None: nowhere).
    ``no2_iqr``: the NO2 normalizer's IQR in umol m-2, to report val RMSE in physical units.
    """

    warmup_epochs: int = 10
    finetune_epochs: int = 40
    warmup_lr: float = 1e-3
    finetune_lr: float = 1e-4
    encoder_lr_factor: float = 0.1
    weight_decay: float = 1e-4
    loss: Literal["huber", "weighted_mae"] = "huber"
    huber_delta: float = 1.0
    early_stopping_patience: int = 8
    gradient_clip: float = 1.0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int | Literal["auto"] = 1
    seed: int = 42
    limit_train_batches: int | None = None
    limit_val_batches: int | None = None
    checkpoint_dir: str | Path | None = None
    no2_iqr: float | None = None
    enable_progress_bar: bool = False

    _NOT_TRAINING = ("seed", "checkpoint_dir", "no2_iqr", "enable_progress_bar")

    def to_training_config(self) -> TrainingConfig:
        """The validated ``training`` config section (``ConfigError`` naming a bad value)."""
        values = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._NOT_TRAINING
        }
        try:
            return TrainingConfig(**values)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"TrainerConfig.{key}: {first['msg']}") from None

    @classmethod
    def from_training_config(cls, config: TrainingConfig, seed: int = 42) -> TrainerConfig:
        """The seed-API view of a ``training`` config section."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in config.model_dump().items() if k in names}
        return cls(**values, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


class Trainer:
    """Warm-start training of ``model`` (wraps Lightning; see the module docstring)."""

    def __init__(self, model: nn.Module, config: TrainerConfig | None = None) -> None:
        self.model = model
        self.config = config or TrainerConfig()
        self.training_config = self.config.to_training_config()
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
        pl.seed_everything(self.config.seed, workers=True, verbose=False)
        checkpoint_dir = Path(self.config.checkpoint_dir) if self.config.checkpoint_dir else None
        self.module = NO2LightningModule(
            self.model,
            self.training_config,
            self.config.no2_iqr,
            meta={"trainer_config": self.config.to_dict()},
        )
        self.lightning = lightning_trainer(
            self.training_config,
            checkpoint_dir=checkpoint_dir,
            log_dir=checkpoint_dir.parent if checkpoint_dir is not None else None,
            progress_bar=self.config.enable_progress_bar,
        )
        self.lightning.fit(self.module, train_dataloaders=train_loader, val_dataloaders=val_loader)
        return {key: list(values) for key, values in self.module.history.items()}
