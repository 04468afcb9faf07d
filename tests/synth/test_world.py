"""The generated world: layout contract, coverage, truth, determinism, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from no2fusion.cli import main
from no2fusion.config import Config, config_from_dict
from no2fusion.synth import world as world_module
from no2fusion.synth.world import generate_world
from no2fusion.vocab import REGION_LEGEND

L2_GLOB = "S5P_OFFL_L2__NO2____*.nc"


def test_layout_one_l2_file_per_day_and_monthly_era5(
    synth_sources: Path, test_config: Config
) -> None:
    days = test_config.synth.days
    l2 = sorted((synth_sources / "tropomi").glob(L2_GLOB))
    assert len(l2) == days
    start_dates = [re.match(r"S5P_OFFL_L2__NO2____(\d{8})T", p.name).group(1) for p in l2]  # type: ignore[union-attr]
    assert len(set(start_dates)) == days  # one orbit per day
    era5 = sorted((synth_sources / "era5").glob("era5_single_levels_*.nc"))
    assert [p.name for p in era5] == [
        "era5_single_levels_2020-12.nc",
        "era5_single_levels_2021-01.nc",
        "era5_single_levels_2021-02.nc",
        "era5_single_levels_2021-03.nc",
    ]
    info = json.loads((synth_sources / "world.json").read_text())
    assert info["seed"] == test_config.seed
    assert info["counts"]["tropomi_files"] == days
    assert info["synth"]["days"] == days and info["grid"]["resolution"] == 0.1


def test_era5_covers_the_24_hours_before_every_overpass(synth_sources: Path) -> None:
    with xr.open_mfdataset(
        sorted((synth_sources / "era5").glob("*.nc")), combine="by_coords"
    ) as met:
        valid = met["valid_time"].values
        assert np.all(np.diff(valid) == np.timedelta64(1, "h"))
        lat = met["latitude"].values
    with xr.open_dataset(synth_sources / "truth" / "truth.nc") as truth:
        overpass = truth["overpass_time"].values
        grid_lat = truth["lat"].values
    assert valid[0] <= overpass.min() - np.timedelta64(24, "h")
    assert valid[-1] >= overpass.max()
    assert lat.max() >= grid_lat.max() and lat.min() <= grid_lat.min()  # met grid covers the domain


def test_truth_file(synth_sources: Path, test_config: Config) -> None:
    grid = test_config.grid.to_grid()
    with xr.open_dataset(synth_sources / "truth" / "truth.nc") as truth:
        no2 = truth["no2_truth"]
        assert no2.dims == ("time", "lat", "lon") and no2.attrs["units"] == "umol m-2"
        assert no2.shape == (test_config.synth.days, *grid.shape)
        np.testing.assert_allclose(truth["lat"].values, grid.lat)
        np.testing.assert_allclose(truth["lon"].values, grid.lon)
        assert truth["time"].values[0] == np.datetime64("2021-01-01")
        assert truth["region"].dtype == np.int8 and truth["region"].attrs["legend"] == REGION_LEGEND
        values = no2.values
        assert np.isfinite(values).all() and values.min() > 0
        background = np.median(values[:, truth["region"].values == 0])
        assert 5 < background < 60  # umol m-2
        assert np.percentile(values, 99) > 3 * background  # polluted cells stand out
        emissions = truth["emissions"].values
    peak = np.unravel_index(np.argmax(emissions), emissions.shape)
    assert values[:, peak[0], peak[1]].mean() > 2 * background


def test_observations_follow_truth_and_clouds_cut_qa(synth_sources: Path) -> None:
    l2 = sorted((synth_sources / "tropomi").glob(L2_GLOB))
    fractions = []
    for path in l2[:10]:
        with netCDF4.Dataset(path) as ds:
            qa = ds["PRODUCT/qa_value"]
            qa.set_auto_maskandscale(False)
            raw = np.asarray(qa[0])
            fractions.append(float((raw > 75).mean()))
            no2 = np.ma.filled(ds["PRODUCT/nitrogendioxide_tropospheric_column"][0], np.nan)
            assert np.isnan(no2).any()  # failed retrievals are written as fill values
            assert set(np.unique(raw)) <= set(range(101))
    assert 0.05 < np.mean(fractions) < 0.95
    assert np.std(fractions) > 0.02  # cloudiness changes from day to day


def test_meteorology_matters_column_over_the_strongest_source_falls_with_wind(
    synth_sources: Path,
) -> None:
    with xr.open_dataset(synth_sources / "truth" / "truth.nc") as truth:
        emissions = truth["emissions"].values
        values = truth["no2_truth"].values
        overpass = truth["overpass_time"].values
        lat, lon = truth["lat"].values, truth["lon"].values
    j, i = np.unravel_index(np.argmax(emissions), emissions.shape)
    with xr.open_mfdataset(
        sorted((synth_sources / "era5").glob("*.nc")), combine="by_coords"
    ) as met:
        at = met.sel(latitude=lat[j], longitude=lon[i], method="nearest")
        speed = np.hypot(at["u10"], at["v10"]).sel(valid_time=overpass, method="nearest").values
    correlation = np.corrcoef(np.log(values[:, j, i]), np.log(speed))[0, 1]
    assert correlation < -0.3


def _walk(group: netCDF4.Group, prefix: str, data: dict[str, bytes]) -> None:
    for name, var in group.variables.items():
        var.set_auto_maskandscale(False)
        array = np.asarray(var[...])
        # string variables are object arrays: compare their text, not the pointers
        data[prefix + name] = (
            repr(array.tolist()).encode() if array.dtype == object else array.tobytes()
        )
    for name, sub in group.groups.items():
        _walk(sub, f"{prefix}{name}/", data)


def _files_data(root: Path) -> dict[str, dict[str, bytes]]:
    """Every variable's raw data in every NetCDF file under ``root``."""
    out: dict[str, dict[str, bytes]] = {}
    for path in sorted(root.rglob("*.nc")):
        data: dict[str, bytes] = {}
        with netCDF4.Dataset(path) as ds:
            _walk(ds, "", data)
        out[str(path.relative_to(root))] = data
    return out


