"""The Lightning DataModule: cube -> split -> normalizers -> train/val/test datasets -> loaders.

Sits at the end of ``data/``; ``training/train.py`` hands it to Lightning. ``setup`` opens the
cube (schema-checked by ``io.cube.open_cube``), splits its days in blocks
(``data.splits``), fits the normalizers on the training days only (unless given, e.g. from a
checkpoint on resume) and builds the three ``NO2TileDataset``s. Under DDP every process runs
``setup`` and gets the same split and statistics (everything is deterministic).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from no2fusion.config import DataConfig
from no2fusion.data.arrays import CubeArrays, Normalizers, fit_normalizers
from no2fusion.data.batch import stack_samples
from no2fusion.data.dataset import EpochSampler, NO2TileDataset
from no2fusion.data.splits import Split, blocked_split
from no2fusion.data.tiles import check_tile_fits
from no2fusion.errors import NoDataError


class NO2DataModule(pl.LightningDataModule):
    """Loaders over one cube.

    Args:
        cube_path: the Zarr cube written by ``pipeline.build``.
        config: the ``data`` section (lead, tile size, split, batch size, workers, cache).
        clip_range: normalized-input clip range (``pipeline.clip_range``); targets never clipped.
        seed: seeds random crops, borrowed cloud masks and the shuffle order.
        split, normalizers: reuse these instead of computing them (resume, evaluation).
        arrays: the cube's arrays already opened (``CubeArrays.open``): a run that trains
            several models on one cube shares them, and with them the feature cache.
    """

    def __init__(
        self,
        cube_path: str | Path,
        config: DataConfig,
        clip_range: tuple[float, float] = (-10.0, 10.0),
        seed: int = 0,
        split: Split | None = None,
        normalizers: Normalizers | None = None,
        arrays: CubeArrays | None = None,
    ) -> None:
        super().__init__()
        self.cube_path = Path(cube_path)
        self.config = config
        self.clip_range = clip_range
        self.seed = seed
        self.split = split
        self.normalizers = normalizers
        self._given_arrays = arrays
        self.arrays: CubeArrays | None = None
        self.datasets: dict[str, NO2TileDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.arrays is not None:
            return
        arrays = self._given_arrays or CubeArrays.open(self.cube_path, self.config)
        check_tile_fits(self.config.tile_size, arrays.shape, str(self.cube_path))
        if self.split is None:
            try:
                self.split = blocked_split(arrays.times, self.config.split)
            except NoDataError as error:
                raise NoDataError(str(error), self.cube_path) from None
        if self.normalizers is None:
            self.normalizers = fit_normalizers(arrays, self.split.train, self.clip_range)
        for name in ("train", "val", "test"):
            dataset = NO2TileDataset(
                arrays,
                self.normalizers,
                self.split.days(name),
                self.config,
                training=name == "train",
                seed=self.seed,
                hidden_days=self.split.hidden_from(name),
            )
            if len(dataset) == 0 and name != "test":
                raise NoDataError(
                    f"the {name} split has no sample with a valid target cell "
                    f"({self.split.days(name).size} days, lead {self.config.lead})",
                    self.cube_path,
                )
            self.datasets[name] = dataset
        self.arrays = arrays

    @property
    def satellite_channels(self) -> int:
        """C of the satellite input (call ``setup`` first)."""
        return self.datasets["train"].satellite_channels

    def _loader(self, name: str) -> DataLoader:
        dataset = self.datasets[name]
        workers = self.config.num_workers
        sampler = EpochSampler(len(dataset), self.seed) if name == "train" else None
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=workers,
            collate_fn=stack_samples,
            persistent_workers=False,
            pin_memory=False,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
