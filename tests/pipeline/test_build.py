"""The cube build end to end: real L2/ERA5 NetCDF files (package writers) -> Zarr cube.

A small hand-made world with analytic answers (pixels aligned to the grid, constant per cell,
steady west wind) checks values exactly; the simulated world (``synth_sources``) checks the
build against its truth. Bad inputs are in ``test_bad_inputs.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from analytic_world import (
    GRID,
    OVERPASS_HOUR,
    PIPELINE,
    START,
    World,
    cell_value,
    make_world,
)

from no2fusion.config import AlignConfig, PipelineConfig
from no2fusion.errors import NoDataError
from no2fusion.grid import Grid
from no2fusion.io import cube_write
from no2fusion.io.cube import check_cube_schema, completed_days, open_cube
from no2fusion.io.era5 import Era5Index
from no2fusion.pipeline import build as build_module
from no2fusion.pipeline.build import build_cube, derive_region, staging_path
from no2fusion.pipeline.report import report_path
from no2fusion.vocab import FEATURES


# ------------------------------------------------------------------------------------------------
# the analytic world
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Path]:
    world = make_world(tmp_path_factory.mktemp("world"), days=3)
    out = world.root / "cube.zarr"
    build_cube(world.root, out, GRID, PIPELINE, progress=False)
    return world, out


def test_cube_values_are_exact_on_grid_aligned_pixels(built: tuple[World, Path]) -> None:
    _world, out = built
    cube = open_cube(out)
    check_cube_schema(cube)
    assert cube.sizes["time"] == 3
    for day in range(3):
        np.testing.assert_allclose(cube["no2"].isel(time=day).values, cell_value(day), rtol=1e-6)
    # each cell is tiled by exactly 2 x 2 pixels: weight 1, count 4
    np.testing.assert_allclose(cube["no2_weight"].values, 1.0, rtol=1e-6)
    assert (cube["no2_count"].values == 4).all()
    assert cube["no2"].attrs["units"] == "umol m-2"


def test_overpass_time_and_met_alignment(built: tuple[World, Path]) -> None:
    _world, out = built
    cube = open_cube(out)
    # pixel centres inside the domain: scanlines 1..16 of 18 -> mean at scanline 8.5 x 0.84 s
    expected = (START.astype("datetime64[ns]") + OVERPASS_HOUR) + np.timedelta64(
        int(8.5 * 840), "ms"
    )
    got = cube["overpass_time"].values[0]
    assert abs(got - expected) < np.timedelta64(1, "ms")
    # nearest hour to 12:10 is 12:00; 6 hourly steps ending there
    met_time = cube["met_time"].values[1]
    day1 = START.astype("datetime64[ns]") + np.timedelta64(1, "D")
    np.testing.assert_array_equal(met_time, day1 + np.arange(7, 13).astype("timedelta64[h]"))
    # blh = 500 + 50 * hour: the aligned field says which hour was taken
    np.testing.assert_allclose(
        cube["met_blh"].isel(time=1).values[:, 0, 0], 500 + 50 * np.arange(7, 13)
    )


def test_features_in_cube_follow_the_definitions(built: tuple[World, Path]) -> None:
    _world, out = built
    cube = open_cube(out)
    feats = cube["features"].isel(time=0)
    assert [str(f) for f in cube["feature"].values] == list(FEATURES)
    np.testing.assert_allclose(
        feats.sel(feature="wind_dir_sin").values, -1.0, atol=1e-6
    )  # from west
    np.testing.assert_allclose(feats.sel(feature="wind_dir_cos").values, 0.0, atol=1e-6)
    np.testing.assert_allclose(feats.sel(feature="u_norm").values, 0.5, atol=1e-6)
    np.testing.assert_allclose(feats.sel(feature="wind_speed").values, 5.0, atol=1e-5)
    hour = np.arange(6, 12 + 1)[-6:]
    np.testing.assert_allclose(
        feats.sel(feature="hour_sin").values[:, 0, 0], np.sin(2 * np.pi * hour / 24), atol=1e-6
    )


def test_report_and_region_without_truth(built: tuple[World, Path]) -> None:
    world, out = built
    report = json.loads(report_path(out).read_text())
    assert report["summary"]["days_written"] == 3
    assert staging_path(out).parent == out.parent and not staging_path(out).exists()
    assert report["summary"]["pixels"]["kept"] == report["summary"]["pixels"]["pixels_total"] > 0
    assert all(day["coverage"] == 1.0 for day in report["days"])
    cube = open_cube(out)
    region = cube["region"].values
    # derived from mean NO2: the plume centre is the "urban" class, the corner "background"
    assert region[4, 4] == 3 and region[0, 0] == 0
    assert "derived" in cube["region"].attrs["legend"]
    assert cube.attrs["synthetic"] == 0 and json.loads(cube.attrs["source_files"])


def test_rerun_skips_complete_days(built: tuple[World, Path], tmp_path: Path) -> None:
    world, out = built
    copy = tmp_path / "cube.zarr"
    shutil.copytree(out, copy)
    before = (
        (copy / "no2" / "c" / "0").stat().st_mtime_ns
        if (copy / "no2" / "c" / "0").exists()
        else None
    )
    report = build_cube(world.root, copy, GRID, PIPELINE, progress=False)
    assert report.count("complete") == 3 and report.count("written") == 0
    assert [d.coverage for d in report.days] == [1.0, 1.0, 1.0]  # taken from the cube
    assert report.summary()["pixels"]["pixels_total"] == 0  # nothing was re-read
    if before is not None:
        assert (copy / "no2" / "c" / "0").stat().st_mtime_ns == before


def test_crash_mid_build_leaves_no_half_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(tmp_path / "w", days=3)
    out = tmp_path / "cube.zarr"
    real = cube_write._set_day_complete
    flagged: list[int] = []
    crashed: list[int] = []

    def crashing(store: object, index: int) -> None:
        if flagged:  # the second day's data has landed; die before its flag
            crashed.append(index)
            raise KeyboardInterrupt("simulated crash")
        flagged.append(index)
        real(store, index)

    monkeypatch.setattr(cube_write, "_set_day_complete", crashing)
    with pytest.raises(KeyboardInterrupt):
        build_cube(world.root, out, GRID, PIPELINE, progress=False)
    monkeypatch.undo()
    assert not staging_path(out).exists()  # pass 1's staged days go with the failed build
    flags = completed_days(out)
    assert np.flatnonzero(flags).tolist() == flagged  # only the day whose flag was written
    visible = open_cube(out)
    assert visible.sizes["time"] == 1
    # the crashed day's data did land, so the flag really is what hides it
    raw = xr.open_zarr(out)
    assert np.isfinite(raw["no2"].isel(time=crashed[0]).values).all()
    report = build_cube(world.root, out, GRID, PIPELINE, progress=False)
    assert report.count("complete") == 1 and report.count("written") == 2
    assert completed_days(out).all()


def test_parallel_processes_give_the_same_cube(built: tuple[World, Path], tmp_path: Path) -> None:
    world, out = built
    other = tmp_path / "parallel.zarr"
    build_cube(world.root, other, GRID, PIPELINE.model_copy(update={"workers": 2}), progress=False)
    a, b = open_cube(out), open_cube(other)
    for name in ("no2", "features", "met_t2m", "overpass_time"):
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_era5_read_a_block_of_days_at_a_time_gives_the_same_cube(
    built: tuple[World, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pass 2 reads ERA5 again one block of ``ERA5_BLOCK_DAYS`` days at a time (memory bounded
    by the block, not the period): one-day blocks give the cube of the default blocks."""
    world, out = built
    reads = []
    read_window = Era5Index.read_window

    def counted(self: Era5Index, *args: object, **kwargs: object) -> xr.Dataset:
        reads.append(args[:2])
        return read_window(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Era5Index, "read_window", counted)
    monkeypatch.setattr(build_module, "ERA5_BLOCK_DAYS", 1)
    other = tmp_path / "blocks.zarr"
    staging_path(other).mkdir()
    (staging_path(other) / "day_000000.npz").write_bytes(b"left by a killed build")
    build_cube(world.root, other, GRID, PIPELINE, progress=False)
    assert len(reads) == 3  # three days, one block each
    assert not staging_path(other).exists()  # a killed build's leftovers are cleared too
    a, b = open_cube(out), open_cube(other)
    for name in ("no2", "features", "met_t2m", "met_u10", "met_time", "overpass_time"):
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_existing_store_with_another_layout_is_refused(
    built: tuple[World, Path], tmp_path: Path
) -> None:
    world, out = built
    copy = tmp_path / "cube.zarr"
    shutil.copytree(out, copy)
    with pytest.raises(NoDataError, match="another layout"):
        build_cube(
            world.root,
            copy,
            GRID,
            PipelineConfig(workers=1, align=AlignConfig(steps=4)),
            progress=False,
        )


