"""Fit entry point: ``train_model(config, cube_path, output_dir, resume=False)``.

Sits at the end of ``training/``; the ``no2fusion train`` command and ``main.py`` call it, and
the seed API's ``Trainer`` (``no2fusion.seed_api``) shares ``lightning_trainer``. It wires the
DataModule (cube -> samples), the model (``models.build_model``), the LightningModule, the
warm-start callbacks, atomic best/last checkpoints and a CSV log into one Lightning ``Trainer``
whose ``devices``, ``num_nodes``, ``strategy`` and ``precision`` come from the config, so the
same call runs on a laptop CPU, several GPUs, or a Slurm allocation (Lightning reads the Slurm
environment).

Output directory layout::

    config.yaml                    resolved config (every key)
    checkpoints/best.ckpt          lowest val_loss
    checkpoints/last.ckpt          end of the latest epoch (what --resume continues)
    logs/metrics.csv               per-step train loss, per-epoch val metrics and LRs
    logs_resume<k>/metrics.csv     the same for the k-th --resume of the run
    training_history.json          per-epoch train/val loss, val RMSE (umol m-2), LR
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from no2fusion.config import Config, TrainingConfig, dump_config
from no2fusion.data.arrays import CubeArrays, Normalizers
from no2fusion.data.datamodule import NO2DataModule
from no2fusion.data.splits import Split
from no2fusion.errors import ConfigError
from no2fusion.files import atomic_path
from no2fusion.models import build_model
from no2fusion.models.precision import lightning_precision, resolve_precision
from no2fusion.training.checkpoint import (
    BEST_NAME,
    LAST_NAME,
    AtomicCheckpointIO,
    read_meta,
    versions,
)
from no2fusion.training.module import NO2LightningModule
from no2fusion.training.regime import FinetuneEarlyStopping, WarmStartSchedule

CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "training_history.json"
# Config sections that must match the checkpoint for --resume to continue the same run.
_RESUME_MUST_MATCH = ("seed", "data", "model", "pipeline")


@dataclass(frozen=True)
class TrainResult:
    """What a finished ``train_model`` run produced."""

    output_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    history: dict[str, list[float]]
    best_val_loss: float
    epochs: int  # epochs completed in total (including those before a resume)
    stopped_early: bool


def device_type(config: TrainingConfig) -> str:
    """``"cuda"`` when the config asks for a GPU (or ``auto`` finds one), else ``"cpu"``."""
    if config.accelerator == "gpu" or (config.accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def lightning_precision_for(config: TrainingConfig) -> str:
    """Lightning's precision string for the configured device: "bf16-mixed" or "32-true"."""
    return lightning_precision(resolve_precision(config.precision, device_type(config)))


def max_epochs_of(config: TrainingConfig) -> int:
    """warmup_epochs + finetune_epochs (at least 1)."""
    total = config.warmup_epochs + config.finetune_epochs
    if total < 1:
        raise ConfigError("training.warmup_epochs + training.finetune_epochs must be at least 1")
    return total


