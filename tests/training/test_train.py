"""train_model on the cube built from the simulated world: checkpoints, normalizers fit on the
training days, determinism, resume equality, divergence stop, errors, and the train CLI."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from no2fusion.cli import main
from no2fusion.config import Config, load_config
from no2fusion.data.arrays import CubeArrays, fit_normalizers
from no2fusion.data.dataset import SATELLITE_CHANNELS, NO2TileDataset
from no2fusion.data.splits import blocked_split
from no2fusion.errors import ConfigError, InputFileError, TrainingDivergedError
from no2fusion.io.cube import open_cube
from no2fusion.training.checkpoint import (
    check_satellite_channels,
    load_checkpoint,
    model_state_dict,
    read_checkpoint,
)
from no2fusion.training.train import TrainResult, train_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(
        REPO / "config" / "test.yaml",
        {"training.limit_train_batches": 3, "training.limit_val_batches": 2},
    )


@pytest.fixture(scope="module")
def reference(
    config: Config, train_cube: Path, tmp_path_factory: pytest.TempPathFactory
) -> TrainResult:
    """One uninterrupted run (1 warmup + 1 finetune epoch), on one thread like every test here
    (the thread count changes float summation order, hence the last bits of the losses)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_model(config, train_cube, tmp_path_factory.mktemp("ref"), progress_bar=False)
    finally:
        torch.set_num_threads(threads)


def test_run_directory_and_checkpoint_contents(reference: TrainResult, train_cube: Path) -> None:
    out = reference.output_dir
    assert (out / "config.yaml").is_file() and (out / "logs" / "metrics.csv").is_file()
    assert (out / "training_history.json").is_file()
    assert reference.epochs == 2 and len(reference.history["val_loss"]) == 2
    assert all(math.isfinite(v) for v in reference.history["train_loss"])
    header = (out / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "lr_encoders" in header and "val_rmse_umol_m2" in header

    for path in (reference.best_checkpoint, reference.last_checkpoint):
        raw = torch.load(path, map_location="cpu", weights_only=True)  # plain types only
        assert raw["optimizer_states"] and raw["state_dict"]
        meta = raw["no2fusion"]
        assert set(meta["versions"]) == {"no2fusion", "torch", "lightning"}
        assert meta["config"]["model"]["kind"] == "cross_modal"
    model, config, normalizers, meta = load_checkpoint(reference.last_checkpoint)
    assert meta["epoch"] == 1 and config.data.tile_size == 16

    # the stored normalizer is the one fit on the stored training days, valid cells only
    arrays = CubeArrays(open_cube(train_cube))
    split = meta["split"]
    assert np.array_equal(split.train, blocked_split(arrays.times, config.data.split).train)
    refit = fit_normalizers(arrays, split.train, config.pipeline.clip_range)
    assert normalizers.to_dict() == refit.to_dict()
    train_no2 = arrays.no2[arrays.indices_of(split.train)]
    assert float(normalizers.no2.median_) == pytest.approx(np.nanmedian(train_no2))  # type: ignore[arg-type]

    # physical units: RMSE in umol m-2 = normalized RMSE * IQR
    iqr = float(normalizers.no2.iqr_)  # type: ignore[arg-type]
    for rmse, rmse_umol in zip(
        reference.history["val_rmse"], reference.history["val_rmse_umol_m2"], strict=False
    ):
        assert rmse_umol == pytest.approx(rmse * iqr)

    # the loaded model is the trained one
    state = model_state_dict(read_checkpoint(reference.last_checkpoint))
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name])


