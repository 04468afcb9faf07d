"""The cube build end to end: real L2/ERA5 NetCDF files (package writers) -> Zarr cube.

A small hand-made world with analytic answers (pixels aligned to the grid, constant per cell,
steady west wind) checks values exactly; the simulated world (``synth_sources``) checks the
build against its truth; every bad-input case of issue 3 gets its outcome.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from no2fusion.cli import main
from no2fusion.config import AlignConfig, PipelineConfig
from no2fusion.errors import NoDataError
from no2fusion.grid import Grid, create_target_grid
from no2fusion.io import cube as cube_module
from no2fusion.io.cube import check_cube_schema, completed_days, open_cube
from no2fusion.pipeline.build import build_cube, derive_region
from no2fusion.pipeline.report import report_path
from no2fusion.synth.writers import L2Swath, write_era5_month, write_tropomi_l2
from no2fusion.vocab import FEATURES, MOL_M2_TO_UMOL_M2

# 1/8 deg cells and 1/16 deg pixels: every edge is exact in float32 (the product's corner dtype)
CELL_DEG = 0.125
GRID = create_target_grid(
    {"lat_min": 50.0, "lat_max": 51.0, "lon_min": 6.0, "lon_max": 7.0}, CELL_DEG
)
PIPELINE = PipelineConfig(workers=1, align=AlignConfig(steps=6))
START = np.datetime64("2021-03-01", "D")
OVERPASS_HOUR = np.timedelta64(12 * 3600 + 10 * 60, "s")  # first scanline at 12:10 UTC
PIXEL_DEG = 0.0625  # pixels tile each cell exactly 2 x 2


def cell_value(day: int) -> np.ndarray:
    """Analytic per-cell NO2 (umol m-2) on GRID for day ``day``: a plume growing by 10 % a day."""
    lat, lon = np.meshgrid(GRID.lat, GRID.lon, indexing="ij")
    return 20.0 + 100.0 * np.exp(-((lat - 50.5) ** 2 + (lon - 6.5) ** 2) / 0.05) * (1 + 0.1 * day)


@dataclass
class World:
    root: Path
    days: int

    @property
    def tropomi(self) -> Path:
        return self.root / "tropomi"


def write_swath(
    world: World, day: int, *, noise: float = 0.0, qa: float = 1.0, shift_lat: float = 0.0
) -> Path:
    """One orbit of grid-aligned 0.05 deg pixels over GRID (plus one ring of pixels)."""
    lat_e = np.arange(50.0 - PIXEL_DEG, 51.0 + PIXEL_DEG + 1e-9, PIXEL_DEG) + shift_lat
    lon_e = np.arange(6.0 - PIXEL_DEG, 7.0 + PIXEL_DEG + 1e-9, PIXEL_DEG)
    n_scan, n_pix = lat_e.size - 1, lon_e.size - 1
    la0, lo0 = np.meshgrid(lat_e[:-1], lon_e[:-1], indexing="ij")
    la1, lo1 = la0 + PIXEL_DEG, lo0 + PIXEL_DEG
    lat_b = np.stack([la0, la0, la1, la1], axis=-1)  # SW, SE, NE, NW (counter-clockwise)
    lon_b = np.stack([lo0, lo1, lo1, lo0], axis=-1)
    centre_lat, centre_lon = la0 + PIXEL_DEG / 2, lo0 + PIXEL_DEG / 2
    # value: the analytic cell value of the cell holding the pixel centre (ring: 20)
    values = np.full((n_scan, n_pix), 20.0)
    i = np.floor((centre_lat - 50.0) / CELL_DEG).astype(int)
    j = np.floor((centre_lon - 6.0) / CELL_DEG).astype(int)
    inside = (i >= 0) & (i < 8) & (j >= 0) & (j < 8)
    values[inside] = cell_value(day)[i[inside], j[inside]]
    rng = np.random.default_rng(day)
    values = values + noise * rng.standard_normal(values.shape)
    first = (START + day).astype("datetime64[s]") + OVERPASS_HOUR
    times = (first + np.arange(n_scan) * np.timedelta64(840, "ms")).astype("datetime64[ms]")
    swath = L2Swath(
        latitude=centre_lat.astype(np.float32),
        longitude=centre_lon.astype(np.float32),
        latitude_bounds=lat_b.astype(np.float32),
        longitude_bounds=lon_b.astype(np.float32),
        no2=(values / MOL_M2_TO_UMOL_M2).astype(np.float32),
        no2_precision=np.full((n_scan, n_pix), max(noise, 1.0) / MOL_M2_TO_UMOL_M2, np.float32),
        qa_value=np.full((n_scan, n_pix), qa),
        scanline_time=times,
        orbit=20000 + day,
    )
    return write_tropomi_l2(swath, world.tropomi)


def write_era5(
    world: World, *, first_hour: int = -24, last_hour: int | None = None, nan_at: int | None = None
) -> Path:
    """Hourly ERA5 (current CDS layout) on a 0.25 deg grid around GRID: steady 5 m/s west wind."""
    last = last_hour if last_hour is not None else world.days * 24 + 23
    hours = np.arange(first_hour, last + 1)
    times = START.astype("datetime64[h]") + hours
    lat = np.arange(49.0, 52.01, 0.25)
    lon = np.arange(5.0, 8.01, 0.25)
    shape = (hours.size, lat.size, lon.size)
    hour_of_day = (hours % 24)[:, None, None] * np.ones(shape)
    fields = {
        "u10": np.full(shape, 5.0),
        "v10": np.zeros(shape),
        "blh": 500.0 + 50.0 * hour_of_day,
        "t2m": 280.0 + 0.1 * hour_of_day,
        "d2m": np.full(shape, 275.0),
        "sp": np.full(shape, 101000.0),
        "tcc": np.full(shape, 0.3),
    }
    if nan_at is not None:
        fields["t2m"][nan_at, 3, 3] = np.nan
    return write_era5_month(world.root / "era5" / "era5_single_levels.nc", times, lat, lon, fields)


def make_world(root: Path, days: int = 3, noise: float = 0.0) -> World:
    world = World(root, days)
    for day in range(days):
        write_swath(world, day, noise=noise)
    write_era5(world)
    return world


def run_cli(world: World, out: Path, *extra: str) -> int:
    return main(
        [
            "build",
            "--config",
            "config/test.yaml",
            "--sources",
            str(world.root),
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "grid.bbox={lat_min: 50.0, lat_max: 51.0, lon_min: 6.0, lon_max: 7.0}",
            "--set",
            "grid.resolution=0.125",
            "--set",
            "data.tile_size=8",
            "--set",
            "pipeline.align.steps=6",
            "--set",
            "pipeline.workers=1",
            *extra,
        ]
    )


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
    real = cube_module._set_day_complete
    flagged: list[int] = []
    crashed: list[int] = []

    def crashing(store: object, index: int) -> None:
        if flagged:  # the second day's data has landed; die before its flag
            crashed.append(index)
            raise KeyboardInterrupt("simulated crash")
        flagged.append(index)
        real(store, index)

    monkeypatch.setattr(cube_module, "_set_day_complete", crashing)
    with pytest.raises(KeyboardInterrupt):
        build_cube(world.root, out, GRID, PIPELINE, progress=False)
    monkeypatch.undo()
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


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _drop_no2(path: Path) -> None:
    with netCDF4.Dataset(path, "a") as ds:
        ds["PRODUCT"].renameVariable("nitrogendioxide_tropospheric_column", "something_else")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("header_only", "no variables|header"),
        ("truncated", "readable|truncated|NetCDF|HDF"),
        ("not_netcdf", "readable|NetCDF|HDF"),
        ("missing_variable", "nitrogendioxide_tropospheric_column"),
        ("all_qa_fail", "QA"),
        ("misses_domain", "domain"),
    ],
)
def test_bad_day_is_skipped_and_reported(tmp_path: Path, case: str, expected: str) -> None:
    world = World(tmp_path, 3)
    write_swath(world, 0)
    write_swath(world, 2)
    if case == "header_only":
        bad = write_swath(world, 1)
        swath_path = bad
        bad.unlink()
        # same name, PRODUCT group without variables
        from no2fusion.synth import writers

        lat_e = np.zeros((2, 2), np.float32)
        swath = L2Swath(
            lat_e,
            lat_e,
            np.zeros((2, 2, 4), np.float32),
            np.zeros((2, 2, 4), np.float32),
            lat_e,
            lat_e,
            lat_e,
            (
                (START + 1).astype("datetime64[s]")
                + OVERPASS_HOUR
                + np.arange(2) * np.timedelta64(1, "s")
            ).astype("datetime64[ms]"),
            20001,
        )
        writers.write_tropomi_l2(swath, world.tropomi, header_only=True)
        del swath_path
    elif case == "truncated":
        _truncate(write_swath(world, 1))
    elif case == "not_netcdf":
        name = write_swath(world, 1)
        name.write_text("this is not a netCDF file\n")
    elif case == "missing_variable":
        _drop_no2(write_swath(world, 1))
    elif case == "all_qa_fail":
        write_swath(world, 1, qa=0.74)
    elif case == "misses_domain":
        write_swath(world, 1, shift_lat=5.0)
    write_era5(world)
    out = tmp_path / "cube.zarr"
    report = build_cube(world.root, out, GRID, PIPELINE, progress=False)
    assert [d.status for d in report.days] == ["written", "skipped", "written"]
    problems = " ".join(report.days[1].problems)
    import re

    assert re.search(expected, problems, re.IGNORECASE), problems
    assert report.days[1].files[0] in problems or "S5P_" in problems
    assert completed_days(out).tolist() == [True, False, True]
    saved = json.loads(report_path(out).read_text())
    assert saved["summary"]["days_skipped"] == 1


def test_skipped_days_give_one_console_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Per-day reasons go to INFO (and the report); the console gets one summary WARNING."""
    world = World(tmp_path, 3)
    write_swath(world, 0)
    write_swath(world, 1, qa=0.74)
    write_swath(world, 2, qa=0.74)
    write_era5(world)
    caplog.set_level(logging.INFO, logger="no2fusion.pipeline.build")
    build_cube(world.root, tmp_path / "cube.zarr", GRID, PIPELINE, progress=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "skipped 2 of 3 days" in warnings[0]
    assert sum(message.startswith("skipped day ") for message in infos) == 2


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "case", ["era5_gap", "era5_nan", "no_sources", "inverted_bbox", "no_overlap"]
)
def test_user_errors_stop_with_exit_2_and_leave_the_cube(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    world = make_world(tmp_path / "w", days=2)
    _truncate(write_swath(world, 1))  # the existing cube lacks day 1, so a rerun has work to do
    out = tmp_path / "cube.zarr"
    assert run_cli(world, out) == 0
    assert completed_days(out).tolist() == [True, False]
    write_swath(world, 1)  # repaired: day 1 needs ERA5 from 07:00 to 12:00 on day 1
    before = _snapshot(out)
    capsys.readouterr()
    extra: list[str] = []
    if case == "era5_gap":
        # ERA5 starts at 09:00 on day 1: the steps 07:00 and 08:00 before the 12:00 step are missing
        write_era5(world, first_hour=24 + 9)
    elif case == "era5_nan":
        write_era5(world, nan_at=40)
    elif case == "no_sources":
        shutil.rmtree(world.root / "tropomi")
        shutil.rmtree(world.root / "era5")
    elif case == "inverted_bbox":
        extra = ["--set", "grid.bbox={lat_min: 51.0, lat_max: 50.0, lon_min: 6.0, lon_max: 7.0}"]
    elif case == "no_overlap":
        write_era5(world, first_hour=24 * 40, last_hour=24 * 41)
    code = run_cli(world, out, *extra)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("no2fusion build: error:")
    assert _snapshot(out) == before  # the existing cube is untouched
    expected = {
        "era5_gap": "does not cover the overpass",
        "era5_nan": "NaN",
        "no_sources": "no sources",
        "inverted_bbox": "bbox",
        "no_overlap": "no time overlap",
    }[case]
    assert expected in err
    # and a fresh build with the same problem creates nothing
    if case in ("era5_gap", "era5_nan", "no_overlap"):
        fresh = tmp_path / "fresh.zarr"
        assert run_cli(world, fresh) == 2
        assert not fresh.exists()


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