@pytest.mark.parametrize(
    "pipeline",
    [
        PipelineConfig(workers=1, qa_threshold=0.5, align=AlignConfig(steps=6)),
        PipelineConfig(workers=1, align=AlignConfig(steps=6, method="window", window_hours=3.0)),
    ],
    ids=["qa_threshold", "align_method"],
)
def test_rerun_with_other_processing_settings_is_refused(
    built: tuple[World, Path], tmp_path: Path, pipeline: PipelineConfig
) -> None:
    """Complete days are skipped on a re-run, so a re-run with another QA threshold or
    alignment would mix days processed two ways under one set of attributes: refused, and the
    store is left as it was."""
    world, out = built
    copy = tmp_path / "cube.zarr"
    shutil.copytree(out, copy)
    attrs_before = dict(open_cube(copy).attrs)
    with pytest.raises(NoDataError, match="was built with"):
        build_cube(world.root, copy, GRID, pipeline, progress=False)
    assert dict(open_cube(copy).attrs) == attrs_before


def test_derive_region_quantile_classes() -> None:
    mean = np.arange(100, dtype=float).reshape(10, 10)
    mean[0, 0] = np.nan
    region, legend = derive_region(mean)
    assert region[0, 0] == -1 and "unknown" in legend
    values = mean[1:, :].ravel()
    assert set(np.unique(region[np.isfinite(mean)])) == {0, 1, 2, 3}
    assert region.ravel()[-1] == 3 and region[0, 1] == 0
    assert len(values) > 0