def test_a_model_is_never_fed_other_satellite_channels(
    reference: TrainResult, train_cube: Path
) -> None:
    """The checkpoint names the channels it was trained on; inputs built with other channels
    (a later code version, another data config) are refused with one line naming both."""
    _, config, normalizers, meta = load_checkpoint(reference.best_checkpoint)
    assert meta["satellite_channel_names"] == list(SATELLITE_CHANNELS)
    assert meta["path"] == str(reference.best_checkpoint)
    arrays = CubeArrays(open_cube(train_cube))
    days = meta["split"].test
    same = NO2TileDataset(arrays, normalizers, days, config.data, training=False)
    check_satellite_channels(meta, same)  # what training built
    # a checkpoint of the seed's inputs (observation and validity only)
    seed_form = {
        **meta,
        "satellite_channel_names": ["no2", "no2_valid"],
        "satellite_in_channels": 2,
    }
    with pytest.raises(InputFileError, match="no2, no2_valid; this code and config build no2, "):
        check_satellite_channels(seed_form, same)
    older = {k: v for k, v in seed_form.items() if k != "satellite_channel_names"}
    with pytest.raises(InputFileError, match="trained on 2 satellite channels; .* build 5"):
        check_satellite_channels(older, same)


def _older_checkpoint(path: Path, out: Path, missing: tuple[str, ...]) -> Path:
    """The checkpoint at ``path`` as a version before the ``missing`` model options wrote it:
    those keys absent from the stored config and, before ``residual_gain``, one output map."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    for key in missing:
        del raw["no2fusion"]["config"]["model"][key]
    if "residual_gain" in missing:
        state = raw["state_dict"]
        for key in ("model.head.decoder.4.weight", "model.head.decoder.4.bias"):
            state[key] = state[key][:1]  # the correction map alone
    torch.save(raw, out)
    return out


def test_checkpoints_from_before_the_residual_options_predict_as_they_were_trained(
    reference: TrainResult, tmp_path: Path
) -> None:
    """A stored config without ``model.residual`` was trained as a network predicting the value,
    one without ``model.residual_gain`` as base + correction: they load so, not as today's
    defaults (which would add the climatology channel, or a gain map the weights never learnt)."""
    model, config, _, _ = load_checkpoint(reference.last_checkpoint)
    assert config.model.residual == "climatology" and config.model.residual_gain  # defaults
    assert model.residual_channel == SATELLITE_CHANNELS.index("climatology")

    before_residual, _, _, _ = load_checkpoint(
        _older_checkpoint(
            reference.last_checkpoint, tmp_path / "a.ckpt", ("residual", "residual_gain")
        )
    )
    before_gain, gain_config, _, _ = load_checkpoint(
        _older_checkpoint(reference.last_checkpoint, tmp_path / "b.ckpt", ("residual_gain",))
    )
    assert before_residual.residual_channel is None and not before_residual.residual_gain
    assert gain_config.model.residual == "climatology" and not before_gain.residual_gain
    heads: list[torch.Tensor] = []
    model.head.register_forward_hook(lambda _module, _inputs, out: heads.append(out))
    sat = torch.randn(1, len(SATELLITE_CHANNELS), 16, 16)
    aux = torch.randn(1, 24, 13)  # (batch, hours, meteorological features)
    with torch.no_grad():
        model(sat, aux)
        correction = heads[0][:, 0]  # the same weights' correction map
        torch.testing.assert_close(before_residual(sat, aux)[0], correction)
        base = sat[:, model.residual_channel]
        torch.testing.assert_close(before_gain(sat, aux)[0], correction + base)


def test_same_seed_gives_identical_val_losses(
    reference: TrainResult, config: Config, train_cube: Path, tmp_path: Path
) -> None:
    again = train_model(config, train_cube, tmp_path / "again", progress_bar=False)
    assert again.history["val_loss"] == reference.history["val_loss"]
    assert again.history["train_loss"] == reference.history["train_loss"]


class _Crash(Exception):
    pass


class _CrashAfterEpoch(Callback):
    """Simulates a killed job: raises as the epoch after ``epoch`` (and its checkpoint) starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch + 1:
            raise _Crash(f"killed after epoch {self.epoch}")


