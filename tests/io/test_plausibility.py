"""Plausibility of decoded values (issue 12): files that are well-formed but wrong.

ERA5 with t2m in degC labelled K, sp in hPa labelled Pa, a time step twice with different
values (in one file or across two), an axis out of order, two downloads on slightly different
grids, a grid that covers a corner of the domain; L2 with the column in molec cm-2 labelled
mol m-2, impossible coordinates, a time axis with the wrong epoch. Each is one error naming
the file and the problem (or, for partial coverage, a warning with the fraction).
"""

from __future__ import annotations

import logging
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from no2fusion.errors import InputFileError, NoDataError
from no2fusion.grid import BBox
from no2fusion.io.checks import domain_coverage, grid_difference
from no2fusion.io.era5 import read_era5
from no2fusion.io.tropomi import SentinelDataLoader
from no2fusion.synth.writers import L2Swath, write_era5_month, write_tropomi_l2

TIMES = np.arange(
    np.datetime64("2021-01-31T20"), np.datetime64("2021-02-01T04"), np.timedelta64(1, "h")
)
LAT = np.arange(48.0, 52.01, 0.25)
LON = np.arange(4.0, 9.01, 0.25)
DOMAIN = BBox(49.0, 51.0, 5.0, 8.0)


def fields(
    times: np.ndarray = TIMES, lat: np.ndarray = LAT, lon: np.ndarray = LON
) -> dict[str, np.ndarray]:
    shape = (times.size, lat.size, lon.size)
    t = np.arange(times.size, dtype=float)[:, None, None] * np.ones(shape)
    return {
        "u10": 3.0 + 0.1 * t,
        "v10": np.full(shape, -1.0),
        "blh": 600.0 + 10 * t,
        "t2m": 278.0 + 0.2 * t,
        "d2m": np.full(shape, 274.0),
        "sp": np.full(shape, 100500.0),
        "tcc": np.full(shape, 0.4),
    }


def _write(path: Path, **kw: object) -> Path:
    times = kw.pop("times", TIMES)
    lat = kw.pop("lat", LAT)
    lon = kw.pop("lon", LON)
    f = kw.pop("fields", None) or fields(times, lat, lon)  # type: ignore[arg-type]
    return write_era5_month(path, times, lat, lon, f)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        ("t2m", lambda v: v - 273.15, r"'t2m' has values 4.85..6.25 K .*outside the plausible"),
        ("sp", lambda v: v / 100, r"'sp' has values 1005..1005 Pa"),
        ("tcc", lambda v: v * 100, r"'tcc' has values 40..40 1"),
    ],
)
def test_era5_values_outside_their_units_range_are_rejected(
    tmp_path: Path, name: str, change: object, expected: str
) -> None:
    f = fields()
    f[name] = change(f[name])  # type: ignore[operator]
    path = _write(tmp_path / "era5.nc", fields=f)
    with pytest.raises(InputFileError, match=rf"era5\.nc: variable {expected}"):
        read_era5([path], DOMAIN)


def test_a_time_step_twice_with_different_values_is_rejected(tmp_path: Path) -> None:
    times = np.concatenate([TIMES, TIMES[3:4]])  # 23:00 again, at the end
    f = fields(times)
    f["t2m"][-1] += 5.0
    path = _write(tmp_path / "dup.nc", times=times, fields=f)
    with pytest.raises(InputFileError, match=r"dup\.nc: time 2021-01-31T23 appears twice"):
        read_era5([path], DOMAIN)
    for values in f.values():
        values[-1] = values[3]  # the same values twice: an overlap, harmless
    same = _write(tmp_path / "same.nc", times=times, fields=f)
    assert read_era5([same], DOMAIN).sizes["time"] == TIMES.size


def test_overlapping_downloads_must_agree(tmp_path: Path) -> None:
    full = fields()
    _write(tmp_path / "a.nc", times=TIMES[:5], fields={k: v[:5] for k, v in full.items()})
    _write(tmp_path / "b.nc", times=TIMES[3:], fields={k: v[3:] for k, v in full.items()})
    assert read_era5(sorted(tmp_path.glob("*.nc")), DOMAIN).sizes["time"] == TIMES.size
    other = {k: v[3:].copy() for k, v in full.items()}
    other["t2m"] += 1.0  # the same hours 23:00 and 00:00, other temperatures
    _write(tmp_path / "b.nc", times=TIMES[3:], fields=other)
    with pytest.raises(InputFileError, match=r"'t2m' is in a\.nc and b\.nc with different"):
        read_era5(sorted(tmp_path.glob("*.nc")), DOMAIN)


def test_an_axis_out_of_order_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "axes.nc")
    with netCDF4.Dataset(path, "a") as ds:
        lat = ds["latitude"][:]
        lat[[2, 3]] = lat[[3, 2]]
        ds["latitude"][:] = lat
    with pytest.raises(InputFileError, match=r"axes\.nc: coordinate 'latitude' is not monotonic"):
        read_era5([path], DOMAIN)


def test_two_downloads_on_slightly_different_grids_name_both_files(tmp_path: Path) -> None:
    _write(tmp_path / "era5_jan.nc", times=TIMES[:4], fields=fields(TIMES[:4]))
    shifted = LAT + 0.1
    _write(
        tmp_path / "era5_feb.nc",
        times=TIMES[4:],
        lat=shifted,
        fields=fields(TIMES[4:], lat=shifted),
    )
    with pytest.raises(InputFileError) as error:
        read_era5(sorted(tmp_path.glob("*.nc")), DOMAIN)
    line = str(error.value)
    assert "\n" not in line and "era5_feb.nc and era5_jan.nc are on different grids" in line
    # both cropped to the domain plus its 1 deg margin
    assert "(lat: 16 points 48.1..51.85 step 0.25 vs 17 points 48..52 step 0.25)" in line
    assert "lon" not in line.split("different grids")[1]  # longitudes agree


