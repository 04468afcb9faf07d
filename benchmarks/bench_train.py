"""Training throughput: epoch time, samples/s and the projected full run, per precision.

Usage::

    .venv/bin/python benchmarks/bench_train.py --cube CUBE [--config config/default.yaml]
        [--epochs 2] [--precisions auto fp32] [--set KEY=VALUE ...]

The demo cube comes from ``no2fusion synth --config config/default.yaml --out SRC`` then
``no2fusion build --config config/default.yaml --sources SRC --out CUBE``. Each precision runs
``train_model`` for ``--epochs`` epochs (1 warm-up + the rest fine-tune, no early stopping) in
a fresh output folder, and a callback times the training and validation part of every epoch.
The first epoch includes one-off costs (allocator warm-up, first-touch of the cache), so the
projection uses the mean of the later epochs when there are any. With
``--set training.limit_train_batches=N`` (and ``limit_val_batches``) only part of an epoch runs;
the full epoch is projected from the measured samples/s and the split sizes. Precisions are
compared as a ratio measured in the same process, minutes apart, on the same machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from no2fusion.commands.base import parse_overrides
from no2fusion.config import load_config
from no2fusion.data.datamodule import NO2DataModule
from no2fusion.training.train import lightning_precision_for, train_model


class EpochTimer(Callback):
    """Wall seconds of the training and the validation part of each epoch; samples seen."""

    def __init__(self) -> None:
        self.train_s: list[float] = []
        self.val_s: list[float] = []
        self.samples: list[int] = []
        self.val_samples: list[int] = []
        self._t0 = 0.0
        self._v0 = 0.0

    def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
        self._t0 = time.perf_counter()
        self.samples.append(0)

    def on_train_batch_end(self, trainer: Any, module: Any, out: Any, batch: Any, i: int) -> None:
        self.samples[-1] += int(batch.sat.shape[0])

    def on_validation_epoch_start(self, trainer: Any, module: Any) -> None:
        self._v0 = time.perf_counter()
        self.train_s.append(self._v0 - self._t0)
        self.val_samples.append(0)

    def on_validation_batch_end(
        self, trainer: Any, module: Any, out: Any, batch: Any, i: int, dataloader_idx: int = 0
    ) -> None:
        self.val_samples[-1] += int(batch.sat.shape[0])

    def on_validation_epoch_end(self, trainer: Any, module: Any) -> None:
        self.val_s.append(time.perf_counter() - self._v0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cube", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=Path("config/default.yaml"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32"])
    parser.add_argument("--full-epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    base = load_config(args.config, parse_overrides(args.overrides))
    full_epochs = args.full_epochs or base.training.warmup_epochs + base.training.finetune_epochs
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; cube {args.cube}")
    print(
        f"model {base.model.kind}: embed_dim {base.model.embed_dim}, stride "
        f"{base.model.token_stride}, batch {base.data.batch_size}, tile {base.data.tile_size}"
    )

    start = time.perf_counter()
    probe = NO2DataModule(args.cube, base.data, base.pipeline.clip_range, base.seed)
    probe.setup()
    setup_s = time.perf_counter() - start
    sizes = {name: len(data) for name, data in probe.datasets.items()}
    print(f"data setup (open, cache, split, normalizers): {setup_s:.1f} s; samples {sizes}")
    del probe

    rows = []
    for precision in args.precisions:
        config = load_config(
            args.config,
            {
                **parse_overrides(args.overrides),
                "training.precision": precision,
                "training.warmup_epochs": 1,
                "training.finetune_epochs": args.epochs - 1,
                "training.early_stopping_patience": 1000,
            },
        )
        timer = EpochTimer()
        with tempfile.TemporaryDirectory(prefix="bench_train_") as out:
            t0 = time.perf_counter()
            train_model(config, args.cube, out, callbacks=[timer], progress_bar=False)
            total = time.perf_counter() - t0
        later = slice(1, None) if len(timer.train_s) > 1 else slice(0, None)
        train_s = sum(timer.train_s[later]) / len(timer.train_s[later])
        val_s = sum(timer.val_s[later]) / len(timer.val_s[later])
        samples = timer.samples[0]
        train_sps = samples / train_s
        val_sps = timer.val_samples[0] / val_s
        full_epoch_s = sizes["train"] / train_sps + sizes["val"] / val_sps
        rows.append(
            {
                "precision": f"{precision} -> {lightning_precision_for(config.training)}",
                "first_epoch_s": timer.train_s[0] + timer.val_s[0],
                "train_epoch_s": train_s,
                "val_epoch_s": val_s,
                "samples": samples,
                "samples_per_s": train_sps,
                "val_samples_per_s": val_sps,
                "run_s": total,
                "full_epoch_s": full_epoch_s,
                "projected_s": setup_s + full_epochs * full_epoch_s,
            }
        )

    print()
    print(
        f"| precision | first epoch s | train part s | val part s | train samples/epoch | "
        f"train samples/s | val samples/s | this run s | full epoch ({sizes['train']} + "
        f"{sizes['val']} samples) | projected {full_epochs} epochs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['precision']} | {r['first_epoch_s']:.1f} | {r['train_epoch_s']:.1f} | "
            f"{r['val_epoch_s']:.1f} | {r['samples']} | {r['samples_per_s']:.2f} | "
            f"{r['val_samples_per_s']:.2f} | {r['run_s']:.1f} | {r['full_epoch_s'] / 60:.1f} min "
            f"| {r['projected_s'] / 3600:.2f} h |"
        )
    if len(rows) > 1:
        ratio = rows[0]["samples_per_s"] / rows[-1]["samples_per_s"]
        print(f"\nsamples/s ratio {rows[0]['precision']} / {rows[-1]['precision']}: {ratio:.2f}")


if __name__ == "__main__":
    main()
