"""Training: masked losses, the warm-start regime, checkpoints and the fit entry.

Sits after ``models/`` and before ``evaluation/``. ``train_model`` trains from a cube into a run
directory; ``load_checkpoint`` gives evaluation a trained model with its config and
normalizers. The seed's ``Trainer``/``TrainerConfig`` over plain DataLoaders are in
``no2fusion.seed_api``.
"""

from __future__ import annotations

from no2fusion.training.checkpoint import load_checkpoint, read_meta
from no2fusion.training.losses import masked_huber, masked_loss, weighted_mae
from no2fusion.training.module import NO2LightningModule
from no2fusion.training.regime import FinetuneEarlyStopping, WarmStartSchedule, learning_rates
from no2fusion.training.train import TrainResult, train_model

__all__ = [
    "FinetuneEarlyStopping",
    "NO2LightningModule",
    "TrainResult",
    "WarmStartSchedule",
    "learning_rates",
    "load_checkpoint",
    "masked_huber",
    "masked_loss",
    "read_meta",
    "train_model",
    "weighted_mae",
]
