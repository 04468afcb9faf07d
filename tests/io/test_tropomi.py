"""TROPOMI L2 reader and QA filter, on files written by the package's own L2 writer."""

from __future__ import annotations

import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from numpy.typing import NDArray

from no2fusion.errors import InputFileError, NoDataError
from no2fusion.io import tropomi
from no2fusion.io.tropomi import SentinelDataLoader, parse_file_name
from no2fusion.synth.writers import L2Swath, write_tropomi_l2

T0 = np.datetime64("2023-06-01T11:58:03.120", "ms")


def make_swath(
    n_scan: int = 40,
    n_ground: int = 12,
    lat: tuple[float, float] = (40.0, 48.0),
    lon: tuple[float, float] = (0.0, 6.0),
    no2: float = 3.0e-5,
    qa: float = 0.9,
    orbit: int = 28901,
    processor_version: str = "2.4.0",
) -> L2Swath:
    """A regular swath: scanline i covers lat band i, ground pixel j lon band j; corners
    counter-clockwise from south-west."""
    lat_e = np.linspace(*lat, n_scan + 1)
    lon_e = np.linspace(*lon, n_ground + 1)
    la, lo = np.meshgrid(lat_e, lon_e, indexing="ij")  # (n_scan+1, n_ground+1)
    lat_b = np.stack([la[:-1, :-1], la[:-1, 1:], la[1:, 1:], la[1:, :-1]], -1)
    lon_b = np.stack([lo[:-1, :-1], lo[:-1, 1:], lo[1:, 1:], lo[1:, :-1]], -1)
    shape = (n_scan, n_ground)
    return L2Swath(
        latitude=lat_b.mean(-1).astype(np.float32),
        longitude=lon_b.mean(-1).astype(np.float32),
        latitude_bounds=lat_b.astype(np.float32),
        longitude_bounds=lon_b.astype(np.float32),
        no2=np.full(shape, no2, np.float32),
        no2_precision=np.full(shape, no2 / 10, np.float32),
        qa_value=np.full(shape, qa),
        scanline_time=T0 + np.arange(n_scan) * np.timedelta64(840, "ms"),
        orbit=orbit,
        processor_version=processor_version,
    )


def test_values_units_and_fill_are_decoded(tmp_path: Path) -> None:
    swath = make_swath()
    swath.no2[3, 4] = np.nan  # written as the 9.96921e36 fill
    swath.no2[5, 6] = 1.25e-4
    path = write_tropomi_l2(swath, tmp_path)
    ds = SentinelDataLoader().load_tropomi_no2(path)
    assert dict(ds.sizes) == {"scanline": 40, "ground_pixel": 12, "corner": 4}
    assert ds["no2"].attrs["units"] == "umol m-2"
    assert np.isnan(ds["no2"].values[3, 4])
    assert ds["no2"].values[5, 6] == pytest.approx(125.0, rel=1e-6)  # 1.25e-4 mol m-2
    assert ds["no2"].values[0, 0] == pytest.approx(30.0, rel=1e-6)
    assert ds["no2_precision"].values[0, 0] == pytest.approx(3.0, rel=1e-6)
    assert ds["qa_value"].values[0, 0] == pytest.approx(0.9, abs=1e-6)
    np.testing.assert_array_equal(ds["latitude_bounds"].values, swath.latitude_bounds)
    np.testing.assert_array_equal(ds["longitude"].values, swath.longitude)
    assert (ds["source_file"].values == str(path)).all()


def test_time_is_time_plus_delta_time_decoded_from_units(tmp_path: Path) -> None:
    swath = make_swath()
    path = write_tropomi_l2(swath, tmp_path)
    ds = SentinelDataLoader().load_tropomi_no2(path)
    assert ds["time"].dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(ds["time"].values, swath.scanline_time.astype("datetime64[ns]"))
    # re-encode delta_time in seconds (a float unit, another epoch text): same instants
    with netCDF4.Dataset(path, "a") as root:
        product = root["PRODUCT"]
        product.renameVariable("delta_time", "delta_time_ms")
        delta = product.createVariable("delta_time", "f8", ("time", "scanline"))
        delta.units = "seconds since 2023-06-01 00:00:00"
        delta[:] = product["delta_time_ms"][:] / 1000.0
    again = SentinelDataLoader().load_tropomi_no2(path)
    np.testing.assert_array_equal(again["time"].values, ds["time"].values)