# ------------------------------------------------------------------------------------------------
# the simulated world
# ------------------------------------------------------------------------------------------------
def test_simulated_world_cube_agrees_with_truth_within_retrieval_noise(tiny_cube: Path) -> None:
    """Cells with a valid value agree with the world's truth at the overpass.

    Expected error of a cell: its propagated retrieval precision sigma_cell =
    sqrt(sum w^2 sigma_i^2) / sum w (noise averaged over the ~7 pixels of a cell), plus a
    representation error: the world samples its truth at pixel centres and pixels reach into
    neighbouring cells, and cloudy-but-passing pixels are biased low. So we require
    (1) the rms of (no2 - truth) / sigma_cell below 1.5 (pure noise would give 1.0; the
    representation error may add at most sqrt(1.5^2 - 1) = 1.1 sigma in quadrature),
    (2) a mean bias below 5 % of the mean truth, and (3) a cube that carries the signal:
    the rmse well below the spatial spread of the truth.
    """
    cube = open_cube(tiny_cube).load()
    check_cube_schema(cube, tiny_cube)
    assert cube.attrs["synthetic"] == 1 and "no2_truth" in cube
    diff = (cube["no2"] - cube["no2_truth"]).values
    valid = np.isfinite(diff)
    assert valid.sum() > 1000  # enough cells for the statistics below
    sigma = cube["no2_precision"].values[valid]
    assert np.all(sigma > 0)
    z = diff[valid] / sigma
    assert np.sqrt(np.mean(z**2)) < 1.5
    truth = cube["no2_truth"].values[valid]
    assert abs(diff[valid].mean()) < 0.05 * truth.mean()
    rmse = np.sqrt(np.mean(diff[valid] ** 2))
    assert rmse < 0.5 * truth.std()
    # cells never seen are NaN with weight 0 and count 0
    empty = ~np.isfinite(cube["no2"].values)
    assert (cube["no2_count"].values[empty] == 0).all() and (
        cube["no2_weight"].values[empty] == 0
    ).all()
    # region and legend come from the truth file
    assert set(np.unique(cube["region"].values)) <= {0, 1, 2, 3, 4}
    assert "urban" in cube["region"].attrs["legend"]


def test_simulated_world_report(tiny_cube: Path) -> None:
    report = json.loads(report_path(tiny_cube).read_text())
    summary = report["summary"]
    assert summary["days_total"] == 60
    assert summary["days_written"] + summary["days_skipped"] == 60
    assert summary["days_written"] > 30  # most days have a clear-enough overpass
    px = summary["pixels"]
    rejected = px["rejected_qa"] + px["rejected_fill"] + px["rejected_nan_corners"]
    assert px["kept"] + rejected == px["pixels_total"]
    for day in report["days"]:
        if day["status"] == "skipped":
            assert day["problems"], day
        else:
            assert 0 < day["coverage"] <= 1 and day["overpass_time"].endswith("Z")


def test_grid_fixture_matches() -> None:
    assert isinstance(GRID, Grid) and GRID.shape == (8, 8)
    assert np.array_equal(GRID.lat_edges.astype(np.float32).astype(np.float64), GRID.lat_edges)


def test_distributed_scheduler_address_gives_the_same_cube(
    built: tuple[World, Path], tmp_path: Path
) -> None:
    from distributed import LocalCluster

    world, out = built
    other = tmp_path / "distributed.zarr"
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        report = build_cube(
            world.root, other, GRID, PIPELINE, scheduler=cluster.scheduler_address, progress=False
        )
    assert report.count("written") == 3
    a, b = open_cube(out), open_cube(other)
    for name in ("no2", "features", "met_blh", "overpass_time"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