def test_grid_difference_describes_both_axes() -> None:
    a = (np.arange(3.0), np.arange(4.0))
    assert grid_difference(a, a) is None
    text = grid_difference(a, (np.arange(3.0), np.arange(0.0, 2.0, 0.5)))
    assert text == "lon: 4 points 0..3 step 1 vs 4 points 0..1.5 step 0.5"


def test_meteorology_covering_a_corner_is_an_error_and_most_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corner_lat, corner_lon = np.arange(47.0, 50.01, 0.25), np.arange(3.0, 6.51, 0.25)
    corner = _write(
        tmp_path / "corner.nc",
        lat=corner_lat,
        lon=corner_lon,
        fields=fields(lat=corner_lat, lon=corner_lon),
    )
    assert domain_coverage(corner_lat, corner_lon, DOMAIN) == pytest.approx(
        (50.125 - 49) / 2 * (6.625 - 5) / 3
    )
    with pytest.raises(NoDataError, match=r"corner\.nc: the meteorology covers 30% of the domain"):
        read_era5([corner], DOMAIN)
    most_lat = np.arange(49.5, 52.01, 0.25)  # misses the southern 0.375 deg of 2
    most = _write(tmp_path / "most.nc", lat=most_lat, fields=fields(lat=most_lat))
    caplog.set_level(logging.WARNING, logger="no2fusion.io.checks")
    read_era5([most], DOMAIN)
    assert any("covers 81% of the domain" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------
# L2
# ------------------------------------------------------------------------------------------------
def _swath(tmp_path: Path) -> Path:
    n_scan, n_pix = 6, 5
    lat0 = 50.0 + 0.05 * np.arange(n_scan)[:, None] + 0 * np.arange(n_pix)[None, :]
    lon0 = 6.0 + 0.07 * np.arange(n_pix)[None, :] + 0 * lat0
    lat_b = np.stack([lat0, lat0, lat0 + 0.05, lat0 + 0.05], axis=-1)
    lon_b = np.stack([lon0, lon0 + 0.07, lon0 + 0.07, lon0], axis=-1)
    first = np.datetime64("2021-03-01T12:00:00", "ms")
    swath = L2Swath(
        latitude=(lat0 + 0.025).astype(np.float32),
        longitude=(lon0 + 0.035).astype(np.float32),
        latitude_bounds=lat_b.astype(np.float32),
        longitude_bounds=lon_b.astype(np.float32),
        no2=np.full((n_scan, n_pix), 4e-5, np.float32),
        no2_precision=np.full((n_scan, n_pix), 5e-6, np.float32),
        qa_value=np.full((n_scan, n_pix), 1.0),
        scanline_time=first + np.arange(n_scan) * np.timedelta64(840, "ms"),
        orbit=17500,
    )
    return write_tropomi_l2(swath, tmp_path)


def test_a_plausible_swath_reads(tmp_path: Path) -> None:
    data = SentinelDataLoader().load_tropomi_no2(_swath(tmp_path))
    np.testing.assert_allclose(data["no2"].values, 40.0, rtol=1e-5)


def test_an_l2_column_in_molecules_labelled_mol_m2_is_rejected(tmp_path: Path) -> None:
    path = _swath(tmp_path)
    with netCDF4.Dataset(path, "a") as ds:
        var = ds["PRODUCT/nitrogendioxide_tropospheric_column"]
        var.set_auto_maskandscale(False)
        var[:] = var[:] * np.float32(6.02214e19)  # molec cm-2, still labelled mol m-2
    with pytest.raises(InputFileError, match=r"variable 'no2' has values 2\.409e\+21.*wrong units"):
        SentinelDataLoader().load_tropomi_no2(path)


def test_impossible_pixel_coordinates_are_rejected(tmp_path: Path) -> None:
    path = _swath(tmp_path)
    with netCDF4.Dataset(path, "a") as ds:
        ds["PRODUCT/latitude"][:] = ds["PRODUCT/latitude"][:] + 100.0
    with pytest.raises(InputFileError, match=r"variable 'latitude' has values 150"):
        SentinelDataLoader().load_tropomi_no2(path)


def test_a_time_axis_with_the_wrong_epoch_is_rejected(tmp_path: Path) -> None:
    path = _swath(tmp_path)
    with netCDF4.Dataset(path, "a") as ds:
        ds["PRODUCT/time"].setncattr("units", "seconds since 1990-01-01 00:00:00")
    with pytest.raises(InputFileError, match=r"PRODUCT/time \+ delta_time decodes to 2001-"):
        SentinelDataLoader().load_tropomi_no2(path)
    with netCDF4.Dataset(path, "a") as ds:
        ds["PRODUCT/time"].setncattr("units", "seconds since 2010-01-01 00:00:00")
        delta = ds["PRODUCT/delta_time"][:]
        ds["PRODUCT/delta_time"][:] = delta[..., ::-1]
    with pytest.raises(InputFileError, match="runs backwards"):
        SentinelDataLoader().load_tropomi_no2(path)