def test_bad_time_units_name_the_file(tmp_path: Path) -> None:
    path = write_tropomi_l2(make_swath(), tmp_path)
    with netCDF4.Dataset(path, "a") as root:
        root["PRODUCT"]["delta_time"].units = "fortnights after launch"
    with pytest.raises(InputFileError, match="delta_time units") as err:
        SentinelDataLoader().load_tropomi_no2(path)
    assert str(path) in str(err.value)


def test_qa_raw_75_is_rejected_and_76_kept(tmp_path: Path) -> None:
    swath = make_swath(n_scan=4, n_ground=5)
    swath.qa_value[0, :] = 0.75  # raw 75: fails "> 0.75"
    swath.qa_value[1, :] = 0.76  # raw 76: passes
    swath.qa_value[2, 0] = np.nan  # written as raw 0
    swath.no2[3, 1] = np.nan  # passes qa, is fill
    swath.latitude_bounds[3, 2, 1] = np.nan  # passes qa, NaN corner
    path = write_tropomi_l2(swath, tmp_path)
    loader = SentinelDataLoader(qa_threshold=0.75)
    kept = loader.apply_filtering(loader.load_tropomi_no2(path))
    assert kept.attrs["pixels_total"] == 20
    assert kept.attrs["rejected_qa"] == 6
    assert kept.attrs["rejected_fill"] == 1
    assert kept.attrs["rejected_nan_corners"] == 1
    assert kept.attrs["kept"] == 12 == kept.sizes["pixel"]
    assert kept["latitude_bounds"].dims == ("pixel", "corner")
    assert 0 not in kept["scanline"].values  # the qa-75 row is gone, the qa-76 row is kept
    assert (kept["scanline"].values == 1).sum() == 5
    np.testing.assert_allclose(kept["no2"].values, 30.0, rtol=1e-6)
    # each kept pixel keeps its own corners and its scanline's time
    row, col = kept["scanline"].values, kept["ground_pixel"].values
    np.testing.assert_array_equal(kept["latitude_bounds"].values, swath.latitude_bounds[row, col])
    np.testing.assert_array_equal(kept["time"].values, swath.scanline_time[row].astype("M8[ns]"))
    # the lower threshold keeps the qa-75 row too
    low = SentinelDataLoader(qa_threshold=0.5)
    assert low.apply_filtering(low.load_tropomi_no2(path)).attrs["kept"] == 17


def test_qa_mask_on_the_raw_integer_scale() -> None:
    qa = np.array([0.74, 0.75, 0.76, 0.5, 0.51, np.nan], dtype=np.float32)
    assert tropomi.qa_mask(qa, 0.75).tolist() == [False, False, True, False, False, False]
    assert tropomi.qa_mask(qa, 0.5).tolist() == [True, True, True, False, True, False]


@pytest.mark.parametrize(
    ("threshold", "first_kept_raw"),
    [(0.735, 74), (0.745, 75), (0.755, 76), (0.7, 71), (0.29, 30), (0.0, 1), (0.999, 100)],
)
def test_qa_threshold_between_raw_steps_keeps_exactly_the_values_above_it(
    threshold: float, first_kept_raw: int
) -> None:
    """``qa_value > threshold`` for a threshold that is not a multiple of 0.01: e.g. 0.735
    keeps raw 74 (0.74 > 0.735) and rejects raw 73; rounding the threshold to the raw scale
    (74 by round-half-even) would reject raw 74 as well."""
    raw = np.arange(101)
    qa = (raw * np.float32(0.01)).astype(np.float32)  # decoded as the reader does
    kept = tropomi.qa_mask(qa, threshold)
    assert raw[kept].tolist() == list(range(first_kept_raw, 101))