def test_resume_gives_the_uninterrupted_weights(
    reference: TrainResult, config: Config, train_cube: Path, tmp_path: Path
) -> None:
    out = tmp_path / "interrupted"
    with pytest.raises(_Crash):
        train_model(config, train_cube, out, callbacks=[_CrashAfterEpoch(0)], progress_bar=False)
    assert read_checkpoint(out / "checkpoints" / "last.ckpt")["epoch"] == 0
    resumed = train_model(config, train_cube, out, resume=True, progress_bar=False)
    assert resumed.epochs == 2
    assert (out / "logs" / "metrics.csv").is_file()  # the first part's log is kept
    assert (out / "logs_resume1" / "metrics.csv").is_file()
    assert resumed.history["val_loss"] == reference.history["val_loss"]
    final = model_state_dict(read_checkpoint(resumed.last_checkpoint))
    expected = model_state_dict(read_checkpoint(reference.last_checkpoint))
    assert final.keys() == expected.keys()
    for name in expected:
        assert torch.equal(final[name], expected[name]), name


class _WorseAtEpoch(Callback):
    """Reports a val_loss worse than every earlier one at ``epoch``, before the checkpoint
    callbacks (Lightning runs them after every other callback) read it."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.callback_metrics["val_loss"] = torch.tensor(1e9)


def test_last_checkpoint_follows_an_epoch_that_did_not_improve(
    config: Config, train_cube: Path, tmp_path: Path
) -> None:
    """best.ckpt stays at the best epoch; last.ckpt (resume, history) is the final epoch."""
    result = train_model(
        config, train_cube, tmp_path / "worse", callbacks=[_WorseAtEpoch(1)], progress_bar=False
    )
    assert read_checkpoint(result.best_checkpoint)["epoch"] == 0
    assert read_checkpoint(result.last_checkpoint)["epoch"] == 1
    assert result.epochs == 2 and not result.stopped_early
    assert len(result.history["val_loss"]) == 2
    assert sorted(p.name for p in result.last_checkpoint.parent.iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]


def test_resume_from_a_checkpoint_with_contiguous_optimizer_state(
    reference: TrainResult, config: Config, train_cube: Path, tmp_path: Path
) -> None:
    """A checkpoint written before the conv weights were stored NHWC holds NCHW (contiguous)
    AdamW moments; resuming from it still gives the uninterrupted weights (the fused kernel
    pairs elements by memory position, so a layout mismatch would silently mix them)."""
    out = tmp_path / "old_layout"
    with pytest.raises(_Crash):
        train_model(config, train_cube, out, callbacks=[_CrashAfterEpoch(0)], progress_bar=False)
    last = out / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    changed = 0
    for optimizer_state in checkpoint["optimizer_states"]:
        for state in optimizer_state["state"].values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and not value.is_contiguous():
                    state[key] = value.contiguous()
                    changed += 1
    assert changed > 0  # the run's conv moments were NHWC, so the rewrite changed some
    torch.save(checkpoint, last)
    resumed = train_model(config, train_cube, out, resume=True, progress_bar=False)
    final = model_state_dict(read_checkpoint(resumed.last_checkpoint))
    expected = model_state_dict(read_checkpoint(reference.last_checkpoint))
    for name in expected:
        assert torch.equal(final[name], expected[name]), name


class _GradientNorms(Callback):
    """The total gradient norm before clipping (Lightning's hook) and the one the optimizer's
    step used (read after it: Lightning steps with a closure, so the backward runs inside)."""

    def __init__(self) -> None:
        self.raw: list[float] = []
        self.stepped: list[float] = []

    @staticmethod
    def _norm(optimizer: torch.optim.Optimizer) -> float:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))

    def on_train_start(self, trainer: pl.Trainer, module: Any) -> None:
        for optimizer in trainer.optimizers:
            optimizer.register_step_post_hook(
                lambda opt, args, kwargs: self.stepped.append(self._norm(opt))
            )

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, module: Any, optimizer: torch.optim.Optimizer
    ) -> None:
        self.raw.append(self._norm(optimizer))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gradients_are_clipped_before_the_fused_step(
    precision: str, train_cube: Path, tmp_path: Path
) -> None:
    """gradient_clip bounds the total gradient norm the (fused) AdamW step sees, under fp32 and
    under bf16 autocast alike (Lightning's own clipping refuses a fused optimizer there)."""
    clip = 1e-3
    config = load_config(
        REPO / "config" / "test.yaml",
        {
            "training.precision": precision,
            "training.gradient_clip": clip,
            "training.limit_train_batches": 2,
            "training.limit_val_batches": 1,
        },
    )
    norms = _GradientNorms()
    train_model(config, train_cube, tmp_path, callbacks=[norms], progress_bar=False)
    assert len(norms.stepped) == len(norms.raw) >= 2
    assert max(norms.raw) > 10 * clip  # the bound is reached by clipping, not by chance
    assert max(norms.stepped) <= clip * (1 + 1e-3)


class _PoisonWeights(Callback):
    def on_train_batch_start(
        self, trainer: pl.Trainer, module: Any, batch: Any, index: int
    ) -> None:
        if trainer.current_epoch == 1 and index == 0:
            with torch.no_grad():
                next(module.model.parameters()).fill_(float("nan"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    config: Config, train_cube: Path, tmp_path: Path
) -> None:
    with pytest.raises(TrainingDivergedError, match=r"at epoch 1, batch 0") as error:
        train_model(config, train_cube, tmp_path, callbacks=[_PoisonWeights()], progress_bar=False)
    assert "\n" not in str(error.value)
    model, _, _, meta = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert meta["epoch"] == 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_resume_errors(
    reference: TrainResult, config: Config, train_cube: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="no checkpoint to continue from"):
        train_model(config, train_cube, tmp_path / "empty", resume=True, progress_bar=False)
    copy = tmp_path / "copy"
    shutil.copytree(reference.output_dir, copy)
    other = load_config(REPO / "config" / "test.yaml", {"model.embed_dim": 64})
    with pytest.raises(ConfigError, match="section 'model' differs"):
        train_model(other, train_cube, copy, resume=True, progress_bar=False)


def test_train_cli_end_to_end(
    train_cube: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    common = [
        "--config",
        str(REPO / "config" / "test.yaml"),
        "--no-progress",
        "--set",
        "training.limit_train_batches=2",
        "--set",
        "training.limit_val_batches=1",
    ]
    assert main(["train", *common, "--cube", str(train_cube), "--output", str(out)]) == 0
    assert "trained cross_modal for 2 epochs" in capsys.readouterr().out
    assert load_config(out / "config.yaml").training.limit_train_batches == 2
    assert (out / "checkpoints" / "best.ckpt").is_file()

    assert (
        main(["train", *common, "--cube", str(tmp_path / "nope.zarr"), "--output", str(out)]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert "nope.zarr: no such cube" in err and "\n" not in err
    bad = ["--set", "training.warmup_lr=-1"]
    assert main(["train", *common, *bad, "--cube", str(train_cube), "--output", str(out)]) == 2
    assert "training.warmup_lr" in capsys.readouterr().err


def test_loader_workers_and_lazy_reads_change_nothing(
    reference: TrainResult, train_cube: Path, tmp_path: Path
) -> None:
    # 2 worker processes reading the features lazily from the store (no cache) train exactly
    # like the cached single-process loader: samples depend only on (seed, epoch, index)
    config = load_config(
        REPO / "config" / "test.yaml",
        {
            "training.limit_train_batches": 3,
            "training.limit_val_batches": 2,
            "data.num_workers": 2,
            "data.cache_in_memory": False,
        },
    )
    result = train_model(config, train_cube, tmp_path, progress_bar=False)
    assert result.history["val_loss"] == reference.history["val_loss"]
