"""One epoch of DDP on 2 CPU processes (gloo) against the single-process run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from lightning.pytorch.strategies import DDPStrategy

from no2fusion.config import load_config
from no2fusion.training.checkpoint import load_checkpoint
from no2fusion.training.train import train_model

REPO = Path(__file__).resolve().parents[2]
BASE = {"training.warmup_epochs": 1, "training.finetune_epochs": 0, "training.accelerator": "cpu"}


@pytest.mark.timeout(240)
def test_ddp_two_cpu_processes_matches_single(train_cube: Path, tmp_path: Path) -> None:
    single = load_config(REPO / "config" / "test.yaml", {**BASE, "data.batch_size": 4})
    ddp = load_config(
        REPO / "config" / "test.yaml", {**BASE, "data.batch_size": 2, "training.devices": 2}
    )
    one = train_model(single, train_cube, tmp_path / "single", progress_bar=False)
    two = train_model(
        ddp,
        train_cube,
        tmp_path / "ddp",
        progress_bar=False,
        strategy=DDPStrategy(start_method="fork", process_group_backend="gloo"),
    )
    # Both see the same samples per optimizer step (2 ranks x 2 = 4, in the same order) and
    # average the same gradients; what differs is BatchNorm, whose batch statistics are per
    # rank on CPU (torch's SyncBatchNorm is GPU-only; on GPUs train.py turns it on).
    assert len(two.history["val_loss"]) == 1 and math.isfinite(two.history["val_loss"][0])
    assert two.history["val_loss"][0] == pytest.approx(one.history["val_loss"][0], rel=0.2)
    assert two.history["train_loss"][0] == pytest.approx(one.history["train_loss"][0], rel=0.2)
    # rank 0 wrote loadable checkpoints with the same split and normalizers
    _, _, normalizers_one, meta_one = load_checkpoint(one.last_checkpoint)
    _, _, normalizers_two, meta_two = load_checkpoint(two.last_checkpoint)
    assert normalizers_one.to_dict() == normalizers_two.to_dict()
    assert meta_one["split"].to_dict() == meta_two["split"].to_dict()
    assert meta_two["global_step"] == meta_one["global_step"]  # same number of optimizer steps
