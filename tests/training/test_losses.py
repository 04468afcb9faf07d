"""Masked losses against hand computation, with NaN targets and empty masks."""

from __future__ import annotations

import math

import pytest
import torch

from no2fusion.training.losses import masked_huber, masked_loss, masked_loss_terms, weighted_mae

NAN = math.nan


def _case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pred = torch.tensor([[[0.5, 3.0], [1.0, -2.0]]], requires_grad=True)  # (1, 2, 2)
    target = torch.tensor([[[0.0, 0.0], [NAN, 1.0]]])
    mask = torch.tensor([[[True, True], [True, False]]])  # NaN cell marked valid on purpose
    return pred, target, mask


def test_masked_huber_by_hand() -> None:
    pred, target, mask = _case()
    # valid cells: (0,0) e=0.5 -> 0.5*0.25 = 0.125; (0,1) e=3 -> 1*(3-0.5) = 2.5.
    # (1,0) has a NaN target -> not valid despite the mask; (1,1) is masked out.
    loss = masked_huber(pred, target, mask, delta=1.0)
    assert loss.item() == pytest.approx((0.125 + 2.5) / 2)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    # d/dpred: 0.5 / 2 for the quadratic cell, delta * sign / 2 for the linear one, 0 elsewhere
    assert pred.grad.tolist() == [[[0.25, 0.5], [0.0, 0.0]]]


def test_huber_delta_changes_the_branch() -> None:
    pred, target, mask = _case()
    # delta = 4: both valid cells quadratic: (0.125 + 4.5) / 2
    assert masked_huber(pred, target, mask, delta=4.0).item() == pytest.approx((0.125 + 4.5) / 2)


def test_weighted_mae_by_hand() -> None:
    pred, target, mask = _case()
    weight = torch.tensor([[[2.0, 1.0], [5.0, 7.0]]])
    # (2 * 0.5 + 1 * 3) / (2 + 1)
    assert weighted_mae(pred, target, mask, weight).item() == pytest.approx(4.0 / 3.0)
    assert weighted_mae(pred, target, mask).item() == pytest.approx(3.5 / 2)
    assert masked_loss(pred, target, mask, "weighted_mae").item() == pytest.approx(3.5 / 2)


def test_no_valid_cell_gives_zero_not_nan() -> None:
    pred = torch.randn(2, 3, 3, requires_grad=True)
    target = torch.full((2, 3, 3), NAN)
    mask = torch.ones(2, 3, 3, dtype=torch.bool)
    for loss in (masked_huber(pred, target, mask), weighted_mae(pred, target, mask)):
        assert loss.item() == 0.0
        loss.backward()
        assert pred.grad is not None and torch.count_nonzero(pred.grad) == 0


def test_terms_sum_to_the_epoch_mean() -> None:
    torch.manual_seed(0)
    preds, targets = torch.randn(4, 5, 5), torch.randn(4, 5, 5)
    targets[torch.rand(4, 5, 5) < 0.4] = NAN
    masks = torch.isfinite(targets)
    whole = masked_huber(preds, targets, masks)
    total = torch.zeros(())
    count = torch.zeros(())
    for k in range(4):  # batch by batch, as the validation loop accumulates
        t, c = masked_loss_terms(preds[k], targets[k], masks[k])
        total, count = total + t, count + c
    assert (total / count).item() == pytest.approx(whole.item(), rel=1e-6)
    assert count.item() == masks.sum().item()


def test_nan_prediction_is_not_hidden() -> None:
    pred = torch.tensor([[NAN, 1.0]])
    target = torch.tensor([[0.0, 0.0]])
    assert math.isnan(masked_huber(pred, target, torch.ones(1, 2, dtype=torch.bool)).item())


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same shape"):
        masked_huber(torch.zeros(2, 2), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool))