def test_same_seed_same_files_with_one_or_two_workers(tmp_path: Path, test_config: Config) -> None:
    values = test_config.model_dump()
    values["synth"]["days"] = 3
    one = config_from_dict({**values, "synth": {**values["synth"], "workers": 1}})
    two = config_from_dict({**values, "synth": {**values["synth"], "workers": 2}})
    generate_world(one, tmp_path / "a", progress=False)
    generate_world(two, tmp_path / "b", progress=False)
    a, b = _files_data(tmp_path / "a"), _files_data(tmp_path / "b")
    assert sorted(a) == sorted(b) and len(a) == 3 + 2 + 1  # 3 L2, Dec + Jan ERA5, truth
    for name in a:
        assert a[name] == b[name], name
    other = config_from_dict({**values, "seed": values["seed"] + 1})
    generate_world(other, tmp_path / "c", progress=False)
    c = _files_data(tmp_path / "c")
    truth = "truth/truth.nc"
    assert c[truth]["no2_truth"] != a[truth]["no2_truth"]


def test_cli_synth_writes_a_world_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "world"
    code = main(
        [
            "synth",
            "--config",
            str(repo / "config" / "test.yaml"),
            "--set",
            "synth.days=2",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 TROPOMI L2 files" in printed and str(out) in printed
    assert len(list((out / "tropomi").glob(L2_GLOB))) == 2


def test_cli_synth_unwritable_output_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Path(__file__).resolve().parents[2]
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(
        [
            "synth",
            "--config",
            str(repo / "config" / "test.yaml"),
            "--out",
            str(blocker),
            "--no-progress",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(blocker) in err
    assert blocker.read_text() == "not a folder"  # nothing damaged


def test_transport_inputs_a_few_hours_at_a_time_give_the_same_world(
    tmp_path: Path, test_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transport inputs are computed a block of hours at a time (memory: a month over a
    continent would take gigabytes); a block that does not divide the day gives the same files."""
    values = test_config.model_dump()
    values["synth"].update(days=3, workers=1)
    config = config_from_dict(values)
    generate_world(config, tmp_path / "a", progress=False)
    monkeypatch.setattr(world_module, "TRANSPORT_BLOCK_HOURS", 5)
    generate_world(config, tmp_path / "b", progress=False)
    a, b = _files_data(tmp_path / "a"), _files_data(tmp_path / "b")
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name


def test_hourly_truth_is_written_on_request(tmp_path: Path, test_config: Config) -> None:
    values = test_config.model_dump()
    values["synth"].update(days=2, write_hourly_truth=True, workers=1)
    summary = generate_world(config_from_dict(values), tmp_path, progress=False)
    assert summary.hourly_truth_path == tmp_path / "truth" / "truth_hourly.nc"
    with (
        xr.open_dataset(summary.hourly_truth_path) as hourly,
        xr.open_dataset(summary.truth_path) as truth,
    ):
        times = hourly["time"].values
        assert times.size == 48 and times[0] == np.datetime64("2021-01-01T01:00")
        assert np.all(np.diff(times) == np.timedelta64(1, "h"))
        assert hourly["no2_truth"].attrs["units"] == "umol m-2"
        # the overpass snapshot lies between the two hourly states around it (per cell, loosely)
        overpass = truth["overpass_time"].values[0]
        before = hourly["no2_truth"].sel(time=overpass, method="ffill").values
        after = hourly["no2_truth"].sel(time=overpass, method="bfill").values
        snap = truth["no2_truth"].values[0]
        low, high = np.minimum(before, after), np.maximum(before, after)
        assert np.mean((snap >= 0.8 * low) & (snap <= 1.2 * high)) > 0.95


def test_rerun_replaces_an_earlier_world_but_never_foreign_files(
    tmp_path: Path, test_config: Config
) -> None:
    values = test_config.model_dump()
    values["synth"].update(days=3, workers=1)
    foreign = (
        tmp_path
        / "tropomi"
        / "S5P_OFFL_L2__NO2____20200101T000000_20200101T014130_11500_01_010302_20200103T000000.nc"
    )
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"a user's file")
    generate_world(config_from_dict(values), tmp_path, progress=False)
    assert foreign.read_bytes() == b"a user's file"  # no world.json before: nothing removed
    foreign.unlink()
    values["synth"]["days"] = 2
    generate_world(config_from_dict(values), tmp_path, progress=False)
    assert len(list((tmp_path / "tropomi").glob(L2_GLOB))) == 2  # day 3 of the earlier world gone
