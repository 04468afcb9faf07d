"""Cube -> samples: normalizers and climatology fit on train only, lead/gap-fill inputs, the
composite and climatology channels, the met block around each tile, tiles covering the domain,
skipped samples and one-line errors for bad cubes."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from no2fusion.config import DataConfig, SplitConfig
from no2fusion.data.arrays import CubeArrays, fit_normalizers
from no2fusion.data.batch import stack_samples
from no2fusion.data.datamodule import NO2DataModule
from no2fusion.data.dataset import EpochSampler, NO2TileDataset, Perturbation
from no2fusion.data.splits import blocked_split
from no2fusion.data.tiles import Tile, covering_origins, covering_tiles
from no2fusion.errors import ConfigError, CubeSchemaError, NoDataError
from no2fusion.evaluation import robustness
from no2fusion.io.cube import open_cube

SPLIT = SplitConfig(block_days=7, buffer_days=1, val_fraction=0.2, test_fraction=0.2, seed=0)


def _data(**kwargs: object) -> DataConfig:
    values: dict[str, object] = {"tile_size": 16, "split": SPLIT, "batch_size": 4}
    values.update(kwargs)
    return DataConfig(**values)  # type: ignore[arg-type]


def test_normalizers_are_fit_on_training_days_only(make_cube) -> None:  # type: ignore[no-untyped-def]
    arrays = CubeArrays(open_cube(make_cube(days=60)))
    split = blocked_split(arrays.times, SPLIT)
    normalizers = fit_normalizers(arrays, split.train, (-10.0, 10.0))
    train = arrays.no2[arrays.indices_of(split.train)]
    train_valid = train[np.isfinite(train)]
    q25, q50, q75 = np.quantile(train_valid, [0.25, 0.5, 0.75])
    assert float(normalizers.no2.median_) == pytest.approx(q50)  # type: ignore[arg-type]
    assert float(normalizers.no2.iqr_) == pytest.approx(q75 - q25)  # type: ignore[arg-type]
    everything = arrays.no2[np.isfinite(arrays.no2)]
    # no2 grows by 1 umol m-2 per day, so statistics over all days would differ
    assert np.median(everything) != pytest.approx(q50)
    # features: per feature, f + 0.01 t + 0.1 * (area-weighted mean met_lat index)
    feature_median = np.asarray(normalizers.features.median_)
    assert feature_median.shape == (13,)
    assert np.allclose(np.diff(feature_median), 1.0, atol=1e-4)
    # climatology: per-cell mean of the valid training values only
    expected = np.nanmean(np.where(np.isfinite(train), train, np.nan), axis=0)
    np.testing.assert_allclose(normalizers.climatology, expected, rtol=1e-5)
    assert float(normalizers.climatology.mean()) < float(np.nanmean(everything)) + 30


def test_sample_contents_lead_one(make_cube) -> None:  # type: ignore[no-untyped-def]
    path = make_cube(days=60, absent_days=(20,), empty_days=(30,))
    module = NO2DataModule(path, _data(), clip_range=(-0.5, 0.5), seed=3)
    module.setup()
    data = module.datasets["val"]
    arrays = module.arrays
    assert arrays is not None and module.normalizers is not None
    median = float(module.normalizers.no2.median_)  # type: ignore[arg-type]
    iqr = float(module.normalizers.no2.iqr_)  # type: ignore[arg-type]
    largest_target = 0.0
    for index in range(len(data)):
        sample = data[index]
        t = int(sample.day_index)
        day = arrays.times[t]
        t_in = arrays.index_of(day - np.timedelta64(1, "D"))
        assert t_in is not None  # lead 1: the previous calendar day is the input
        x, y = arrays.no2[t_in], arrays.no2[t]
        sat = sample.sat.numpy()
        assert sat.shape == (5, 16, 16)
        assert np.array_equal(sat[1], np.isfinite(x).astype(np.float32))
        expected_in = np.where(np.isfinite(x), np.clip((x - median) / iqr, -0.5, 0.5), 0.0)
        assert np.allclose(sat[0], expected_in, atol=1e-6)
        # the composite: valid values of the 7 calendar days ending at the input day
        window = [arrays.index_of(arrays.times[t_in] - np.timedelta64(n, "D")) for n in range(7)]
        stack = np.stack([arrays.no2[i] for i in window if i is not None])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # cells never observed: NaN
            composite = np.nanmean(stack, axis=0)
        expected_composite = np.where(
            np.isfinite(composite), np.clip((composite - median) / iqr, -0.5, 0.5), 0.0
        )
        assert np.allclose(sat[2], expected_composite, atol=1e-5)
        assert np.allclose(sat[3], np.isfinite(stack).sum(axis=0) / 7.0)
        climatology = np.clip((module.normalizers.climatology - median) / iqr, -0.5, 0.5)
        assert np.allclose(sat[4], climatology, atol=1e-5)
        mask = sample.target_mask.numpy()
        assert np.array_equal(mask, np.isfinite(y)) and mask.any()
        expected_target = np.where(mask, (y - median) / iqr, 0.0)  # never clipped
        assert np.allclose(sample.target.numpy(), expected_target, atol=1e-5)
        largest_target = max(largest_target, float(np.abs(sample.target.numpy()).max()))
        assert np.array_equal(sample.hidden_mask.numpy(), mask & ~np.isfinite(x))
        assert not np.isnan(sat).any() and not np.isnan(sample.target.numpy()).any()
    assert largest_target > 0.5  # targets go beyond the input clip range: never clipped
    days_used = {str(arrays.times[int(data[i].day_index)]) for i in range(len(data))}
    assert "2021-01-21" not in days_used and "2021-01-22" not in days_used  # absent / no input
    assert "2021-01-31" not in days_used  # a target with no valid cell is skipped
    train_days = {str(arrays.times[t]) for t in module.datasets["train"].day_indices}
    assert "2021-01-31" not in {
        str(arrays.times[module.datasets["train"].day_indices[k]])
        for k, _ in module.datasets["train"].entries
    }
    assert train_days  # (the empty day may be listed as a day but never as an entry)


def test_met_block_maps_tile_cells_onto_the_met_grid(make_cube) -> None:  # type: ignore[no-untyped-def]
    """The affine of a sample takes each tile cell to the met-block position at its own
    latitude and longitude; the block's features and wind are the cube's, normalized / in
    cells per hour; the in-memory cache and the store give the same numbers."""
    path = make_cube(days=60)
    module = NO2DataModule(path, _data(tile_size=8), seed=0)
    module.setup()
    data, arrays = module.datasets["val"], module.arrays
    assert arrays is not None and module.normalizers is not None
    tile = Tile(row=2, col=5, size=8)
    block = data.block_of(tile)
    a_i, b_i, a_j, b_j = block.affine.tolist()
    met_lat_step = float(arrays.met_lat[1] - arrays.met_lat[0])
    for r in (0, 3, 7):
        position = a_i + b_i * r  # fractional block index
        lower = int(np.floor(position))
        lat = arrays.met_lat[block.lat_index[lower]] + (position - lower) * met_lat_step
        assert lat == pytest.approx(arrays.lat[tile.row + r], abs=1e-6)  # float32 affine
    for c in (0, 7):
        position = a_j + b_j * c
        lower = int(np.floor(position))
        lon = arrays.met_lon[block.lon_index[lower]] + (position - lower) * met_lat_step
        assert lon == pytest.approx(arrays.lon[tile.col + c], abs=1e-6)
    day = data.evaluation_days()[0]
    sample = data.tile_sample(day, tile)
    t = day.target_index
    steps, features, mh, mw = sample.aux.shape
    assert (steps, features) == (24, 13) and (mh, mw) == (
        block.lat_index.size,
        block.lon_index.size,
    )
    raw = np.arange(13)[None, :, None, None] + 0.01 * t + 0.1 * block.lat_index[None, None, :, None]
    expected = module.normalizers.features.transform(np.moveaxis(raw, 1, -1), clip=True)
    expected = np.broadcast_to(np.moveaxis(expected, -1, 1), sample.aux.shape)
    np.testing.assert_allclose(sample.aux.numpy(), expected, atol=2e-3)  # float16 cache
    # wind: u10 = 10 * u_norm m/s, v10 = 10 * v_norm, in target cells (0.1 deg) per hour
    u = 10.0 * (0.0 + 0.01 * t + 0.1 * block.lat_index)  # (mh,) u_norm is feature 0
    metres_east = 0.1 * 111_194.9 * np.cos(np.deg2rad(arrays.met_lat[block.lat_index]))
    np.testing.assert_allclose(
        sample.wind[0, 1, :, 0].numpy(), u * 3600 / metres_east, rtol=2e-3, atol=2e-3
    )
    v = 10.0 * (1.0 + 0.01 * t + 0.1 * block.lat_index)
    np.testing.assert_allclose(
        sample.wind[0, 0, :, 0].numpy(), v * 3600 / 11_119.49, rtol=2e-3, atol=2e-3
    )
    assert module.split is not None
    lazy = NO2TileDataset(
        CubeArrays(open_cube(path), cache=False),
        module.normalizers,
        module.split.val,
        data.config,
        training=False,
    )
    again = lazy.tile_sample(lazy.evaluation_days()[0], tile)
    np.testing.assert_allclose(again.aux.numpy(), sample.aux.numpy(), atol=2e-3)
    np.testing.assert_allclose(again.wind.numpy(), sample.wind.numpy(), rtol=2e-3, atol=1e-3)


def test_gap_filling_hides_another_days_clouds(make_cube) -> None:  # type: ignore[no-untyped-def]
    path = make_cube(days=60, cloud_fraction=0.3)
    module = NO2DataModule(path, _data(lead=0), seed=0)
    module.setup()
    train = module.datasets["train"]
    arrays = module.arrays
    assert arrays is not None
    sample = train[0]
    t = int(sample.day_index)
    visible = sample.sat[1].numpy().astype(bool)
    valid_today = np.isfinite(arrays.no2[t])
    assert np.all(visible <= valid_today)  # only today's valid cells can be visible
    assert visible.sum() < valid_today.sum()  # and another day's clouds hid some of them
    hidden = sample.hidden_mask.numpy()
    assert np.array_equal(hidden, valid_today & ~visible)
    # the hidden cells are exactly some other day's invalid cells
    others = [u for u in train.day_indices if u != t]
    assert any(np.array_equal(visible, valid_today & np.isfinite(arrays.no2[u])) for u in others)
    # the same key gives the same sample; the next epoch borrows (usually) another mask
    again = train[0]
    assert np.array_equal(again.sat.numpy(), sample.sat.numpy())
    masks = {train[epoch * len(train)].sat[1].numpy().tobytes() for epoch in range(6)}
    assert len(masks) > 1


def test_evaluation_inputs_hide_one_borrowed_mask_per_day(make_cube) -> None:  # type: ignore[no-untyped-def]
    """Outside training the borrowed gap-filling mask depends on the day only: every tile of a
    day (and the evaluation's tiled predictor) sees the same input."""
    module = NO2DataModule(make_cube(days=60, cloud_fraction=0.3), _data(lead=0, tile_size=8))
    module.setup()
    val = module.datasets["val"]
    arrays = module.arrays
    assert arrays is not None
    by_day: dict[int, list[tuple[int, int, np.ndarray]]] = {}
    for index in range(len(val)):
        sample = val[index]
        by_day.setdefault(int(sample.day_index), []).append(
            (int(sample.row), int(sample.col), sample.sat[1].numpy().astype(bool))
        )
    for t, tiles in by_day.items():
        k = int(np.flatnonzero(val.day_indices == t)[0])
        day = val.evaluation_inputs(k)
        assert day.target_index == t and day.met_index == t
        visible = np.isfinite(day.observation)
        assert visible.sum() < np.isfinite(arrays.no2[t]).sum()  # another day's clouds hid some
        for row, col, tile_visible in tiles:
            np.testing.assert_array_equal(tile_visible, visible[row : row + 8, col : col + 8])
    assert [d.target_index for d in val.evaluation_days()] == sorted(by_day)


def test_tile_sample_builds_inputs_from_day_inputs_only(make_cube) -> None:  # type: ignore[no-untyped-def]
    """A changed observation or meteorology day changes exactly those inputs (the path the
    robustness and shuffle tests take); the target never changes."""
    module = NO2DataModule(make_cube(days=60), _data(), seed=0)
    module.setup()
    data = module.datasets["test"]
    assert data.satellite_channel_names == (
        "no2",
        "no2_valid",
        "composite",
        "composite_fraction",
        "climatology",
    )
    assert data.aux_axes == ("hour", "feature", "met_lat", "met_lon")
    day = data.evaluation_days()[0]
    tile = Tile(0, 0, 16)
    base = data.tile_sample(day, tile)
    hidden = day.observation.copy()
    hidden[:4] = np.nan
    other = data.day_inputs(1)
    changed = data.tile_sample(replace(day, observation=hidden, met_index=other.met_index), tile)
    assert not changed.sat[1, :4].any() and (changed.sat[:, 4:] == base.sat[:, 4:]).all()
    assert np.array_equal(changed.aux.numpy(), data.tile_sample(other, tile).aux.numpy())
    assert not np.array_equal(changed.aux.numpy(), base.aux.numpy())
    assert np.array_equal(changed.target.numpy(), base.target.numpy())
    assert (changed.hidden_mask[:4] == changed.target_mask[:4]).all()
    batch = stack_samples([base, changed])
    assert batch.size == 2 and batch.sat.shape == (2, 5, 16, 16) and batch.row.shape == (2,)
    assert batch.calendar.shape == (2, 7) and batch.met_affine.shape == (2, 4)


def test_robustness_perturbations_reach_every_observation_channel(make_cube) -> None:  # type: ignore[no-untyped-def]
    """Dropout and noise are a ``Perturbation`` of every observed field a day's inputs come
    from (and noise of the climatology); every channel the dataset names as satellite-derived
    must change under one of them. A new satellite-derived channel they miss fails here."""
    module = NO2DataModule(make_cube(days=60), _data(), seed=0)
    module.setup()
    data = module.datasets["test"]
    names = data.satellite_channel_names
    assert set(data.observation_channel_names) <= set(names)
    k, tile = data.evaluation_positions()[0], Tile(0, 0, 16)
    rng = np.random.default_rng(0)

    def dropout(window: np.ndarray) -> np.ndarray:
        return robustness.hide(window, robustness.random_dropout(np.isfinite(window), 0.5, rng))

    def noise(field: np.ndarray) -> np.ndarray:
        return robustness.add_noise(field, 0.1, rng)

    perturbations = {
        "dropout": Perturbation(dropout),
        "noise": Perturbation(noise, climatology=noise),
    }
    base = data.tile_sample(data.evaluation_inputs(k), tile).sat.numpy()
    changed = {}
    for label, perturbation in perturbations.items():
        sat = data.tile_sample(data.evaluation_inputs(k, perturbation), tile).sat.numpy()
        changed[label] = {n for n, a, b in zip(names, base, sat, strict=True) if (a != b).any()}
    assert changed["dropout"] == {"no2", "no2_valid", "composite", "composite_fraction"}
    assert changed["noise"] == {"no2", "composite", "climatology"}  # values only
    assert changed["dropout"] | changed["noise"] == set(data.observation_channel_names)


def test_training_covers_the_domain_with_shifted_tiles(make_cube) -> None:  # type: ignore[no-untyped-def]
    path = make_cube(days=60)
    module = NO2DataModule(path, _data(tile_size=8), seed=0)
    module.setup()
    train, val = module.datasets["train"], module.datasets["val"]
    origins = {(int(train[k].row), int(train[k].col)) for k in range(3 * len(train))}
    assert len(origins) > 5 and all(0 <= r <= 8 and 0 <= c <= 8 for r, c in origins)
    assert train[1].sat.shape == (5, 8, 8) and train[1].aux.shape[:2] == (24, 13)
    val_origins = {(int(val[k].row), int(val[k].col)) for k in range(len(val))}
    assert val_origins == {(0, 0), (0, 8), (8, 0), (8, 8)}
    weight = val[0].weight.numpy()
    assert weight.mean() == pytest.approx(1.0, abs=1e-6)
    assert weight[0, 0] > weight[-1, 0]  # southern cells are larger


def test_a_multi_tile_domain_trains_on_more_samples_per_epoch(make_cube) -> None:  # type: ignore[no-untyped-def]
    """An epoch covers every tile of every training day: four 8 x 8 tiles of a 16 x 16 domain
    give four times the samples of one 16 x 16 tile; ``tiles_per_day`` sets the number."""
    path = make_cube(days=60, cloud_fraction=0.0)
    sizes = {}
    for tile_size in (16, 8):
        module = NO2DataModule(path, _data(tile_size=tile_size), seed=0)
        module.setup()
        sizes[tile_size] = len(module.datasets["train"])
    assert sizes[8] == 4 * sizes[16]
    module = NO2DataModule(path, _data(tile_size=8, tiles_per_day=2), seed=0)
    module.setup()
    assert len(module.datasets["train"]) == 2 * sizes[16]


def test_covering_origins() -> None:
    assert covering_origins(16, 8) == [0, 8]
    assert covering_origins(16, 6) == [0, 6, 10]  # the last tile is flush with the edge
    assert covering_origins(16, 16) == [0]
    assert len(covering_tiles((16, 20), 8)) == 2 * 3


def test_epoch_sampler_keys_encode_epoch_and_index() -> None:
    sampler = EpochSampler(10, seed=5)
    first = list(sampler)
    assert sorted(first) == list(range(10))
    sampler.set_epoch(3)
    third = list(sampler)
    assert sorted(k - 30 for k in third) == list(range(10))
    assert [k - 30 for k in third] != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_tile_larger_than_cube_is_rejected(make_cube) -> None:  # type: ignore[no-untyped-def]
    module = NO2DataModule(make_cube(days=60), _data(tile_size=32))
    with pytest.raises(ConfigError, match=r"data.tile_size 32 is larger than the domain"):
        module.setup()


def test_too_few_days_names_the_cube(make_cube) -> None:  # type: ignore[no-untyped-def]
    path = make_cube(days=12)
    with pytest.raises(NoDataError, match=r"cube.zarr: too few days for the blocked split"):
        NO2DataModule(path, _data()).setup()


def test_cube_missing_a_variable_is_rejected(make_cube, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cube.zarr"
    shutil.copytree(make_cube(days=30), path)
    shutil.rmtree(path / "features")
    (path / "zarr.json").unlink(missing_ok=True)  # drop consolidated metadata naming it
    with pytest.raises(CubeSchemaError) as error:
        NO2DataModule(path, _data()).setup()
    assert "cube.zarr" in str(error.value) and "\n" not in str(error.value)


def test_dataset_length_counts_only_valid_targets(make_cube) -> None:  # type: ignore[no-untyped-def]
    path = make_cube(days=60, empty_days=(40, 41))
    arrays = CubeArrays(open_cube(path))
    split = blocked_split(arrays.times, SPLIT)
    normalizers = fit_normalizers(arrays, split.train, (-10.0, 10.0))
    every_day = arrays.times
    data = NO2TileDataset(arrays, normalizers, every_day, _data(), training=False)
    # every day but the first (no input) and the two empty days
    assert len(data) == 60 - 1 - 2
