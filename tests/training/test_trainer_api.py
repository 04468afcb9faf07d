"""The seed's snippet: ``Trainer(model, TrainerConfig(...)).train(train_loader, val_loader)``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from no2fusion import CrossModalNO2Predictor, Trainer, TrainerConfig
from no2fusion.config import TrainingConfig
from no2fusion.errors import ConfigError


def _loader(seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    sat = torch.randn(12, 1, 16, 16, generator=generator)
    aux = torch.randn(12, 24, 13, generator=generator)
    target = 0.5 * sat[:, 0] + aux[:, -1, :1, None]  # depends on both inputs
    target[torch.rand(target.shape, generator=generator) < 0.3] = float("nan")  # clouds
    return DataLoader(TensorDataset(sat, aux, target), batch_size=4)


def test_seed_snippet_trains_and_returns_history(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CrossModalNO2Predictor(
        satellite_in_channels=1,
        auxiliary_feature_dim=13,
        embed_dim=32,
        num_attention_heads=4,
        num_attention_layers=2,
        cnn_channels=(8, 16, 32, 32),
        auxiliary_layers=1,
        auxiliary_heads=4,
        head_hidden_dim=16,
        dropout=0.0,
    )
    before = [p.detach().clone() for p in model.parameters()]
    config = TrainerConfig(
        warmup_epochs=2,
        finetune_epochs=1,
        precision="fp32",
        accelerator="cpu",
        checkpoint_dir=tmp_path / "checkpoints",
    )
    trainer = Trainer(model, config)
    history = trainer.train(_loader(0), _loader(1))

    assert len(history["train_loss"]) == 3 and len(history["val_loss"]) == 3
    assert all(math.isfinite(v) for v in history["train_loss"] + history["val_loss"])
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["lr"] == [1e-3, 1e-3, 1e-4]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=False))
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_trainer_config_defaults_are_the_seeds() -> None:
    config = TrainerConfig()
    assert (config.warmup_epochs, config.finetune_epochs) == (10, 40)
    assert (config.warmup_lr, config.finetune_lr) == (1e-3, 1e-4)
    round_trip = TrainerConfig.from_training_config(config.to_training_config(), seed=config.seed)
    assert round_trip == config
    assert (
        TrainerConfig.from_training_config(TrainingConfig()).to_training_config()
        == TrainingConfig()
    )


def test_bad_trainer_config_is_one_line() -> None:
    with pytest.raises(ConfigError, match="TrainerConfig.warmup_lr"):
        TrainerConfig(warmup_lr=-1.0).to_training_config()
