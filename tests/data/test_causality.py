"""Nothing from the target day, later days or the test split reaches an input (DESIGN §2).

A sample's inputs are rebuilt after the NO2 of every day after its input day (the target day
included, for forecasts) has been replaced by garbage, and, for training and validation
samples, after every test-split day has been too; they must not change. The fitted inputs (NO2
and feature normalizers, climatology) must not change when only non-training days change.
"""

from __future__ import annotations

import numpy as np
import pytest

from no2fusion.config import DataConfig, SplitConfig
from no2fusion.data.arrays import CubeArrays, fit_normalizers
from no2fusion.data.dataset import NO2TileDataset
from no2fusion.data.splits import blocked_split
from no2fusion.data.tiles import Tile
from no2fusion.io.cube import open_cube

SPLIT = SplitConfig(block_days=7, buffer_days=1, val_fraction=0.2, test_fraction=0.2, seed=0)
INPUTS = ("sat", "aux", "wind", "met_affine", "calendar")


@pytest.mark.parametrize("lead", [1, 0])
@pytest.mark.parametrize("name", ["train", "val", "test"])
def test_no_input_sees_later_days_or_the_test_split(make_cube, lead, name) -> None:  # type: ignore[no-untyped-def]
    arrays = CubeArrays(open_cube(make_cube(days=60, cloud_fraction=0.2)))
    split = blocked_split(arrays.times, SPLIT)
    config = DataConfig(
        tile_size=16, split=SPLIT, lead=lead, gap_fill_extra_mask=False, composite_days=10
    )
    normalizers = fit_normalizers(arrays, split.train, (-10.0, 10.0))
    dataset = NO2TileDataset(
        arrays, normalizers, split.days(name), config, False, 0, split.hidden_from(name)
    )
    clean = arrays.no2.copy()
    test_days = arrays.indices_of(split.test)
    tile = Tile(0, 0, 16)
    checked = 0
    for k in dataset.evaluation_positions():
        t_in = int(dataset.input_indices[k])
        before = dataset.tile_sample(dataset.evaluation_inputs(k), tile)
        poisoned = clean.copy()
        poisoned[t_in + 1 :] = 1e4  # the target day (lead >= 1) and every later day
        if name != "test":
            poisoned[test_days] = -1e4
        arrays.no2 = poisoned
        after = dataset.tile_sample(dataset.evaluation_inputs(k), tile)
        arrays.no2 = clean
        for field in INPUTS:
            np.testing.assert_array_equal(
                getattr(before, field).numpy(), getattr(after, field).numpy(), err_msg=field
            )
        checked += 1
    assert checked > 3
    # the check has teeth: the composite window of some training day does reach back into a
    # test block, and only ``hidden_days`` keeps it out
    if name == "train":
        exposed = NO2TileDataset(arrays, normalizers, split.train, config, False, 0)
        windows = [exposed.observation_window(k) for k in exposed.evaluation_positions()]
        arrays.no2 = clean.copy()
        arrays.no2[test_days] = -1e4
        leaked = [exposed.observation_window(k) for k in exposed.evaluation_positions()]
        arrays.no2 = clean
        assert any(
            not np.array_equal(a, b, equal_nan=True) for a, b in zip(windows, leaked, strict=True)
        )


def test_fitted_inputs_ignore_every_non_training_day(make_cube) -> None:  # type: ignore[no-untyped-def]
    arrays = CubeArrays(open_cube(make_cube(days=60)))
    split = blocked_split(arrays.times, SPLIT)
    first = fit_normalizers(arrays, split.train, (-10.0, 10.0))
    others = np.setdiff1d(np.arange(arrays.times.size), arrays.indices_of(split.train))
    arrays.no2 = arrays.no2.copy()
    arrays.no2[others] = 1e4
    second = fit_normalizers(arrays, split.train, (-10.0, 10.0))
    np.testing.assert_array_equal(first.climatology, second.climatology)
    assert float(first.no2.median_) == float(second.no2.median_)  # type: ignore[arg-type]
    assert float(first.no2.iqr_) == float(second.no2.iqr_)  # type: ignore[arg-type]
