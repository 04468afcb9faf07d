"""Conformance of the synth writers with the real products, checked against FORMATS.md.

The expected facts (names, dims, dtypes, attributes, file-name pattern) are written here from
FORMATS.md sections A and C, not imported from the writer.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from no2fusion.synth.writers import L2Swath, write_era5_month, write_tropomi_l2

# FORMATS A.1 (the note's own parsing regex)
NAME_RE = re.compile(
    r"^S5P_(NRTI|OFFL|RPRO|PAL_)_(L2__NO2___)_(\d{8}T\d{6})_(\d{8}T\d{6})_(\d{5})_(\d{2})_(\d{6})_(\d{8}T\d{6})(\.nc)?$"
)


def _swath(n_scan: int = 6, n_pix: int = 5, version: str = "2.4.0") -> L2Swath:
    rng = np.random.default_rng(3)
    lat = (50.0 + 0.05 * np.arange(n_scan))[:, None] + np.zeros((1, n_pix))
    lon = (6.0 + 0.04 * np.arange(n_pix))[None, :] + np.zeros((n_scan, 1))
    dlat, dlon = 0.025, 0.02
    lat_b = np.stack([lat - dlat, lat - dlat, lat + dlat, lat + dlat], axis=-1)
    lon_b = np.stack([lon - dlon, lon + dlon, lon + dlon, lon - dlon], axis=-1)
    no2 = rng.uniform(1e-5, 2e-4, (n_scan, n_pix)).astype(np.float32)
    no2[0, 0] = np.nan
    qa = rng.choice([0.0, 0.48, 0.74, 0.75, 0.76, 0.9, 1.0], size=(n_scan, n_pix))
    times = np.datetime64("2021-03-04T12:30:01.250", "ms") + np.arange(n_scan) * np.timedelta64(
        840, "ms"
    )
    return L2Swath(
        latitude=lat.astype(np.float32),
        longitude=lon.astype(np.float32),
        latitude_bounds=lat_b.astype(np.float32),
        longitude_bounds=lon_b.astype(np.float32),
        no2=no2,
        no2_precision=(no2 * 0.2).astype(np.float32),
        qa_value=qa,
        scanline_time=times,
        orbit=17528,
        processor_version=version,
    )


@pytest.fixture(scope="module")
def l2_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, L2Swath]:
    swath = _swath()
    path = write_tropomi_l2(
        swath, tmp_path_factory.mktemp("l2"), production_time=dt.datetime(2021, 3, 6, 5, 38, 15)
    )
    return path, swath


def test_l2_file_name_follows_the_83_character_convention(l2_file: tuple[Path, L2Swath]) -> None:
    path, _ = l2_file
    match = NAME_RE.match(path.name)
    assert match is not None, path.name
    assert len(path.stem) == 83
    stream, _, start, end, orbit, collection, version, produced = match.groups()[:8]
    assert (stream, orbit, collection, version, produced) == (
        "OFFL",
        "17528",
        "03",
        "020400",
        "20210306T053815",
    )
    # the name spans the whole orbit (~101.5 min) and contains the measurements
    t0, t1 = (dt.datetime.strptime(s, "%Y%m%dT%H%M%S") for s in (start, end))
    assert 100 <= (t1 - t0).total_seconds() / 60 <= 103
    assert t0 <= dt.datetime(2021, 3, 4, 12, 30, 1) <= t1
    with netCDF4.Dataset(path) as ds:
        assert ds.getncattr("id") == path.stem


def test_l2_collection_01_name_for_processor_1_3_2(tmp_path: Path) -> None:
    path = write_tropomi_l2(_swath(version="1.3.2"), tmp_path)
    match = NAME_RE.match(path.name)
    assert match is not None
    assert match.group(6) == "01" and match.group(7) == "010302"
    with netCDF4.Dataset(path) as ds:
        assert ds.getncattr("processor_version") == "1.3.2"


def test_l2_groups_dims_dtypes_attributes(l2_file: tuple[Path, L2Swath]) -> None:
    path, swath = l2_file
    with netCDF4.Dataset(path) as ds:
        assert {"PRODUCT", "METADATA"} <= set(ds.groups)
        for attr in (
            "Conventions",
            "institution",
            "time_reference",
            "time_coverage_start",
            "time_coverage_end",
        ):
            assert isinstance(ds.getncattr(attr), str)
        assert ds.getncattr("orbit") == 17528 and ds.getncattr("orbit").dtype == np.int32
        assert ds.getncattr("processor_version") == "2.4.0"
        assert ds.getncattr("time_reference") == "2021-03-04T00:00:00Z"
        # whole seconds, covering the first and last scanline (12:30:01.250 .. 12:30:05.450)
        assert ds.getncattr("time_coverage_start") == "2021-03-04T12:30:01Z"
        assert ds.getncattr("time_coverage_end") == "2021-03-04T12:30:06Z"
        granule = ds["METADATA/GRANULE_DESCRIPTION"]
        assert granule.getncattr("ProductShortName") == "L2__NO2___"
        assert granule.getncattr("ProcessingMode") == "Offline"

        product = ds["PRODUCT"]
        dims = {name: len(dim) for name, dim in product.dimensions.items()}
        assert (
            dims["time"] == 1
            and dims["scanline"] == 6
            and dims["ground_pixel"] == 5
            and dims["corner"] == 4
        )
        data_dims = ("time", "scanline", "ground_pixel")
        for name in (
            "nitrogendioxide_tropospheric_column",
            "nitrogendioxide_tropospheric_column_precision",
            "latitude",
            "longitude",
            "qa_value",
        ):
            assert product[name].dimensions == data_dims, name
        for name in (
            "nitrogendioxide_tropospheric_column",
            "nitrogendioxide_tropospheric_column_precision",
        ):
            var = product[name]
            assert var.dtype == np.float32
            assert var.getncattr("units") == "mol m-2"
            assert var.getncattr("_FillValue") == np.float32(9.96921e36)
            factor = var.getncattr("multiplication_factor_to_convert_to_molecules_percm2")
            assert factor == pytest.approx(6.02214e19, rel=1e-5)
        assert (
            product["latitude"].dtype == np.float32 and product["latitude"].units == "degrees_north"
        )
        assert product["longitude"].units == "degrees_east"

        qa = product["qa_value"]
        assert qa.dtype == np.uint8
        assert float(qa.getncattr("scale_factor")) == pytest.approx(0.01)
        assert float(qa.getncattr("add_offset")) == 0.0
        qa.set_auto_maskandscale(False)
        raw = np.asarray(qa[0])
        expected = np.rint(swath.qa_value * 100).astype(np.uint8)
        np.testing.assert_array_equal(raw, expected)
        assert raw.max() <= 100

        assert product["time"].dtype == np.int32
        assert product["time"].units == "seconds since 2010-01-01 00:00:00"
        seconds = int(product["time"][0])
        assert dt.datetime(2010, 1, 1) + dt.timedelta(seconds=seconds) == dt.datetime(2021, 3, 4)
        delta = product["delta_time"]
        assert delta.dimensions == ("time", "scanline") and delta.dtype == np.int32
        assert delta.units == "milliseconds since 2021-03-04 00:00:00"
        assert int(delta[0, 0]) == (12 * 3600 + 30 * 60 + 1) * 1000 + 250
        assert product["time_utc"].dimensions == ("time", "scanline")
        assert str(product["time_utc"][0, 1]).startswith("2021-03-04T12:30:02.09")

        geo = ds["PRODUCT/SUPPORT_DATA/GEOLOCATIONS"]
        for name in ("latitude_bounds", "longitude_bounds"):
            assert geo[name].dimensions == ("time", "scanline", "ground_pixel", "corner")
            assert geo[name].dtype == np.float32
        # counter-clockwise corners: positive shoelace area on the lon/lat plane
        x, y = np.asarray(geo["longitude_bounds"][0]), np.asarray(geo["latitude_bounds"][0])
        area = 0.5 * np.sum(x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y, axis=-1)
        assert (area > 0).all()


def test_l2_opens_with_xarray_and_decodes(l2_file: tuple[Path, L2Swath]) -> None:
    path, swath = l2_file
    with xr.open_dataset(path, group="PRODUCT") as product:
        no2 = product["nitrogendioxide_tropospheric_column"].values[0]
        assert np.isnan(no2[0, 0])  # NaN went out as the fill value and comes back as NaN
        np.testing.assert_allclose(no2[1:], swath.no2[1:])
        np.testing.assert_allclose(
            product["qa_value"].values[0], np.rint(swath.qa_value * 100) / 100, atol=1e-6
        )
        np.testing.assert_array_equal(
            product["delta_time"].values[0].astype("datetime64[ms]"), swath.scanline_time
        )
    with xr.open_dataset(path, group="PRODUCT/SUPPORT_DATA/GEOLOCATIONS") as geo:
        np.testing.assert_array_equal(geo["latitude_bounds"].values[0], swath.latitude_bounds)


def test_l2_header_only_has_dimensions_and_no_variables(tmp_path: Path) -> None:
    path = write_tropomi_l2(_swath(), tmp_path, header_only=True)
    with netCDF4.Dataset(path) as ds:
        product = ds["PRODUCT"]
        assert len(product.dimensions["scanline"]) == 6
        assert len(product.variables) == 0
        assert ds.getncattr("orbit") == 17528


def _era5_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(5)
    times = np.arange("2021-02-28T00", "2021-03-02T00", dtype="datetime64[h]")
    lat = np.arange(49.0, 50.01, 0.25)  # ascending on purpose
    lon = np.arange(5.0, 6.51, 0.25)
    shape = (times.size, lat.size, lon.size)
    fields = {
        "u10": rng.normal(0, 5, shape),
        "v10": rng.normal(0, 5, shape),
        "blh": rng.uniform(50, 2500, shape),
        "t2m": rng.uniform(260, 300, shape),
        "d2m": rng.uniform(250, 290, shape),
        "sp": rng.uniform(97000, 103000, shape),
        "tcc": rng.uniform(0, 1, shape),
    }
    return times, lat, lon, fields


def test_era5_current_cds_layout(tmp_path: Path) -> None:
    times, lat, lon, fields = _era5_inputs()
    path = write_era5_month(tmp_path / "era5_single_levels_2021-03.nc", times, lat, lon, fields)
    with netCDF4.Dataset(path) as ds:
        assert ds.data_model == "NETCDF4"
        assert ds.getncattr("Conventions") == "CF-1.7"
        assert set(ds.dimensions) == {"valid_time", "latitude", "longitude"}
        vt = ds["valid_time"]
        assert vt.dtype == np.int64 and vt.units == "seconds since 1970-01-01"
        assert int(vt[0]) == int(np.datetime64("2021-02-28T00:00", "s").astype(np.int64))
        assert ds["latitude"].dtype == np.float64
        assert np.all(np.diff(ds["latitude"][:]) < 0)  # stored north -> south
        assert ds["number"].dtype == np.int64 and ds["number"].dimensions == ()
        assert ds["expver"].dimensions == ("valid_time",)
        units = {
            "u10": "m s**-1",
            "v10": "m s**-1",
            "blh": "m",
            "t2m": "K",
            "d2m": "K",
            "sp": "Pa",
            "tcc": "(0 - 1)",
        }
        for name, unit in units.items():
            var = ds[name]
            assert var.dtype == np.float32 and var.dimensions == (
                "valid_time",
                "latitude",
                "longitude",
            )
            assert var.units == unit
            assert np.isnan(var.getncattr("_FillValue"))
            assert "scale_factor" not in var.ncattrs()
            assert any(attr.startswith("GRIB_") for attr in var.ncattrs())
            assert var.coordinates == "number valid_time latitude longitude expver"
    with xr.open_dataset(path) as ds:
        np.testing.assert_allclose(ds["t2m"].values[:, ::-1], fields["t2m"].astype(np.float32))
        assert ds["valid_time"].values[0] == np.datetime64("2021-02-28T00:00")


def test_era5_legacy_layout_decodes_to_the_same_values(tmp_path: Path) -> None:
    times, lat, lon, fields = _era5_inputs()
    current = write_era5_month(tmp_path / "new.nc", times, lat, lon, fields)
    legacy = write_era5_month(tmp_path / "old.nc", times, lat, lon, fields, legacy=True)
    with netCDF4.Dataset(legacy) as ds:
        assert ds["time"].units.startswith("hours since 1900-01-01")
        assert ds["t2m"].dtype == np.int16
        assert {"scale_factor", "add_offset"} <= set(ds["t2m"].ncattrs())
    with xr.open_dataset(current) as new, xr.open_dataset(legacy) as old:
        np.testing.assert_array_equal(new["valid_time"].values, old["time"].values)
        np.testing.assert_allclose(new["latitude"].values, old["latitude"].values)
        for name in fields:
            span = float(fields[name].max() - fields[name].min())
            # int16 packing: error at most half a packing step (span / 65532)
            np.testing.assert_allclose(
                old[name].values,
                new[name].values,
                atol=span / 65532 * 0.5 + float(np.abs(fields[name]).max()) * 2e-7,
            )
