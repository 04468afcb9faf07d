"""Warm-start schedule: LR per phase, the encoder factor, early stopping only in phase 2."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset, default_collate

from no2fusion.config import Config, ModelConfig, TrainingConfig
from no2fusion.data.batch import Batch
from no2fusion.models import build_model
from no2fusion.training.module import NO2LightningModule
from no2fusion.training.regime import (
    FinetuneEarlyStopping,
    is_encoder_parameter,
    learning_rates,
    parameter_groups,
    phase_of,
)
from no2fusion.training.train import lightning_trainer

REGIME = TrainingConfig(
    warmup_epochs=2,
    finetune_epochs=2,
    warmup_lr=1e-3,
    finetune_lr=2e-4,
    encoder_lr_factor=0.25,
    precision="fp32",
    accelerator="cpu",
)


def _two_channel_model(config: Config) -> ModelConfig:
    """The test model config for the two-channel tensors below (no channel to add a residual to)."""
    return config.model.model_copy(update={"residual": "none"})


def test_learning_rates_per_phase() -> None:
    assert [phase_of(e, REGIME) for e in range(4)] == ["warmup", "warmup", "finetune", "finetune"]
    assert learning_rates(1, REGIME) == {"encoders": 1e-3, "fusion_head": 1e-3}
    assert learning_rates(2, REGIME) == {"encoders": pytest.approx(5e-5), "fusion_head": 2e-4}


def test_cosine_schedule_decays_within_each_phase() -> None:
    cosine = REGIME.model_copy(update={"lr_schedule": "cosine"})
    assert learning_rates(0, cosine) == {"encoders": 1e-3, "fusion_head": 1e-3}
    # halfway through phase 1 (epoch 1 of 2, start): midway between 1e-3 and 2e-4
    assert learning_rates(1, cosine)["fusion_head"] == pytest.approx(6e-4)
    # a quarter of phase 1: 2e-4 + 8e-4 * (1 + cos(pi / 4)) / 2
    quarter = 2e-4 + 8e-4 * (1 + math.cos(math.pi / 4)) / 2
    assert learning_rates(0, cosine, 0.5)["fusion_head"] == pytest.approx(quarter)
    # phase 2 starts at finetune_lr (encoders x factor) and ends at a tenth of it
    assert learning_rates(2, cosine) == {"encoders": pytest.approx(5e-5), "fusion_head": 2e-4}
    assert learning_rates(3, cosine, 1.0)["fusion_head"] == pytest.approx(2e-5)
    rates = [learning_rates(e, cosine, f)["fusion_head"] for e in range(4) for f in (0, 0.5)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))


def test_encoder_parameters_are_grouped(tiny_train_config: Config) -> None:
    model = build_model(_two_channel_model(tiny_train_config), satellite_in_channels=2)
    groups = {group["name"]: group["params"] for group in parameter_groups(model)}
    encoder_names = {n for n, _ in model.named_parameters() if is_encoder_parameter(n)}
    assert encoder_names and all(
        n.split(".")[0] in {"satellite_encoder", "auxiliary_encoder"} for n in encoder_names
    )
    assert len(groups["encoders"]) == len(encoder_names)
    assert len(groups["encoders"]) + len(groups["fusion_head"]) == len(list(model.parameters()))


class _RecordLR(Callback):
    def __init__(self) -> None:
        self.rates: list[dict[str, float]] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: Any, batch: Any, index: int
    ) -> None:
        if index == 0:
            groups = trainer.optimizers[0].param_groups
            self.rates.append({group["name"]: group["lr"] for group in groups})


def _loaders() -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    sat = torch.randn(8, 2, 16, 16, generator=generator)
    aux = torch.randn(8, 24, 13, generator=generator)
    target = sat[:, 0] * 0.5
    target[:, :4] = float("nan")
    data = TensorDataset(sat, aux, target)

    def collate(items: list[tuple[torch.Tensor, ...]]) -> Batch:
        return Batch.from_inputs(*default_collate(items))  # NaN target = missing cell

    return (
        DataLoader(data, batch_size=4, collate_fn=collate),
        DataLoader(data, batch_size=4, collate_fn=collate),
    )


def test_schedule_applied_in_a_lightning_run(tiny_train_config: Config) -> None:
    torch.manual_seed(0)
    model = build_model(_two_channel_model(tiny_train_config), satellite_in_channels=2)
    module = NO2LightningModule(model, REGIME)
    recorder = _RecordLR()
    trainer = lightning_trainer(REGIME, callbacks=[recorder], progress_bar=False)
    trainer.fit(module, *_loaders())
    assert recorder.rates == [
        {"encoders": 1e-3, "fusion_head": 1e-3},
        {"encoders": 1e-3, "fusion_head": 1e-3},
        {"encoders": pytest.approx(5e-5), "fusion_head": 2e-4},
        {"encoders": pytest.approx(5e-5), "fusion_head": 2e-4},
    ]
    assert module.history["lr"] == [1e-3, 1e-3, 2e-4, 2e-4]
    assert len(module.history["val_loss"]) == 4


class _RecordEveryLR(Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: Any, batch: Any, index: int
    ) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[-1]["lr"])


def test_cosine_schedule_is_applied_before_every_batch(tiny_train_config: Config) -> None:
    cosine = REGIME.model_copy(update={"lr_schedule": "cosine"})
    torch.manual_seed(0)
    module = NO2LightningModule(build_model(_two_channel_model(tiny_train_config), 2), cosine)
    recorder = _RecordEveryLR()
    trainer = lightning_trainer(cosine, callbacks=[recorder], progress_bar=False)
    trainer.fit(module, *_loaders())
    expected = [learning_rates(e, cosine, b / 2)["fusion_head"] for e in range(4) for b in (0, 1)]
    assert recorder.rates == pytest.approx(expected)


class _Linear(torch.nn.Module):
    """A 1x1 convolution: no normalization layer, so frozen weights give a constant val loss."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(2, 1, 1)

    def forward(self, sat: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return self.head(sat[:, :2])[:, 0]


def test_early_stopping_waits_for_phase_two() -> None:
    # LRs far below float32 resolution: the weights, hence val_loss, never change. Plain early
    # stopping with patience 1 would stop after epoch 1; ours ignores the 3 warmup epochs, takes
    # epoch 3 as the best and stops after epoch 4, well before epoch 8.
    config = TrainingConfig(
        warmup_epochs=3,
        finetune_epochs=5,
        warmup_lr=1e-20,
        finetune_lr=1e-20,
        weight_decay=0.0,
        early_stopping_patience=1,
        precision="fp32",
        accelerator="cpu",
    )
    torch.manual_seed(0)
    module = NO2LightningModule(_Linear(), config)
    trainer = lightning_trainer(config, progress_bar=False)
    trainer.fit(module, *_loaders())
    assert module.history["epoch"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(set(module.history["val_loss"])) == 1
    assert isinstance(trainer.early_stopping_callback, FinetuneEarlyStopping)
