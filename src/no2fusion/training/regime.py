"""The seed's two-phase warm-start regime as Lightning callbacks.

Sits in ``training/`` beside ``module.py``: ``train.py`` and the seed ``Trainer`` attach these
callbacks. Phase 1 ("warmup", epochs ``0 .. warmup_epochs-1``) trains every parameter at
``warmup_lr``; phase 2 ("finetune", the next ``finetune_epochs``) uses ``finetune_lr`` for the
attention and head and ``finetune_lr * encoder_lr_factor`` for the encoders (``lr_schedule:
cosine`` decays each phase's LR along half a cosine over its batches instead), so the fusion
adapts while the encoders move slowly (the seed's guard against attention collapse). Learning
rates are a pure function of the epoch (and batch), so a resumed run gets exactly the schedule
it would have had. Early stopping watches the validation loss in phase 2 only (phase 1 is short and
deliberately aggressive).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import nn

from no2fusion.config import TrainingConfig

ENCODERS = "encoders"
FUSION_HEAD = "fusion_head"


def is_encoder_parameter(name: str) -> bool:
    """True for parameters of a top-level submodule whose name contains "encoder"
    (``satellite_encoder.*``, ``auxiliary_encoder.*``)."""
    return "encoder" in name.split(".", 1)[0]


def parameter_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Optimizer parameter groups ``[{"name": "encoders", ...}, {"name": "fusion_head", ...}]``
    (empty groups are left out)."""
    encoders: list[nn.Parameter] = []
    rest: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (encoders if is_encoder_parameter(name) else rest).append(parameter)
    groups = [{"name": ENCODERS, "params": encoders}, {"name": FUSION_HEAD, "params": rest}]
    return [group for group in groups if group["params"]]


def phase_of(epoch: int, config: TrainingConfig) -> str:
    """``"warmup"`` for epochs < warmup_epochs, else ``"finetune"`` (epochs count from 0)."""
    return "warmup" if epoch < config.warmup_epochs else "finetune"


def _cosine(start: float, end: float, fraction: float) -> float:
    """From ``start`` (fraction 0) to ``end`` (fraction 1) along half a cosine."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))


def learning_rates(epoch: int, config: TrainingConfig, progress: float = 0.0) -> dict[str, float]:
    """LR of each parameter group at ``progress`` (0 <= progress < 1, the fraction of the
    epoch's batches done) through ``epoch``.

    ``lr_schedule: constant``: the phase's LR throughout it. ``cosine``: phase 1 decays from
    ``warmup_lr`` to ``finetune_lr`` and phase 2 from ``finetune_lr`` to a tenth of it, along
    half a cosine over the phase's batches (encoders x ``encoder_lr_factor`` in phase 2).
    """
    if phase_of(epoch, config) == "warmup":
        rate = config.warmup_lr
        if config.lr_schedule == "cosine":
            fraction = (epoch + progress) / config.warmup_epochs
            rate = _cosine(config.warmup_lr, config.finetune_lr, fraction)
        return {ENCODERS: rate, FUSION_HEAD: rate}
    rate = config.finetune_lr
    if config.lr_schedule == "cosine" and config.finetune_epochs > 0:
        fraction = (epoch - config.warmup_epochs + progress) / config.finetune_epochs
        rate = _cosine(config.finetune_lr, 0.1 * config.finetune_lr, fraction)
    return {ENCODERS: rate * config.encoder_lr_factor, FUSION_HEAD: rate}


def apply_learning_rates(param_groups: Iterable[dict[str, Any]], rates: dict[str, float]) -> None:
    """Set ``group["lr"]`` from ``rates`` by group name (unnamed groups get the head's LR)."""
    for group in param_groups:
        group["lr"] = rates.get(group.get("name", FUSION_HEAD), rates[FUSION_HEAD])


class WarmStartSchedule(Callback):
    """Sets each group's LR at the start of every training epoch and logs it (``lr_<group>``);
    with ``lr_schedule: cosine`` also before every batch."""

    def __init__(self, config: TrainingConfig) -> None:
        self.config = config

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.config.lr_schedule != "cosine":
            return
        batches = trainer.num_training_batches
        progress = batch_idx / batches if isinstance(batches, int) and batches > 0 else 0.0
        rates = learning_rates(trainer.current_epoch, self.config, progress)
        for optimizer in trainer.optimizers:
            apply_learning_rates(optimizer.param_groups, rates)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rates = learning_rates(trainer.current_epoch, self.config)
        for optimizer in trainer.optimizers:
            apply_learning_rates(optimizer.param_groups, rates)
        for name, rate in rates.items():
            pl_module.log(f"lr_{name}", rate, on_step=False, on_epoch=True, sync_dist=False)


class FinetuneEarlyStopping(EarlyStopping):
    """``EarlyStopping`` on ``val_loss`` that only starts counting in phase 2."""

    def __init__(self, config: TrainingConfig, monitor: str = "val_loss") -> None:
        super().__init__(monitor=monitor, mode="min", patience=config.early_stopping_patience)
        self.warmup_epochs = config.warmup_epochs

    def _should_skip_check(self, trainer: pl.Trainer) -> bool:
        return super()._should_skip_check(trainer) or trainer.current_epoch < self.warmup_epochs
