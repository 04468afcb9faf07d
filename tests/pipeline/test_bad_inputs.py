"""The bad-file policy of the build (issue 12), on real-format files damaged the way downloads are.

A bad L2 file (truncated, zero-byte, text, header-only, a variable missing, garbage time
units, wrong units, zeroed in the middle) is left out, named on the console with its reason,
and the build of the good days ends with exit code 3 (``--skip-bad-files``: 0). A cloudy or
off-swath day is one summary line and exit 0. A build with no usable day, or a user error,
is exit 2 with one line, and an existing cube is left untouched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from analytic_world import (
    GRID,
    OVERPASS_HOUR,
    PIPELINE,
    START,
    World,
    make_world,
    run_cli,
    snapshot,
    truncate,
    write_era5,
    write_swath,
)

from no2fusion.errors import InputFileError, NoDataError
from no2fusion.io.cube import completed_days, open_cube
from no2fusion.io.isolated import TIMEOUT_ENV, run_isolated
from no2fusion.pipeline.build import build_cube
from no2fusion.pipeline.report import report_path
from no2fusion.synth.writers import L2Swath, write_tropomi_l2


def _rename(path: Path, group: str, name: str) -> None:
    with netCDF4.Dataset(path, "a") as ds:
        ds[group].renameVariable(name, name + "_gone")


def _set_units(path: Path, where: str, units: str) -> None:
    group, name = where.rsplit("/", 1)
    with netCDF4.Dataset(path, "a") as ds:
        ds[group][name].setncattr("units", units)


def _zero_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = bytes(third)
    path.write_bytes(bytes(data))


def _header_only(world: World, day: int) -> None:
    """Day ``day``'s file name, PRODUCT group without variables (such header files exist)."""
    write_swath(world, day).unlink()
    zeros = np.zeros((2, 2), np.float32)
    corners = np.zeros((2, 2, 4), np.float32)
    first = (START + day).astype("datetime64[s]") + OVERPASS_HOUR
    times = (first + np.arange(2) * np.timedelta64(1, "s")).astype("datetime64[ms]")
    swath = L2Swath(zeros, zeros, corners, corners, zeros, zeros, zeros, times, 20000 + day)
    write_tropomi_l2(swath, world.tropomi, header_only=True)


BAD_FILES = {
    "truncated": (lambda w: truncate(write_swath(w, 1)), "not a readable NetCDF-4 file"),
    "zero_byte": (lambda w: write_swath(w, 1).write_bytes(b""), "empty file"),
    "text": (
        lambda w: write_swath(w, 1).write_text("<html>502 Bad Gateway</html>\n"),
        "not a readable NetCDF-4 file",
    ),
    "header_only": (lambda w: _header_only(w, 1), "header-only"),
    "no_no2_column": (
        lambda w: _rename(write_swath(w, 1), "PRODUCT", "nitrogendioxide_tropospheric_column"),
        "missing variable PRODUCT/nitrogendioxide_tropospheric_column",
    ),
    "no_qa_value": (
        lambda w: _rename(write_swath(w, 1), "PRODUCT", "qa_value"),
        "missing variable PRODUCT/qa_value",
    ),
    "no_bounds": (
        lambda w: _rename(
            write_swath(w, 1), "PRODUCT/SUPPORT_DATA/GEOLOCATIONS", "latitude_bounds"
        ),
        "missing variable PRODUCT/SUPPORT_DATA/GEOLOCATIONS/latitude_bounds",
    ),
    "garbage_time_units": (
        lambda w: _set_units(write_swath(w, 1), "PRODUCT/delta_time", "fortnights since lunch"),
        "cannot decode PRODUCT/delta_time units",
    ),
    "wrong_column_units": (
        lambda w: _set_units(
            write_swath(w, 1), "PRODUCT/nitrogendioxide_tropospheric_column", "molec cm-2"
        ),
        "has units 'molec cm-2', expected 'mol m-2'",
    ),
    "zeroed_middle": (lambda w: _zero_middle(write_swath(w, 1)), "damaged|not a readable|HDF"),
}


