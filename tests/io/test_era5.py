"""ERA5 reader: both CDS layouts, longitude/latitude normalisation, units, RH, bad files."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from no2fusion.errors import InputFileError, NoDataError
from no2fusion.grid import BBox
from no2fusion.io.era5 import (
    read_era5,
    relative_humidity,
    saturation_vapour_pressure_water,
    scan_era5,
)
from no2fusion.synth.writers import write_era5_month

TIMES = np.arange(
    np.datetime64("2021-01-31T20"), np.datetime64("2021-02-01T04"), np.timedelta64(1, "h")
)
LAT = np.arange(48.0, 52.01, 0.25)
LON = np.arange(4.0, 9.01, 0.25)


def fields(
    lat: np.ndarray = LAT, lon: np.ndarray = LON, times: np.ndarray = TIMES
) -> dict[str, np.ndarray]:
    """Smooth fields whose values encode their coordinates (so reordering errors show)."""
    t = np.arange(times.size)[:, None, None]
    la, lo = lat[None, :, None], lon[None, None, :]
    shape = (times.size, lat.size, lon.size)
    return {
        "u10": np.broadcast_to((lo - 6.0) / 10 + 0.1 * t, shape).copy(),  # plausible: < 80
        "v10": np.broadcast_to(la - 50.0 + 0 * t, shape).copy(),
        "blh": np.broadcast_to(500.0 + 10.0 * t + 0 * la * lo, shape).copy(),
        "t2m": np.broadcast_to(280.0 + la / 10 + lo / 100 + 0 * t, shape).copy(),
        "d2m": np.broadcast_to(275.0 + 0 * la * lo * t, shape).copy(),
        "sp": np.broadcast_to(100000.0 + 100 * la + lo + 0 * t, shape).copy(),
        "tcc": np.broadcast_to(0.5 + 0 * la * lo * t, shape).copy(),
    }


def test_current_and_legacy_layouts_read_the_same(tmp_path: Path) -> None:
    current = write_era5_month(tmp_path / "current.nc", TIMES, LAT, LON, fields())
    legacy = write_era5_month(tmp_path / "legacy.nc", TIMES, LAT, LON, fields(), legacy=True)
    a, b = read_era5([current]), read_era5([legacy])
    assert a.sizes == b.sizes == {"time": TIMES.size, "lat": LAT.size, "lon": LON.size}
    np.testing.assert_array_equal(a["time"].values, TIMES.astype("datetime64[ns]"))
    assert np.all(np.diff(a["lat"].values) > 0)  # file stores north -> south; we ascend
    for name, expected in fields().items():
        # legacy int16 packing: error <= scale/2 = (range / 65532) / 2
        span = float(np.ptp(expected)) or 1.0
        np.testing.assert_allclose(a[name].values, expected, rtol=1e-6, atol=1e-6 * span)
        np.testing.assert_allclose(b[name].values, expected, atol=span / 65532 + 1e-6)
        assert a[name].dtype == np.float32
    assert a["sp"].attrs["units"] == "Pa" and a["tcc"].attrs["units"] == "1"
    assert a["u10"].attrs["units"] == "m s-1"


def test_longitudes_0_360_are_normalised_and_sorted(tmp_path: Path) -> None:
    lon360 = np.arange(0.0, 360.0, 1.0)
    lat = np.array([49.0, 50.0, 51.0])
    f = fields(lat, lon360, TIMES[:2])
    path = write_era5_month(tmp_path / "global.nc", TIMES[:2], lat, lon360, f)
    ds = read_era5([path])
    lon = ds["lon"].values
    assert lon.min() == -180.0 and lon.max() == 179.0 and np.all(np.diff(lon) > 0)
    # value at -10 deg E came from 350 deg E in the file: u10 = (lon - 6) / 10 + 0.1 t
    np.testing.assert_allclose(ds["u10"].sel(lon=-10.0).values[0], (350.0 - 6.0) / 10, rtol=1e-6)
    cropped = read_era5([path], BBox(49.5, 50.5, -3.0, 3.0), margin_deg=0.5)
    np.testing.assert_array_equal(cropped["lon"].values, np.arange(-3.0, 4.0))
    np.testing.assert_array_equal(cropped["lat"].values, [49.0, 50.0, 51.0])


def test_expver_dimension_is_combined(tmp_path: Path) -> None:
    path = write_era5_month(tmp_path / "e.nc", TIMES, LAT, LON, fields())
    ds = xr.open_dataset(path).load()
    ds = ds.drop_vars(["expver", "number"])
    # ERA5 (expver 1) has the first 5 hours, ERA5T (expver 5) the rest: NaN elsewhere
    era5 = ds.where(xr.DataArray(np.arange(TIMES.size) < 5, dims="valid_time"))
    era5t = ds.where(xr.DataArray(np.arange(TIMES.size) >= 5, dims="valid_time")) + 0.0
    mixed = xr.concat(
        [era5, era5t], dim=xr.DataArray(["0001", "0005"], dims="expver", name="expver")
    )
    mixed = mixed.transpose("valid_time", "expver", "latitude", "longitude")
    for name in mixed.data_vars:
        mixed[name].attrs = ds[name].attrs
    mixed.to_netcdf(tmp_path / "mixed.nc")
    out = read_era5([tmp_path / "mixed.nc"])
    assert "expver" not in out.dims and "expver" not in out.coords
    np.testing.assert_allclose(out["t2m"].values, fields()["t2m"], rtol=1e-6)


def test_variables_split_over_files_and_months(tmp_path: Path) -> None:
    f = fields()
    winds = {k: f[k] for k in ("u10", "v10")}
    rest = {k: v for k, v in f.items() if k not in winds}
    write_era5_month(
        tmp_path / "winds_a.nc", TIMES[:4], LAT, LON, {k: v[:4] for k, v in winds.items()}
    )
    write_era5_month(
        tmp_path / "winds_b.nc", TIMES[4:], LAT, LON, {k: v[4:] for k, v in winds.items()}
    )
    write_era5_month(tmp_path / "rest.nc", TIMES, LAT, LON, rest)
    ds = read_era5(sorted(tmp_path.glob("*.nc")))
    assert ds.sizes["time"] == TIMES.size
    np.testing.assert_allclose(ds["u10"].values, f["u10"], rtol=1e-6, atol=1e-6)


def test_a_scan_then_windows_read_what_read_era5_reads(tmp_path: Path) -> None:
    """The build's path for long periods: ``scan_era5`` keeps only the axes; a window read
    later holds exactly the steps ``read_era5`` has there, from the files that hold them."""
    f = fields()
    write_era5_month(tmp_path / "a.nc", TIMES[:5], LAT, LON, {k: v[:5] for k, v in f.items()})
    write_era5_month(tmp_path / "b.nc", TIMES[3:], LAT, LON, {k: v[3:] for k, v in f.items()})
    files = sorted(tmp_path.glob("*.nc"))
    box = BBox(49.0, 51.0, 5.0, 8.0)
    whole = read_era5(files, box, margin_deg=0.5)
    index = scan_era5(files, box, margin_deg=0.5)
    np.testing.assert_array_equal(index.times, whole["time"].values)
    np.testing.assert_array_equal(index.lat, whole["lat"].values)
    assert [(path.name, start, end) for path, start, end in index.spans] == [
        ("a.nc", TIMES[0], TIMES[4]),
        ("b.nc", TIMES[3], TIMES[-1]),
    ]
    for first, last in [(TIMES[0], TIMES[2]), (TIMES[2], TIMES[6]), (TIMES[6], TIMES[-1])]:
        window = index.read_window(first, last)
        expected = whole.sel(time=slice(first, last))
        np.testing.assert_array_equal(window["time"].values, expected["time"].values)
        for name in ("u10", "blh", "rh"):
            np.testing.assert_array_equal(window[name].values, expected[name].values)
    assert set(index.read_window(TIMES[0], TIMES[2])["source_file"].values) == {"a.nc"}


def test_a_scan_finds_the_errors_read_era5_finds(tmp_path: Path) -> None:
    f = fields()
    write_era5_month(tmp_path / "a.nc", TIMES[:5], LAT, LON, {k: v[:5] for k, v in f.items()})
    other = {k: v[3:] + (1.0 if k == "t2m" else 0.0) for k, v in f.items()}
    write_era5_month(tmp_path / "b.nc", TIMES[3:], LAT, LON, other)  # overlap, other t2m
    with pytest.raises(InputFileError, match="a.nc and b.nc with different values"):
        scan_era5(sorted(tmp_path.glob("*.nc")))
    nan = {k: v.copy() for k, v in f.items()}
    nan["sp"][-1, 2, 2] = np.nan
    (tmp_path / "b.nc").unlink()
    write_era5_month(tmp_path / "a.nc", TIMES, LAT, LON, nan)
    with pytest.raises(InputFileError, match="'sp' has NaN"):
        scan_era5([tmp_path / "a.nc"])


def test_unit_conversion_and_unknown_units(tmp_path: Path) -> None:
    path = write_era5_month(tmp_path / "e.nc", TIMES[:2], LAT, LON, fields(times=TIMES[:2]))
    with netCDF4.Dataset(path, "a") as nc:
        nc["sp"][:] = nc["sp"][:] / 100.0
        nc["sp"].units = "hPa"
        nc["t2m"][:] = nc["t2m"][:] - 273.15
        nc["t2m"].units = "degC"
    ds = read_era5([path])
    np.testing.assert_allclose(ds["sp"].values, fields(times=TIMES[:2])["sp"], rtol=1e-6)
    np.testing.assert_allclose(ds["t2m"].values, fields(times=TIMES[:2])["t2m"], atol=2e-4)
    with netCDF4.Dataset(path, "a") as nc:
        nc["blh"].units = "furlongs"
    with pytest.raises(InputFileError, match=r"e\.nc.*'blh'.*furlongs"):
        read_era5([path])


def test_relative_humidity_against_hand_computed_values() -> None:
    # e_s(T) = 611.21 exp(17.502 (T - 273.16) / (T - 32.19)); at T0 exactly 611.21 Pa
    assert saturation_vapour_pressure_water(np.array(273.16)) == pytest.approx(611.21)
    # 293.15 K: 17.502 * 19.99 / 260.96 = 1.340684 -> 611.21 * e^1.340684 = 2335.84 Pa
    # (tables give ~2338 Pa at 20 degC)
    assert saturation_vapour_pressure_water(np.array(293.15)) == pytest.approx(2335.84, rel=1e-5)
    # t2m 293.15, d2m 283.15: e_s(283.15) = 611.21 exp(17.502 * 9.99 / 250.96) = 1226.78 Pa
    # -> RH = 100 * 1226.78 / 2335.84 = 52.52 %
    assert relative_humidity(np.array(293.15), np.array(283.15)) == pytest.approx(52.52, abs=0.01)
    assert relative_humidity(np.array(280.0), np.array(280.0)) == pytest.approx(100.0)
    assert relative_humidity(np.array(280.0), np.array(281.0)) == 100.0  # clipped (supersaturation)


def test_reader_adds_rh(tmp_path: Path) -> None:
    path = write_era5_month(tmp_path / "e.nc", TIMES[:2], LAT, LON, fields(times=TIMES[:2]))
    ds = read_era5([path])
    expected = relative_humidity(ds["t2m"].values, ds["d2m"].values)
    np.testing.assert_allclose(ds["rh"].values, expected, rtol=1e-6)
    assert ds["rh"].attrs["units"] == "%"


def test_bad_files(tmp_path: Path) -> None:
    f = fields(times=TIMES[:3])
    f["t2m"][1, 2, 3] = np.nan
    nan_file = write_era5_month(tmp_path / "nan.nc", TIMES[:3], LAT, LON, f)
    with pytest.raises(InputFileError, match=r"nan\.nc.*'t2m'.*NaN.*2021-01-31T21"):
        read_era5([nan_file])
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(InputFileError, match=r"junk\.nc.*not a readable NetCDF"):
        read_era5([junk])
    partial = write_era5_month(
        tmp_path / "partial.nc", TIMES[:3], LAT, LON, {"u10": fields(times=TIMES[:3])["u10"]}
    )
    with pytest.raises(InputFileError, match=r"'v10'.*not found"):
        read_era5([partial])
    good = write_era5_month(tmp_path / "good.nc", TIMES[:3], LAT, LON, fields(times=TIMES[:3]))
    with pytest.raises(NoDataError, match="does not overlap the domain"):
        read_era5([good], BBox(-10.0, 0.0, 100.0, 110.0))
    with pytest.raises(NoDataError, match="no ERA5 files"):
        read_era5([])


def test_variables_on_different_grids_are_an_error(tmp_path: Path) -> None:
    """Winds on a grid shifted by half a cell must not be silently intersected with the rest."""
    f = fields()
    shifted = LON + 0.125
    f_shifted = fields(lon=shifted)
    write_era5_month(
        tmp_path / "winds.nc", TIMES, LAT, shifted, {k: f_shifted[k] for k in ("u10", "v10")}
    )
    write_era5_month(
        tmp_path / "rest.nc",
        TIMES,
        LAT,
        LON,
        {k: v for k, v in f.items() if k not in ("u10", "v10")},
    )
    with pytest.raises(InputFileError, match="different grid"):
        read_era5(sorted(tmp_path.glob("*.nc")))