def lightning_trainer(
    config: TrainingConfig,
    checkpoint_dir: Path | None = None,
    log_dir: Path | None = None,
    callbacks: Sequence[Callback] = (),
    progress_bar: bool = True,
    strategy: Any | None = None,
    log_version: str = "logs",
) -> pl.Trainer:
    """A Lightning ``Trainer`` for the warm-start regime.

    ``checkpoint_dir``: write ``best.ckpt``/``last.ckpt`` there (atomically); None: no
    checkpoints. ``log_dir``: CSV log under ``log_dir/<log_version>``; None: no logger. ``strategy``
    overrides ``config.strategy`` (e.g. a ``DDPStrategy`` object).
    """
    device = device_type(config)
    # Deterministic algorithms also fill every new tensor with NaN by default (a debugging aid
    # against reads of uninitialized memory, not needed for reproducibility): that fill cost
    # more than half of a CPU training step of the demo model.
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    all_callbacks: list[Callback] = [WarmStartSchedule(config), FinetuneEarlyStopping(config)]
    if checkpoint_dir is not None:
        # Two callbacks, not one with save_last=True: Lightning 2.6 writes the "last"
        # checkpoint only in an epoch that also wrote a top-k one, so after an epoch that did
        # not improve val_loss, last.ckpt (what a resume continues from and where the training
        # history is read) would still be the epoch before. With monitor=None and one kept
        # file, the second callback rewrites last.ckpt after every epoch.
        all_callbacks.append(
            ModelCheckpoint(
                dirpath=checkpoint_dir,
                filename=BEST_NAME,
                monitor="val_loss",
                mode="min",
                save_top_k=1,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
        all_callbacks.append(
            ModelCheckpoint(
                dirpath=checkpoint_dir,
                filename=LAST_NAME,
                monitor=None,
                save_top_k=1,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    if progress_bar:
        all_callbacks.append(TQDMProgressBar(refresh_rate=1))
    all_callbacks.extend(callbacks)
    logger: Any = CSVLogger(log_dir, name="", version=log_version) if log_dir is not None else False
    return pl.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=strategy if strategy is not None else config.strategy,
        precision=lightning_precision_for(config),  # type: ignore[arg-type]
        max_epochs=max_epochs_of(config),
        gradient_clip_val=config.gradient_clip or None,
        limit_train_batches=config.limit_train_batches,
        limit_val_batches=config.limit_val_batches,
        deterministic=(True if device == "cpu" else "warn") if config.deterministic else False,
        # BatchNorm statistics over the global batch under multi-GPU DDP (ignored on one device;
        # torch's SyncBatchNorm is GPU-only), so N GPUs with batch B/N match one with batch B.
        sync_batchnorm=device == "cuda",
        num_sanity_val_steps=0,
        callbacks=all_callbacks,
        logger=logger,
        enable_checkpointing=checkpoint_dir is not None,
        enable_progress_bar=progress_bar,
        enable_model_summary=progress_bar,
        log_every_n_steps=10,
        plugins=[AtomicCheckpointIO()],
    )


def _check_resumable(config: Config, stored: dict[str, Any], last: Path) -> None:
    stored_config = stored.get("config", {})
    current = config.model_dump(mode="json")
    for key in _RESUME_MUST_MATCH:
        if stored_config.get(key) != current.get(key):
            raise ConfigError(
                f"cannot resume: config section '{key}' differs from the checkpoint's; "
                "use the run's config.yaml or a new output directory",
                last,
            )


def train_model(
    config: Config,
    cube_path: str | Path,
    output_dir: str | Path,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    progress_bar: bool = True,
    strategy: Any | None = None,
    arrays: CubeArrays | None = None,
) -> TrainResult:
    """Train ``config.model`` on the cube at ``cube_path``; write into ``output_dir``.

    With ``resume`` the run continues from ``output_dir/checkpoints/last.ckpt`` (same split,
    normalizers, optimizer state, epoch and RNG state), giving the weights an uninterrupted
    run would give. ``callbacks`` are extra Lightning callbacks; ``strategy`` overrides
    ``config.training.strategy`` (an object such as ``DDPStrategy(process_group_backend="gloo")``).
    ``arrays``: the cube's arrays when already opened (``CubeArrays.open`` of ``cube_path``): the
    trainings of one run share them and their feature cache.

    Raises ``CubeSchemaError`` (bad cube), ``NoDataError`` (too few days for the split, no
    valid target), ``ConfigError`` (tile larger than the domain, nothing to resume, resume with
    a different config) and ``TrainingDivergedError`` (NaN/inf loss; the previous checkpoints
    stay).
    """
    output_dir = Path(output_dir)
    checkpoint_dir = output_dir / CHECKPOINT_DIR
    last = checkpoint_dir / f"{LAST_NAME}.ckpt"
    best = checkpoint_dir / f"{BEST_NAME}.ckpt"
    split: Split | None = None
    normalizers: Normalizers | None = None
    if resume:
        if not last.is_file():
            raise ConfigError("cannot resume: no checkpoint to continue from", last)
        stored = read_meta(last)
        _check_resumable(config, stored, last)
        split = Split.from_dict(stored["split"])
        normalizers = Normalizers.from_dict(stored["normalizers"])
    max_epochs_of(config.training)

    pl.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = NO2DataModule(
        cube_path, config.data, config.pipeline.clip_range, config.seed, split, normalizers, arrays
    )
    datamodule.setup("fit")
    assert datamodule.split is not None and datamodule.normalizers is not None
    channels = datamodule.satellite_channels
    channel_names = datamodule.datasets["train"].satellite_channel_names
    model = build_model(config.model, channels, channel_names=channel_names)
    if config.training.compile:
        model.compile()  # in place: parameter names (and checkpoints) stay those of the model
    meta = {
        "config": config.model_dump(mode="json"),
        "normalizers": datamodule.normalizers.to_dict(),
        "split": datamodule.split.to_dict(),
        "satellite_in_channels": channels,
        "satellite_channel_names": list(channel_names),
        "cube_path": str(Path(cube_path).resolve()),
        "versions": versions(),
    }
    module = NO2LightningModule(
        model,
        config.training,
        float(np.asarray(datamodule.normalizers.no2.iqr_)),  # NO2 IQR, umol m-2
        meta,
    )

    output_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, output_dir / "config.yaml")
    # a fresh run replaces logs/; each resume logs into its own folder (Lightning's CSV
    # logger deletes an existing metrics.csv)
    log_version = "logs"
    if resume:
        log_version = f"logs_resume{len(list(output_dir.glob('logs_resume*'))) + 1}"
    trainer = lightning_trainer(
        config.training, checkpoint_dir, output_dir, callbacks, progress_bar, strategy, log_version
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resume else None)

    history = read_meta(last)["history"] if last.is_file() else module.history
    history = {key: [float(v) for v in values] for key, values in history.items()}
    with atomic_path(output_dir / HISTORY_FILE) as tmp:
        tmp.write_text(json.dumps(history, indent=1))
    val_losses = [v for v in history.get("val_loss", []) if math.isfinite(v)]
    epochs = len(history.get("epoch", []))
    return TrainResult(
        output_dir=output_dir,
        best_checkpoint=best,
        last_checkpoint=last,
        history=history,
        best_val_loss=min(val_losses) if val_losses else math.nan,
        epochs=epochs,
        stopped_early=epochs < max_epochs_of(config.training),
    )