def _world_with_bad_day(root: Path, case: str) -> World:
    world = World(root, 3)
    write_swath(world, 0)
    write_swath(world, 2)
    BAD_FILES[case][0](world)
    write_era5(world)
    return world


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_named_on_the_console_and_exits_3(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "20")  # a read that hangs is rejected, not waited for
    world = _world_with_bad_day(tmp_path / "w", case)
    bad = next(p for p in world.tropomi.iterdir() if "20210302" in p.name)
    out = tmp_path / "cube.zarr"
    started = time.perf_counter()
    code = run_cli(world, out)
    assert time.perf_counter() - started < 60
    err = capsys.readouterr().err
    assert code == 3, err
    named = [line for line in err.splitlines() if str(bad) in line]
    assert len(named) == 1, err
    assert named[0].startswith("no2fusion build: warning: left out a bad input file: ")
    assert re.search(BAD_FILES[case][1], named[0]), named[0]
    assert "exit code 3" in err.splitlines()[-1]
    assert "cloudy" not in err  # a bad file is not reported as a cloudy day
    # the good days form a correct cube; the bad day is absent; the report names the file too
    assert completed_days(out).tolist() == [True, False, True]
    report = json.loads(report_path(out).read_text())
    assert report["summary"]["files_rejected"] == 1
    assert str(bad) in report["days"][1]["rejected"][0]


def test_skip_bad_files_exits_0_with_the_same_cube(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = _world_with_bad_day(tmp_path / "w", "truncated")
    out = tmp_path / "cube.zarr"
    assert run_cli(world, out, "--skip-bad-files") == 0
    err = capsys.readouterr().err
    assert "left out a bad input file" in err and "exit code 3" not in err
    assert completed_days(out).tolist() == [True, False, True]


def test_bad_file_name_is_rejected_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world(tmp_path / "w", days=2)
    odd = world.tropomi / "S5P_OFFL_L2__NO2____renamed-by-hand.nc"
    shutil.copy(next(world.tropomi.iterdir()), odd)
    assert run_cli(world, tmp_path / "cube.zarr") == 3
    err = capsys.readouterr().err
    assert f"{odd}: not an S5P L2 NO2 file name" in err


@pytest.mark.parametrize(
    ("case", "expected"),
    [("all_qa_fail", "QA"), ("misses_domain", "domain")],
)
def test_cloudy_or_off_swath_day_is_skipped_with_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    world = World(tmp_path, 3)
    write_swath(world, 0)
    write_swath(world, 1, qa=0.74) if case == "all_qa_fail" else write_swath(
        world, 1, shift_lat=5.0
    )
    write_swath(world, 2)
    write_era5(world)
    out = tmp_path / "cube.zarr"
    assert run_cli(world, out) == 0
    err = capsys.readouterr().err
    assert "skipped 1 of 3 days with no usable pixel (cloudy or off-swath)" in err
    assert "bad input" not in err
    report = build_cube(world.root, tmp_path / "again.zarr", GRID, PIPELINE, progress=False)
    assert [d.status for d in report.days] == ["written", "skipped", "written"]
    assert re.search(expected, " ".join(report.days[1].problems), re.IGNORECASE)
    assert not report.rejected_files


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


@pytest.mark.parametrize("case", ["all_bad", "all_cloudy"])
def test_a_build_without_a_usable_day_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    world = World(tmp_path / "w", 2)
    for day in range(2):
        path = write_swath(world, day, qa=0.5 if case == "all_cloudy" else 1.0)
        if case == "all_bad":
            truncate(path)
    write_era5(world)
    out = tmp_path / "cube.zarr"
    assert run_cli(world, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("no2fusion build: error: ") and "no usable day" in err[-1]
    if case == "all_bad":
        assert "2 bad file(s)" in err[-1] and "not a readable NetCDF-4 file" in err[-1]
    else:
        assert "2 without a usable pixel" in err[-1]
    assert not out.exists()
    with pytest.raises(NoDataError, match="no usable day"):
        build_cube(world.root, out, GRID, PIPELINE, progress=False)


# ------------------------------------------------------------------------------------------------
# the isolated reader: a read that hangs or crashes the library
# ------------------------------------------------------------------------------------------------
def test_a_read_that_hangs_is_rejected_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "1")
    started = time.perf_counter()
    with pytest.raises(InputFileError, match=r"x\.nc: reading did not finish within 1 s"):
        run_isolated(tmp_path / "x.nc", time.sleep, 60)
    assert time.perf_counter() - started < 10
    assert run_isolated(tmp_path / "y.nc", os.getpid) != os.getpid()  # a fresh helper works


def test_a_read_that_crashes_the_helper_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"x\.nc: reading crashed"):
        run_isolated(tmp_path / "x.nc", os.abort)
    with pytest.raises(InputFileError, match=r"y\.nc: empty file"):
        from no2fusion.pipeline.qa import load_and_filter

        (tmp_path / "y.nc").write_bytes(b"")
        run_isolated(tmp_path / "y.nc", load_and_filter, tmp_path / "y.nc", GRID.bbox, 0.75)


