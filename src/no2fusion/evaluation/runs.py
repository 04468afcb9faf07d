"""A trained model with everything needed to use it: config, normalizers, split, history.

Sits at the start of ``evaluation/``: ``load_model_run`` wraps ``training.load_checkpoint``,
so evaluation, ``no2fusion predict`` and the report take the model, its resolved config (data
and model settings as in training) and its fitted normalizers from one object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from no2fusion.config import Config
from no2fusion.data.arrays import Normalizers
from no2fusion.data.splits import Split
from no2fusion.training.checkpoint import load_checkpoint
from no2fusion.training.regime import phase_of


@dataclass(frozen=True)
class HistoryRow:
    """One training epoch (losses in normalized units; None where not measured)."""

    epoch: int
    phase: str  # warmup | finetune
    train_loss: float | None
    val_loss: float | None


@dataclass(frozen=True)
class ModelRun:
    """A trained network (eval mode, normalized units in and out) and its run metadata."""

    kind: str
    model: nn.Module
    normalizers: Normalizers
    config: Config
    meta: dict[str, Any]

    @property
    def split(self) -> Split:
        """The train/val/test days the model was trained with."""
        split: Split = self.meta["split"]
        return split

    def history(self) -> tuple[HistoryRow, ...]:
        """Per-epoch losses from the checkpoint's history."""
        history = self.meta.get("history") or {}
        rows = []
        for i, epoch in enumerate(history.get("epoch", [])):
            losses = []
            for key in ("train_loss", "val_loss"):
                values = history.get(key, [])
                value = values[i] if i < len(values) else None
                losses.append(value if value is not None and math.isfinite(value) else None)
            phase = phase_of(int(epoch), self.config.training)
            rows.append(HistoryRow(int(epoch), phase, losses[0], losses[1]))
        return tuple(rows)


def load_model_run(path: str | Path) -> ModelRun:
    """A ``ModelRun`` from a checkpoint written by ``training.train_model``."""
    model, config, normalizers, meta = load_checkpoint(path)
    return ModelRun(config.model.kind, model, normalizers, config, meta)