def test_all_pixels_failing_qa_is_a_clear_error(tmp_path: Path) -> None:
    path = write_tropomi_l2(make_swath(qa=0.4), tmp_path)
    loader = SentinelDataLoader()
    data = loader.load_tropomi_no2(path)
    with pytest.raises(NoDataError, match="no pixel passes the QA filter") as err:
        loader.apply_filtering(data)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("version", "collection", "code"), [("1.3.2", 1, "010302"), ("2.4.0", 3, "020400")]
)
def test_file_name_fields(tmp_path: Path, version: str, collection: int, code: str) -> None:
    path = write_tropomi_l2(make_swath(processor_version=version, orbit=1234), tmp_path)
    assert f"_01234_{collection:02d}_{code}_" in path.name
    attrs = SentinelDataLoader().load_tropomi_no2(path).attrs
    assert attrs["stream"] == "OFFL"
    assert attrs["orbit"] == 1234
    assert attrs["collection"] == collection
    assert attrs["processor_version"] == version
    assert attrs["start"] == "2023-06-01T11:38:03Z"  # the writer's orbit start, 20 min earlier
    assert attrs["production_time"] == "2023-06-03T03:14:05Z"
    # a renamed file: the fields come from the global ``id`` attribute instead
    renamed = tmp_path / "granule.nc"
    shutil.copy(path, renamed)
    assert SentinelDataLoader().load_tropomi_no2(renamed).attrs["orbit"] == 1234


def test_parse_formats_example_name() -> None:
    name = "S5P_OFFL_L2__NO2____20200303T013547_20200303T031717_12367_01_010302_20200306T053815.nc"
    fields = parse_file_name(name)
    assert fields == {
        "stream": "OFFL",
        "product_type": "L2__NO2___",
        "start": "2020-03-03T01:35:47Z",
        "end": "2020-03-03T03:17:17Z",
        "orbit": 12367,
        "collection": 1,
        "processor_version": "1.3.2",
        "production_time": "2020-03-06T05:38:15Z",
    }
    assert parse_file_name("S5P_OFFL_L2__CO_____20200303T013547.nc") is None


def test_bbox_reads_only_the_scanlines_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    swath = make_swath(n_scan=40, lat=(40.0, 48.0))  # 0.2 deg per scanline
    path = write_tropomi_l2(swath, tmp_path)
    reads: list[tuple[str, slice]] = []
    original = tropomi._L2File.read

    def spy(self: tropomi._L2File, name: str, rows: slice) -> NDArray:
        reads.append((name, rows))
        return original(self, name, rows)

    monkeypatch.setattr(tropomi._L2File, "read", spy)
    bbox = {"lat_min": 44.1, "lat_max": 44.5, "lon_min": 5.5, "lon_max": 20.0}
    ds = SentinelDataLoader().load_tropomi_no2(path, bbox=bbox)
    # scanlines 20 (44.0-44.2), 21, 22 (44.4-44.6) touch 44.1..44.5
    assert ds["scanline"].values.tolist() == [20, 21, 22]
    np.testing.assert_array_equal(ds["latitude_bounds"].values, swath.latitude_bounds[20:23])
    no2_reads = [rows for name, rows in reads if name == "no2"]
    assert no2_reads == [slice(20, 23)]
    # the corner bounds are read once each, only for the candidate rows near the box (centre
    # within two footprints: 2 x 0.2 deg = 2 scanlines either side), never in full
    for name in ("latitude_bounds", "longitude_bounds"):
        (bounds_rows,) = [rows for n, rows in reads if n == name]
        assert 18 <= bounds_rows.start <= 20 and 23 <= bounds_rows.stop <= 25


def _reference_rows(swath: L2Swath, bbox: dict[str, float]) -> list[int]:
    """Brute force over every pixel's corners: scanlines with a pixel touching ``bbox``
    (corner longitudes unwrapped to their first corner, tried at -360/0/+360)."""
    lat_b = swath.latitude_bounds.astype(np.float64)
    lon_b = swath.longitude_bounds.astype(np.float64)
    lat_hit = (np.nanmax(lat_b, -1) > bbox["lat_min"]) & (np.nanmin(lat_b, -1) < bbox["lat_max"])
    d = lon_b - lon_b[..., :1]
    lon_b = np.where(d > 180, lon_b - 360, np.where(d < -180, lon_b + 360, lon_b))
    lo, hi = np.nanmin(lon_b, -1), np.nanmax(lon_b, -1)
    lon_hit = np.zeros(lo.shape, bool)
    for shift in (-360.0, 0.0, 360.0):
        lon_hit |= (hi + shift > bbox["lon_min"]) & (lo + shift < bbox["lon_max"])
    return np.flatnonzero((lat_hit & lon_hit).any(-1)).tolist()