# ------------------------------------------------------------------------------------------------
# user errors: exit 2, one line, nothing changed
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case", ["era5_gap", "era5_nan", "no_sources", "inverted_bbox", "no_overlap"]
)
def test_user_errors_stop_with_exit_2_and_leave_the_cube(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    world = make_world(tmp_path / "w", days=2)
    truncate(write_swath(world, 1))  # the existing cube lacks day 1, so a rerun has work to do
    out = tmp_path / "cube.zarr"
    assert run_cli(world, out, "--skip-bad-files") == 0
    assert completed_days(out).tolist() == [True, False]
    write_swath(world, 1)  # repaired: day 1 needs ERA5 from 07:00 to 12:00 on day 1
    before = snapshot(out)
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
    assert snapshot(out) == before  # the existing cube is untouched
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
    assert open_cube(out).sizes["time"] == 1


# ------------------------------------------------------------------------------------------------
# meteorology: plausibility, mixed grids, coverage in space and time
# ------------------------------------------------------------------------------------------------
def test_era5_t2m_in_celsius_labelled_kelvin_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = make_world(tmp_path / "w", days=2)
    path = world.root / "era5" / "era5_single_levels.nc"
    with netCDF4.Dataset(path, "a") as ds:
        ds["t2m"][:] = ds["t2m"][:] - 273.15  # units attribute still K
    assert run_cli(world, tmp_path / "cube.zarr") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}: variable 't2m' has values 6.85..9.15 K" in err
    assert not (tmp_path / "cube.zarr").exists()


def test_two_era5_downloads_on_different_grids_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(tmp_path / "w", 3)
    for day in range(3):
        write_swath(world, day)
    write_era5(world, last_hour=35, name="era5_a.nc")
    write_era5(world, first_hour=36, name="era5_b.nc", shift_deg=0.1)
    assert run_cli(world, tmp_path / "cube.zarr") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "AlignmentError" not in err
    assert "ERA5 files era5_a.nc and era5_b.nc are on different grids (lat: " in err
    assert "vs" in err and "lon: " in err


def test_era5_covering_part_of_the_domain_warns_with_the_fraction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(tmp_path / "w", 2)
    for day in range(2):
        write_swath(world, day)
    write_era5(world, lat_range=(50.5, 52.0))  # cells reach down to 50.375 of 50..51
    assert run_cli(world, tmp_path / "cube.zarr") == 0
    err = capsys.readouterr().err
    assert "the meteorology covers 62% of the domain" in err
    write_era5(world, lat_range=(50.75, 52.0))  # down to 50.625: 38 %
    assert run_cli(world, tmp_path / "other.zarr") == 2
    err = capsys.readouterr().err.strip()
    assert "covers 38% of the domain" in err and "at least 50% is needed" in err


def test_era5_missing_some_overpass_windows_leaves_those_days_out_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(tmp_path / "w", 3)
    for day in range(3):
        write_swath(world, day)
    write_era5(world, last_hour=2 * 24 + 9)  # day 2's window needs 07:00..12:00
    out = tmp_path / "cube.zarr"
    assert run_cli(world, out) == 0
    err = capsys.readouterr().err
    assert "ERA5 covers the overpass windows of 2 of 3 days (66.7 %)" in err
    assert completed_days(out).tolist() == [True, True, False]
    report = json.loads(report_path(out).read_text())
    assert report["days"][2]["status"] == "no_met" and report["summary"]["days_without_met"] == 1
    write_era5(world, last_hour=13)  # only day 0: 1 of 3 is below the threshold
    assert run_cli(world, tmp_path / "fresh.zarr") == 2
    assert "ERA5 covers the overpass windows of 1 of 3 days" in capsys.readouterr().err
    assert not (tmp_path / "fresh.zarr").exists()


def test_build_of_a_domain_smaller_than_the_tile_works(tmp_path: Path) -> None:
    """The build does not cut tiles: data.tile_size (64 here, the domain is 8 x 8) is not its
    business."""
    world = make_world(tmp_path / "w", days=2)
    assert run_cli(world, tmp_path / "cube.zarr", "--set", "data.tile_size=64") == 0
    assert completed_days(tmp_path / "cube.zarr").all()
