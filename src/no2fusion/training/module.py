"""The LightningModule: masked loss, optimizer groups, epoch metrics, divergence stop.

Sits in ``training/`` between ``models/`` (the ``nn.Module`` it wraps) and ``train.py`` /
the seed API in ``no2fusion.seed_api`` (which hand it to a Lightning ``Trainer``). Batches
are ``data.batch.Batch`` objects (the seed API converts its tuple batches before they arrive).

Epoch metrics are exact per-cell means: sums and valid-cell counts are accumulated over the
epoch (and summed over DDP ranks), then divided once. Validation RMSE is also reported in
physical units (umol m-2 and molec cm-2) through the NO2 normalizer's IQR: the normalization
is affine, so an error of ``e`` normalized units is ``e * IQR`` umol m-2.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from no2fusion.config import TrainingConfig
from no2fusion.data.batch import Batch
from no2fusion.errors import TrainingDivergedError
from no2fusion.models.precision import to_channels_last
from no2fusion.training.losses import masked_loss_terms
from no2fusion.training.regime import learning_rates, parameter_groups
from no2fusion.vocab import UMOL_M2_TO_MOLEC_CM2

HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "val_rmse", "val_rmse_umol_m2", "lr")


class NO2LightningModule(pl.LightningModule):
    """Trains ``model`` (``model(*batch.model_inputs()) -> (pred, attention)`` or ``pred``).

    Args:
        model: the network; predictions in normalized NO2 units, (B, H, W).
        config: the training section (loss, LRs, weight decay).
        no2_iqr: the NO2 normalizer's IQR in umol m-2 (None: no physical-unit metric).
        meta: plain-typed run metadata stored in every checkpoint under ``"no2fusion"``.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainingConfig,
        no2_iqr: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # NHWC conv weights and inputs: oneDNN's convolutions skip a layout reorder around every
        # call (8-9 % of a CPU training step of the demo model, fp32 and bf16, BENCHMARKS.md).
        # Done before the optimizer exists, so its state follows the parameters' layout.
        self.model = to_channels_last(model)
        self.config = config
        self.no2_iqr = no2_iqr
        self.meta: dict[str, Any] = dict(meta or {})
        self.history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
        self._train_sums = torch.zeros(2, dtype=torch.float64)  # (loss sum, batches)
        self._val_sums = torch.zeros(4, dtype=torch.float64)  # (loss sum, weight, sse, cells)
        self._recorded_epoch = -1

    # ------------------------------------------------------------------ forward / loss
    def forward(self, *inputs: Tensor) -> Tensor:
        """Prediction (B, H, W) in normalized units from ``Batch.model_inputs()``."""
        out = self.model(*inputs)
        return out[0] if isinstance(out, (tuple, list)) else out

    def _loss_terms(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """(weighted loss sum, weight sum, prediction (B, H, W)) of one batch."""
        if batch.sat.ndim == 4:  # (B, C, H, W) images: NHWC like the conv weights
            batch = batch.with_inputs(sat=batch.sat.contiguous(memory_format=torch.channels_last))
        pred = self(*batch.model_inputs()).float()  # (B, H, W); loss in fp32 under bf16 autocast
        use_weight = batch.weight if self.config.loss == "weighted_mae" else None
        total, count = masked_loss_terms(
            pred,
            batch.target.float(),
            batch.target_mask,
            self.config.loss,
            self.config.huber_delta,
            use_weight,
        )
        return total, count, pred

    # ------------------------------------------------------------------ training
    def on_train_start(self) -> None:
        # A resumed run's optimizer state may have another layout than the NHWC parameters (a
        # checkpoint written before they were NHWC); the fused AdamW kernel pairs elements by
        # memory position, so state and parameter must share the layout.
        for optimizer in self.trainer.optimizers:
            for param, state in optimizer.state.items():
                for key, value in state.items():
                    if (
                        isinstance(value, Tensor)
                        and value.shape == param.shape
                        and value.stride() != param.stride()
                    ):
                        state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)

    def on_train_epoch_start(self) -> None:
        self._train_sums = torch.zeros(2, dtype=torch.float64)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        total, count, _ = self._loss_terms(batch)
        loss = total / torch.where(count > 0, count, torch.ones_like(count))
        finite = bool(torch.isfinite(loss))
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            raise TrainingDivergedError(
                f"training diverged: non-finite loss ({loss.item()}) at epoch "
                f"{self.current_epoch}, batch {batch_idx}; the last good checkpoint is kept "
                "(try a lower learning rate or stronger gradient clipping)"
            )
        self.log(
            "train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch.size
        )
        self._train_sums += torch.tensor([float(loss.detach()), 1.0], dtype=torch.float64)
        return loss

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(4, dtype=torch.float64)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        total, count, pred = self._loss_terms(batch)
        target = batch.target.float()
        valid = batch.target_mask.to(torch.bool) & torch.isfinite(target)
        error = torch.where(valid, pred - torch.where(valid, target, 0.0), 0.0)
        sse = (error**2).sum()
        self._val_sums += torch.stack([total, count, sse, valid.sum()]).detach().double().cpu()

    def _reduced(self, sums: Tensor) -> Tensor:
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums.to(self.device), reduce_op="sum").cpu()
        return sums

    def on_validation_epoch_end(self) -> None:
        loss_sum, weight, sse, cells = self._reduced(self._val_sums).tolist()
        val_loss = loss_sum / weight if weight > 0 else math.nan
        rmse = math.sqrt(sse / cells) if cells > 0 else math.nan
        metrics = {"val_loss": val_loss, "val_rmse": rmse}
        if self.no2_iqr is not None:
            metrics["val_rmse_umol_m2"] = rmse * self.no2_iqr
            metrics["val_rmse_molec_cm2"] = rmse * self.no2_iqr * UMOL_M2_TO_MOLEC_CM2
        for name, value in metrics.items():
            self.log(
                name, value, prog_bar=name in ("val_loss", "val_rmse_umol_m2"), sync_dist=False
            )
        if not self.trainer.sanity_checking:
            self._record_epoch(metrics)

    # ------------------------------------------------------------------ history
    def _record_epoch(self, metrics: dict[str, float]) -> None:
        """Append this epoch to ``history`` (called once per epoch, at validation end)."""
        loss_sum, batches = self._reduced(self._train_sums).tolist()
        rates = learning_rates(self.current_epoch, self.config)
        self.history["epoch"].append(float(self.current_epoch))
        self.history["train_loss"].append(loss_sum / batches if batches > 0 else math.nan)
        self.history["val_loss"].append(metrics.get("val_loss", math.nan))
        self.history["val_rmse"].append(metrics.get("val_rmse", math.nan))
        self.history["val_rmse_umol_m2"].append(metrics.get("val_rmse_umol_m2", math.nan))
        self.history["lr"].append(rates["fusion_head"])
        self.log("train_loss_epoch", self.history["train_loss"][-1], sync_dist=False)
        self._recorded_epoch = self.current_epoch

    def on_train_epoch_end(self) -> None:
        if self._recorded_epoch != self.current_epoch:
            self._record_epoch({})  # no validation ran this epoch

    # ------------------------------------------------------------------ optimizer
    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = parameter_groups(self.model)
        rates = learning_rates(self.current_epoch, self.config)
        for group in groups:
            group["lr"] = rates[group["name"]]
        # fused: one kernel over all parameters instead of a Python loop over ~100 tensors
        # (4 % of a CPU training step of the demo model); the same AdamW update
        return torch.optim.AdamW(
            groups, lr=rates["fusion_head"], weight_decay=self.config.weight_decay, fused=True
        )

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the optimizer's gradients by total norm (or by value) before its step.

        Lightning's own clipping refuses a fused optimizer under ``bf16-mixed`` because a
        float16 GradScaler would leave the gradients scaled; bf16 autocast has no scaler and
        the gradients are already in true units, so this is the same ``clip_grad_norm_``
        Lightning calls under ``32-true``, for the only two precisions training supports.
        """
        if not gradient_clip_val:
            return
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(parameters, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(parameters, gradient_clip_val)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["no2fusion"] = {
            **self.meta,
            "history": {key: list(values) for key, values in self.history.items()},
            "torch_rng_state": torch.get_rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get("no2fusion", {})
        history = stored.get("history")
        if history:
            self.history = {key: [float(v) for v in history.get(key, [])] for key in HISTORY_KEYS}
        rng = stored.get("torch_rng_state")
        if isinstance(rng, Tensor):
            torch.set_rng_state(rng)