@pytest.mark.parametrize("seed", range(6))
def test_bbox_rows_match_brute_force_on_tilted_swaths(tmp_path: Path, seed: int) -> None:
    """The centre-first row search finds exactly the scanlines a full corner scan finds, on
    swaths tilted like an orbit (latitude also varying across track), wrapped across the
    antimeridian for some seeds, for boxes at and beyond the swath's edges."""
    rng = np.random.default_rng(seed)
    swath = make_swath(n_scan=60, n_ground=30, lat=(40.0, 52.0), lon=(170.0, 185.0))
    tilt = rng.uniform(-0.05, 0.05)  # deg of latitude per ground pixel
    swath.latitude_bounds += (tilt * (swath.longitude_bounds - 170.0) / 0.5).astype(np.float32)
    swath.latitude += (tilt * (swath.longitude - 170.0) / 0.5).astype(np.float32)
    swath.longitude_bounds[swath.longitude_bounds > 180] -= 360
    swath.longitude[swath.longitude > 180] -= 360
    path = write_tropomi_l2(swath, tmp_path)
    loader = SentinelDataLoader()
    for _ in range(8):
        lat0 = rng.uniform(38.0, 53.0)
        lon0 = rng.uniform(-180.0, 179.0) if rng.random() < 0.3 else rng.uniform(168.0, 179.0)
        bbox = {
            "lat_min": lat0,
            "lat_max": lat0 + rng.uniform(0.05, 2.0),
            "lon_min": lon0,
            "lon_max": min(180.0, lon0 + rng.uniform(0.05, 3.0)),
        }
        expected = _reference_rows(swath, bbox)
        if not expected:
            with pytest.raises(NoDataError):
                loader.load_tropomi_no2(path, bbox=bbox)
            continue
        ds = loader.load_tropomi_no2(path, bbox=bbox)
        assert ds["scanline"].values.tolist() == list(range(expected[0], expected[-1] + 1))
        np.testing.assert_array_equal(
            ds["longitude_bounds"].values, swath.longitude_bounds[expected[0] : expected[-1] + 1]
        )


def test_bbox_across_the_antimeridian(tmp_path: Path) -> None:
    # ground pixels 178..182 E written in -180..180: pixel 2 has corners 180 and -179
    swath = make_swath(n_scan=10, n_ground=4, lat=(0.0, 2.0), lon=(178.0, 182.0))
    swath.longitude_bounds[swath.longitude_bounds > 180] -= 360
    swath.longitude[swath.longitude > 180] -= 360
    path = write_tropomi_l2(swath, tmp_path)
    loader = SentinelDataLoader()
    west = loader.load_tropomi_no2(
        path, bbox={"lat_min": 0.5, "lat_max": 1.0, "lon_min": -180, "lon_max": -179.5}
    )
    assert west["scanline"].values.tolist() == [2, 3, 4]
    with pytest.raises(NoDataError, match="touches the domain"):
        loader.load_tropomi_no2(
            path, bbox={"lat_min": 0, "lat_max": 1, "lon_min": -178, "lon_max": 170}
        )


def test_swath_missing_the_domain(tmp_path: Path) -> None:
    path = write_tropomi_l2(make_swath(lat=(-30.0, -20.0)), tmp_path)
    with pytest.raises(NoDataError, match="touches the domain") as err:
        SentinelDataLoader().load_tropomi_no2(
            path, bbox={"lat_min": 35, "lat_max": 55, "lon_min": -15, "lon_max": 25}
        )
    assert str(path) in str(err.value)


