"""Masked losses over the valid cells of a target field.

Sits at the start of ``training/``: ``module.py`` calls ``masked_loss`` on every batch. The
target holds NaN (or 0 after ``data/``) where no valid pixel was observed; those cells carry no
information and must not count. NaN is replaced BEFORE any arithmetic (``NaN * 0`` is NaN, so
multiplying by the mask is not enough), and the sum is divided by the number (or total weight)
of valid cells, so a batch with few valid cells weighs each of them as much as a clear-sky batch.
A batch with no valid cell contributes exactly zero (never 0/0 = NaN) and still keeps the graph.

A NaN in the *prediction* is deliberately not hidden: it must surface as a NaN loss so that
training stops with ``TrainingDivergedError``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

LossKind = Literal["huber", "weighted_mae"]


def _valid_and_error(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(valid (bool), error = pred - target with 0 on invalid cells); any equal shapes."""
    if pred.shape != target.shape or mask.shape != target.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask "
            f"{tuple(mask.shape)} must have the same shape"
        )
    valid = mask.to(torch.bool) & torch.isfinite(target)
    safe_target = torch.where(valid, target, torch.zeros_like(target))  # NaN gone first
    error = torch.where(valid, pred - safe_target, torch.zeros_like(pred))
    return valid, error


def _weights(valid: Tensor, weight: Tensor | None, like: Tensor) -> Tensor:
    """Per-cell weights, 0 on invalid cells (weight None -> 1 on valid cells)."""
    ones = torch.ones_like(like)
    w = ones if weight is None else torch.where(torch.isfinite(weight), weight, 0.0).to(like.dtype)
    return torch.where(valid, w.expand_as(like), torch.zeros_like(like))


def huber_elementwise(error: Tensor, delta: float) -> Tensor:
    """0.5 e^2 where |e| <= delta, delta (|e| - delta / 2) elsewhere (the seed's formula)."""
    absolute = error.abs()
    return torch.where(absolute <= delta, 0.5 * error**2, delta * (absolute - 0.5 * delta))


def masked_loss_terms(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    kind: LossKind = "huber",
    delta: float = 1.0,
    weight: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(weighted sum of the per-cell loss over valid cells, sum of their weights).

    Shapes: pred, target, mask (B, H, W) (any equal shapes); weight broadcastable to them or
    None (1 per valid cell, so the second term is the number of valid cells). Units: those of
    pred/target (normalized NO2 in training). Summing both terms over batches and dividing once
    gives the exact per-cell mean of an epoch.
    """
    valid, error = _valid_and_error(pred, target, mask)
    w = _weights(valid, weight, pred)
    if kind == "huber":
        per_cell = huber_elementwise(error, delta)
    elif kind == "weighted_mae":
        per_cell = error.abs()
    else:
        raise ValueError(f"unknown loss {kind!r}; expected 'huber' or 'weighted_mae'")
    return (per_cell * w).sum(), w.sum()


def _mean(total: Tensor, count: Tensor) -> Tensor:
    # count == 0 -> every weight is 0, so total is exactly 0 and total / 1 = 0 (graph intact,
    # no host sync).
    return total / torch.where(count > 0, count, torch.ones_like(count))


def masked_huber(
    pred: Tensor, target: Tensor, mask: Tensor, delta: float = 1.0, weight: Tensor | None = None
) -> Tensor:
    """Mean Huber loss over valid cells (0 when none). Shapes as ``masked_loss_terms``."""
    return _mean(*masked_loss_terms(pred, target, mask, "huber", delta, weight))


def weighted_mae(
    pred: Tensor, target: Tensor, mask: Tensor, weight: Tensor | None = None
) -> Tensor:
    """Σ w|pred - target| / Σ w over valid cells (0 when none); w defaults to 1.

    In training w is the cell area relative to the tile mean, matching area-weighted metrics.
    """
    return _mean(*masked_loss_terms(pred, target, mask, "weighted_mae", 1.0, weight))


def masked_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    kind: LossKind = "huber",
    delta: float = 1.0,
    weight: Tensor | None = None,
) -> Tensor:
    """The configured loss (``training.loss``): ``masked_huber`` or ``weighted_mae``."""
    return _mean(*masked_loss_terms(pred, target, mask, kind, delta, weight))