def test_several_files_concatenate_and_skip_those_outside(tmp_path: Path) -> None:
    a = write_tropomi_l2(make_swath(orbit=1, n_scan=10), tmp_path)
    b = write_tropomi_l2(make_swath(orbit=2, n_scan=6), tmp_path)
    c = write_tropomi_l2(make_swath(orbit=3, lat=(-10.0, -5.0)), tmp_path)
    loader = SentinelDataLoader()
    both = loader.load_tropomi_no2(str(tmp_path / "S5P_OFFL_L2__NO2____*.nc"))
    assert both.sizes["scanline"] == 10 + 6 + 40
    assert set(both["source_file"].values) == {str(a), str(b), str(c)}
    boxed = loader.load_tropomi_no2(
        [a, b, c], bbox={"lat_min": 41, "lat_max": 42, "lon_min": 0, "lon_max": 1}
    )
    assert boxed.attrs["skipped_files"] == f'["{c}"]'
    kept = loader.apply_filtering(boxed)
    assert set(kept["source_file"].values) == {str(a), str(b)}


def test_header_only_file(tmp_path: Path) -> None:
    path = write_tropomi_l2(make_swath(), tmp_path, header_only=True)
    with pytest.raises(InputFileError, match="header-only") as err:
        SentinelDataLoader().load_tropomi_no2(path)
    assert str(path) in str(err.value)


def test_truncated_file(tmp_path: Path) -> None:
    path = write_tropomi_l2(make_swath(n_scan=200, n_ground=50), tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError) as err:
        SentinelDataLoader().load_tropomi_no2(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_non_netcdf_file_named_nc(tmp_path: Path) -> None:
    path = (
        tmp_path
        / "S5P_OFFL_L2__NO2____20200303T013547_20200303T031717_12367_01_010302_20200306T053815.nc"
    )
    path.write_text("<html>502 Bad Gateway</html>\n")
    with pytest.raises(InputFileError, match="not a readable NetCDF") as err:
        SentinelDataLoader().load_tropomi_no2(path)
    assert str(path) in str(err.value)


def test_missing_file_and_empty_glob(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="file not found"):
        SentinelDataLoader().load_tropomi_no2(tmp_path / "nope.nc")
    with pytest.raises(InputFileError, match="no file matches"):
        SentinelDataLoader().load_tropomi_no2(str(tmp_path / "*.nc"))


def test_missing_variable(tmp_path: Path) -> None:
    path = write_tropomi_l2(make_swath(), tmp_path)
    with netCDF4.Dataset(path, "a") as root:
        root["PRODUCT"].renameVariable("qa_value", "qa_value_renamed")
    with pytest.raises(InputFileError, match="missing variable PRODUCT/qa_value") as err:
        SentinelDataLoader().load_tropomi_no2(path)
    assert str(path) in str(err.value)


def test_wrong_units(tmp_path: Path) -> None:
    path = write_tropomi_l2(make_swath(), tmp_path)
    with netCDF4.Dataset(path, "a") as root:
        root["PRODUCT"]["nitrogendioxide_tropospheric_column"].units = "molec cm-2"
    with pytest.raises(InputFileError, match="units 'molec cm-2', expected 'mol m-2'"):
        SentinelDataLoader().load_tropomi_no2(path)


def test_full_orbit_file(tmp_path: Path) -> None:
    """A full-orbit-sized file (450 x 4172) with constant data reads and filters."""
    swath = make_swath(n_scan=4172, n_ground=450, lat=(-80.0, 80.0), lon=(-10.0, 20.0))
    path = write_tropomi_l2(swath, tmp_path)
    loader = SentinelDataLoader()
    data = loader.load_tropomi_no2(path)
    assert dict(data.sizes) == {"scanline": 4172, "ground_pixel": 450, "corner": 4}
    kept = loader.apply_filtering(data)
    assert kept.attrs["kept"] == 450 * 4172
    boxed = loader.load_tropomi_no2(
        path, bbox={"lat_min": 35, "lat_max": 55, "lon_min": -15, "lon_max": 25}
    )
    lat_b = swath.latitude_bounds
    rows = np.flatnonzero(((lat_b.max(-1) > 35) & (lat_b.min(-1) < 55)).any(-1))
    assert boxed["scanline"].values.tolist() == list(range(rows[0], rows[-1] + 1))
    assert 520 <= rows.size <= 524  # 20 of 160 deg of 4172 scanlines
