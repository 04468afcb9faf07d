"""Writers of the simulated world's sources in the real file formats.

Sits at the very left of the flow (``synth`` -> files -> ``io``): everything the pipeline reads
in the demo goes through these functions, so the files follow the real products exactly
(``/work/shared/FORMATS.md`` A for Sentinel-5P TROPOMI L2 NO2, C for ERA5 single levels from the
CDS). Arrays come in the products' own units (mol m-2, m s**-1, K, Pa, (0 - 1)).

Both writers write through ``files.atomic_path`` (a temporary name in the target folder, renamed
at the end), so an interrupted run never leaves a half-written file under the final name.

Why this module is long (about 690 lines, above the project's ~450): it is the two products'
layouts written out variable by variable, in the order FORMATS.md lists them, with their
attributes, fill values and packing. That is data more than logic; kept in one place it can be
checked against FORMATS.md line by line (``tests/synth/test_formats.py``), and the readers in
``io/`` and their tests import both writers from here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import netCDF4
import numpy as np
from numpy.typing import NDArray

from no2fusion.files import atomic_path

# --- TROPOMI L2 constants (FORMATS.md A) -------------------------------------------------------
L2_FILL_FLOAT = np.float32(9.96921e36)  # netCDF default float fill, used by the product
QA_FILL = np.uint8(255)
PRODUCT_TYPE = "L2__NO2___"  # exactly 10 characters
TIME_EPOCH = dt.datetime(2010, 1, 1)  # PRODUCT/time: seconds since 2010-01-01
ORBIT_SECONDS = 6090.0  # one orbit, ~101.5 min: the file name spans the whole orbit
MOLEC_FACTOR = np.float32(6.02214e19)  # mol m-2 -> molecules cm-2 (column)
MOLEC_FACTOR_PRECISION = np.float32(6.022141e19)  # the precision variable's own factor
PROCESSING_MODES = {
    "OFFL": "Offline",
    "NRTI": "Near-realtime",
    "RPRO": "Reprocessing",
    "PAL_": "PAL",
}
EXTRA_PRODUCT_DIMS = {"layer": 34, "vertices": 2, "polynomial_exponents": 6}


# --- ERA5 constants (FORMATS.md C) --------------------------------------------------------------
class Era5Variable(NamedTuple):
    """GRIB paramId, GRIB name, units as ECMWF writes them, CF standard_name."""

    param_id: int
    name: str
    units: str
    standard_name: str


ERA5_VARIABLES: dict[str, Era5Variable] = {
    "u10": Era5Variable(165, "10 metre U wind component", "m s**-1", "unknown"),
    "v10": Era5Variable(166, "10 metre V wind component", "m s**-1", "unknown"),
    "blh": Era5Variable(159, "Boundary layer height", "m", "unknown"),
    "t2m": Era5Variable(167, "2 metre temperature", "K", "unknown"),
    "d2m": Era5Variable(168, "2 metre dewpoint temperature", "K", "unknown"),
    "sp": Era5Variable(134, "Surface pressure", "Pa", "surface_air_pressure"),
    "tcc": Era5Variable(164, "Total cloud cover", "(0 - 1)", "cloud_area_fraction"),
}
LEGACY_FILL = np.int16(-32767)


@dataclass
class L2Swath:
    """One orbit's pixels, in the product's own units.

    Attributes:
        latitude, longitude: (scanline, ground_pixel) float32 degrees, pixel centre.
        latitude_bounds, longitude_bounds: (scanline, ground_pixel, 4) float32 degrees,
            corners counter-clockwise from the south-western one.
        no2, no2_precision: (scanline, ground_pixel) float32 mol m-2; NaN is written as _FillValue.
        qa_value: (scanline, ground_pixel) float in 0..1; stored as raw uint8 0..100 (scale 0.01);
            a non-finite qa is written as 0 ("no data").
        scanline_time: (scanline,) datetime64[ms] UTC.
        orbit: absolute orbit number (5 digits in the file name).
        processor_version: "2.4.0" (collection 03) by default; "1.3.2" gives collection 01.
        stream: processing stream, one of OFFL, NRTI, RPRO, PAL_.
    """

    latitude: NDArray[np.float32]
    longitude: NDArray[np.float32]
    latitude_bounds: NDArray[np.float32]
    longitude_bounds: NDArray[np.float32]
    no2: NDArray[np.float32]
    no2_precision: NDArray[np.float32]
    qa_value: NDArray[np.floating]
    scanline_time: NDArray[np.datetime64]
    orbit: int
    processor_version: str = "2.4.0"
    stream: str = "OFFL"


def _collection(processor_version: str) -> int:
    """Collection number from the processor version (FORMATS A.2)."""
    major, minor, _patch = (int(part) for part in processor_version.split("."))
    if major < 2:
        return 1
    if (major, minor) < (2, 4):
        return 2
    return 3


def _version_code(processor_version: str) -> str:
    """'2.4.0' -> '020400' (MMmmpp)."""
    return "".join(f"{int(part):02d}" for part in processor_version.split("."))


def _to_datetime(value: np.datetime64) -> dt.datetime:
    """A datetime64 -> naive UTC ``datetime`` with millisecond precision."""
    ms = int(value.astype("datetime64[ms]").astype(np.int64))
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S")


def _iso(moment: dt.datetime, round_up: bool = False) -> str:
    """ISO-8601 in whole seconds with Z, as in the product's attributes (FORMATS A.1:
    '2020-03-03T01:57:22Z'); ``round_up`` rounds a fraction of a second up (coverage end)."""
    whole = moment.replace(microsecond=0)
    if round_up and moment.microsecond:
        whole += dt.timedelta(seconds=1)
    return whole.strftime("%Y-%m-%dT%H:%M:%SZ")


def l2_file_name(swath: L2Swath, production_time: dt.datetime) -> str:
    """The official 83-character name (+ '.nc') for ``swath`` (FORMATS A.1).

    The start/end in the name span the whole orbit (~101.5 min, starting 20 min before the first
    written scanline), not the measurements, like the real product.
    """
    if swath.stream not in PROCESSING_MODES:
        raise ValueError(f"unknown processing stream {swath.stream!r}")
    first = _to_datetime(swath.scanline_time[0])
    orbit_start = first - dt.timedelta(minutes=20)
    orbit_end = orbit_start + dt.timedelta(seconds=ORBIT_SECONDS)
    name = (
        f"S5P_{swath.stream}_{PRODUCT_TYPE}_{_stamp(orbit_start)}_{_stamp(orbit_end)}_"
        f"{swath.orbit:05d}_{_collection(swath.processor_version):02d}_"
        f"{_version_code(swath.processor_version)}_{_stamp(production_time)}"
    )
    assert len(name) == 83, name
    return name + ".nc"


def _check_swath(swath: L2Swath) -> tuple[int, int]:
    shape = swath.latitude.shape
    if len(shape) != 2:
        raise ValueError(f"latitude must be (scanline, ground_pixel), got {shape}")
    for name in ("longitude", "no2", "no2_precision", "qa_value"):
        if getattr(swath, name).shape != shape:
            raise ValueError(f"{name} has shape {getattr(swath, name).shape}, expected {shape}")
    for name in ("latitude_bounds", "longitude_bounds"):
        if getattr(swath, name).shape != (*shape, 4):
            raise ValueError(f"{name} must be {(*shape, 4)}, got {getattr(swath, name).shape}")
    if swath.scanline_time.shape != (shape[0],):
        raise ValueError(f"scanline_time must be ({shape[0]},), got {swath.scanline_time.shape}")
    return shape[0], shape[1]


def _write_metadata(
    root: netCDF4.Dataset, swath: L2Swath, nadir_lon: float, times: tuple[str, str]
) -> None:
    meta = root.createGroup("METADATA")
    granule = meta.createGroup("GRANULE_DESCRIPTION")
    granule.setncattr("GranuleStart", times[0])
    granule.setncattr("GranuleEnd", times[1])
    granule.setncattr("InstrumentName", "TROPOMI")
    granule.setncattr("MissionName", "Sentinel-5 precursor")
    granule.setncattr("MissionShortName", "S5P")
    granule.setncattr("ProcessingMode", PROCESSING_MODES[swath.stream])
    granule.setncattr("ProcessorVersion", swath.processor_version)
    granule.setncattr("ProductFormatVersion", np.int32(10100))
    granule.setncattr("ProductShortName", PRODUCT_TYPE)
    granule.setncattr("LongitudeOfDaysideNadirEquatorCrossing", np.float32(nadir_lon))
    qa_stats = meta.createGroup("QA_STATISTICS")
    n_pixels = int(swath.no2.size)
    n_ok = int(np.isfinite(swath.no2).sum())
    qa_stats.setncattr("number_of_groundpixels", np.int32(n_pixels))
    qa_stats.setncattr("number_of_successfully_processed_pixels", np.int32(n_ok))
    qa_stats.setncattr("number_of_failed_retrievals", np.int32(n_pixels - n_ok))
    meta.createGroup("ALGORITHM_SETTINGS")


def write_tropomi_l2(
    swath: L2Swath,
    out_dir: Path,
    *,
    production_time: dt.datetime | None = None,
    header_only: bool = False,
) -> Path:
    """Write one Sentinel-5P L2 NO2 file in the official layout; return its path.

    The file name follows the 83-character convention; ``id`` is the name without ``.nc``.
    ``production_time`` (naive UTC) defaults to 2 days 3 h after the first scanline, so the
    name is deterministic. ``header_only=True`` writes the global attributes, METADATA and the
    PRODUCT dimensions but no PRODUCT variables (such header files exist; readers must reject
    them clearly).
    """
    n_scan, n_pixel = _check_swath(swath)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    times = [_to_datetime(t) for t in swath.scanline_time]
    day = dt.datetime(times[0].year, times[0].month, times[0].day)
    if production_time is None:
        production_time = day + dt.timedelta(days=2, hours=3, minutes=14, seconds=5)
    name = l2_file_name(swath, production_time)
    path = out_dir / name
    coverage = (_iso(times[0]), _iso(times[-1], round_up=True))
    mid = n_pixel // 2
    # equator crossing: extrapolate the central ground pixel's track (straight in lat/lon,
    # ignoring Earth rotation and curvature: approximate, like the rest of this metadata)
    track_lat = swath.latitude[:, mid].astype(np.float64)
    track_lon = swath.longitude[:, mid].astype(np.float64)
    span = float(track_lat[-1] - track_lat[0])
    slope = float(track_lon[-1] - track_lon[0]) / span if abs(span) > 1e-9 else 0.0
    nadir_lon = float(track_lon.mean() - track_lat.mean() * slope)
    nadir_lon = (nadir_lon + 180.0) % 360.0 - 180.0
    collection = _collection(swath.processor_version)
    with atomic_path(path) as tmp, netCDF4.Dataset(tmp, "w", format="NETCDF4") as root:
        _write_globals(root, swath, name[:-3], day, times, coverage, production_time, collection)
        _write_metadata(root, swath, nadir_lon, coverage)
        product = root.createGroup("PRODUCT")
        product.createDimension("time", 1)
        product.createDimension("scanline", n_scan)
        product.createDimension("ground_pixel", n_pixel)
        product.createDimension("corner", 4)
        product.createDimension("intensity_offset_polynomial_exponents", 1)
        for dim, size in EXTRA_PRODUCT_DIMS.items():
            product.createDimension(dim, size)
        if not header_only:
            _write_product(product, swath, day, times)
    return path


def _write_globals(
    root: netCDF4.Dataset,
    swath: L2Swath,
    file_id: str,
    day: dt.datetime,
    times: list[dt.datetime],
    coverage: tuple[str, str],
    production_time: dt.datetime,
    collection: int,
) -> None:
    duration = (times[-1] - times[0]).total_seconds()
    since_1970 = int((day - dt.datetime(1970, 1, 1)).total_seconds())
    lon_b = swath.longitude_bounds
    lat_b = swath.latitude_bounds
    attrs: dict[str, object] = {
        "Conventions": "CF-1.7",
        "institution": "KNMI",
        "source": "Sentinel 5 precursor, TROPOMI, space-borne remote sensing, L2",
        "summary": "TROPOMI/S5P NO2 1-Orbit L2 Swath 5.5x3.5km (simulated by no2fusion.synth)",
        "title": "TROPOMI/S5P NO2 1-Orbit L2 Swath 5.5x3.5km",
        "references": "https://www.tropomi.eu/data-products/nitrogen-dioxide",
        "history": "simulated world written by no2fusion.synth in the L2 NO2 layout",
        "id": file_id,
        "naming_authority": "nl.knmi",
        "cdm_data_type": "Swath",
        "time_reference": day.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "time_reference_days_since_1950": np.int32((day - dt.datetime(1950, 1, 1)).days),
        "time_reference_julian_day": np.float64(since_1970 / 86400.0 + 2440587.5),
        "time_reference_seconds_since_1970": np.int64(since_1970),
        "time_coverage_start": coverage[0],
        "time_coverage_end": coverage[1],
        "time_coverage_duration": f"PT{duration:.3f}S",
        "time_coverage_resolution": "PT0.840S",
        "orbit": np.int32(swath.orbit),
        "processor_version": swath.processor_version,
        "algorithm_version": swath.processor_version if collection > 1 else "1.3.0",
        "product_version": f"{collection}.0.0" if collection > 1 else "1.1.0",
        "processing_status": "Nominal",
        "spatial_resolution": "5.5x3.5km2",
        "geospatial_lat_min": np.float32(np.nanmin(lat_b)),
        "geospatial_lat_max": np.float32(np.nanmax(lat_b)),
        "geospatial_lon_min": np.float32(np.nanmin(lon_b)),
        "geospatial_lon_max": np.float32(np.nanmax(lon_b)),
        "date_created": production_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "date_modified": production_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Status_MET_2D": "Nominal",
        "Status_NISE__": "Nominal",
        "Status_CTMFCT": "Nominal",
    }
    for key, value in attrs.items():
        root.setncattr(key, value)


def _write_product(
    product: netCDF4.Group, swath: L2Swath, day: dt.datetime, times: list[dt.datetime]
) -> None:
    n_scan, n_pixel = swath.latitude.shape

    def coord(
        name: str, dims: tuple[str, ...], dtype: str, values: NDArray[Any], **attrs: object
    ) -> None:
        var = product.createVariable(name, dtype, dims)
        var.setncatts(attrs)
        var[:] = values

    coord(
        "scanline",
        ("scanline",),
        "i4",
        np.arange(n_scan),
        units="1",
        long_name="along-track dimension index",
    )
    coord(
        "ground_pixel",
        ("ground_pixel",),
        "i4",
        np.arange(n_pixel),
        units="1",
        long_name="across-track dimension index",
        comment="This coordinate variable defines the indices across track, from west to east; "
        "index starts at 0",
    )
    coord(
        "corner",
        ("corner",),
        "i4",
        np.arange(4),
        units="1",
        long_name="pixel corner index",
        comment="This coordinate variable defines the indices for the pixel corners; "
        "index starts at 0 (counter-clockwise, starting from south-western corner of the pixel "
        "in ascending part of the orbit)",
    )
    ref_seconds = int((day - TIME_EPOCH).total_seconds())
    coord(
        "time",
        ("time",),
        "i4",
        np.array([ref_seconds]),
        units="seconds since 2010-01-01 00:00:00",
        standard_name="time",
        axis="T",
        long_name="reference time for the measurements",
    )
    delta_ms = np.array([(t - day) // dt.timedelta(milliseconds=1) for t in times], dtype=np.int64)
    delta = product.createVariable(
        "delta_time", "i4", ("time", "scanline"), fill_value=np.int32(-2147483647)
    )
    delta.setncatts(
        {
            "long_name": "offset from reference start time of measurement",
            "units": f"milliseconds since {day:%Y-%m-%d} 00:00:00",
        }
    )
    delta[:] = delta_ms.astype(np.int32)[None, :]
    time_utc = product.createVariable("time_utc", str, ("time", "scanline"))
    time_utc.setncattr("long_name", "Time of observation as ISO 8601 date-time string")
    time_utc[:] = np.array([[t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for t in times]], dtype=object)

    dims2 = ("time", "scanline", "ground_pixel")
    for name, values, units, std, lo, hi in (
        ("latitude", swath.latitude, "degrees_north", "latitude", -90.0, 90.0),
        ("longitude", swath.longitude, "degrees_east", "longitude", -180.0, 180.0),
    ):
        var = product.createVariable(
            name, "f4", dims2, fill_value=L2_FILL_FLOAT, zlib=True, complevel=1
        )
        var.setncatts(
            {
                "long_name": f"pixel center {name}",
                "units": units,
                "standard_name": std,
                "valid_min": np.float32(lo),
                "valid_max": np.float32(hi),
                "bounds": f"/PRODUCT/SUPPORT_DATA/GEOLOCATIONS/{name}_bounds",
            }
        )
        var[:] = np.asarray(values, dtype=np.float32)[None]

    for name, values, factor, long_name in (
        (
            "nitrogendioxide_tropospheric_column",
            swath.no2,
            MOLEC_FACTOR,
            "Tropospheric vertical column of nitrogen dioxide",
        ),
        (
            "nitrogendioxide_tropospheric_column_precision",
            swath.no2_precision,
            MOLEC_FACTOR_PRECISION,
            "Precision of the tropospheric vertical column of nitrogen dioxide",
        ),
    ):
        var = product.createVariable(
            name, "f4", dims2, fill_value=L2_FILL_FLOAT, zlib=True, complevel=1
        )
        var.setncatts(
            {
                "units": "mol m-2",
                "standard_name": "troposphere_mole_content_of_nitrogen_dioxide"
                + ("" if name.endswith("column") else " standard_error"),
                "long_name": long_name,
                "coordinates": "longitude latitude",
                "multiplication_factor_to_convert_to_molecules_percm2": factor,
            }
        )
        data = np.asarray(values, dtype=np.float32)
        var[:] = np.where(np.isfinite(data), data, L2_FILL_FLOAT)[None]

    qa = np.asarray(swath.qa_value, dtype=np.float64)
    raw = np.where(np.isfinite(qa), np.rint(np.clip(qa, 0.0, 1.0) * 100.0), 0.0).astype(np.uint8)
    qa_var = product.createVariable(
        "qa_value", "u1", dims2, fill_value=QA_FILL, zlib=True, complevel=1
    )
    qa_var.setncatts(
        {
            "units": "1",
            "scale_factor": np.float32(0.01),
            "add_offset": np.float32(0.0),
            "valid_min": np.uint8(0),
            "valid_max": np.uint8(100),
            "long_name": "data quality value",
            "comment": "A continuous quality descriptor, varying between 0 (no data) "
            "and 1 (full quality data). "
            "Recommend to ignore data with qa_value < 0.5",
            "coordinates": "longitude latitude",
        }
    )
    qa_var.set_auto_maskandscale(False)
    qa_var[:] = raw[None]

    geo = product.createGroup("SUPPORT_DATA").createGroup("GEOLOCATIONS")
    product["SUPPORT_DATA"].createGroup("DETAILED_RESULTS")
    product["SUPPORT_DATA"].createGroup("INPUT_DATA")
    dims3 = (*dims2, "corner")
    for name, values, units in (
        ("latitude_bounds", swath.latitude_bounds, "degrees_north"),
        ("longitude_bounds", swath.longitude_bounds, "degrees_east"),
    ):
        var = geo.createVariable(
            name, "f4", dims3, fill_value=L2_FILL_FLOAT, zlib=True, complevel=1
        )
        var.setncatts(
            {"units": units, "long_name": f"{name.split('_')[0]} of the ground pixel corners"}
        )
        var[:] = np.asarray(values, dtype=np.float32)[None]
    # one angle only: a solar zenith angle would cost ~15 % of the write time (it compresses
    # poorly) and no reader here uses it
    # viewing zenith: ~0 at nadir, ~66 deg at the swath edges (TROPOMI's +-57 deg scan + curvature)
    across = (np.arange(n_pixel) - (n_pixel - 1) / 2) / ((n_pixel - 1) / 2)
    vza = np.broadcast_to(np.float32(66.0) * np.abs(across).astype(np.float32), (n_scan, n_pixel))
    for name, values, long_name in (("viewing_zenith_angle", vza, "viewing zenith angle"),):
        var = geo.createVariable(
            name, "f4", dims2, fill_value=L2_FILL_FLOAT, zlib=True, complevel=1
        )
        var.setncatts(
            {
                "units": "degree",
                "long_name": long_name,
                "coordinates": "/PRODUCT/longitude /PRODUCT/latitude",
            }
        )
        var[:] = np.asarray(values, dtype=np.float32)[None]


# ------------------------------------------------------------------------------------------------
# ERA5
# ------------------------------------------------------------------------------------------------
def _seconds_since_1970(valid_time: NDArray[np.datetime64]) -> NDArray[np.int64]:
    return np.asarray(valid_time).astype("datetime64[s]").astype(np.int64)


def write_era5_month(
    path: Path,
    valid_time: NDArray[np.datetime64],
    latitude: NDArray[np.floating],
    longitude: NDArray[np.floating],
    fields: dict[str, NDArray[np.floating]],
    *,
    legacy: bool = False,
) -> Path:
    """Write hourly ERA5 single-level fields as the CDS delivers them; return ``path``.

    Args:
        valid_time: (time,) datetime64, UTC.
        latitude: (lat,) degrees north, ascending or descending; stored north -> south.
        longitude: (lon,) degrees east, ascending.
        fields: short name (u10 v10 blh t2m d2m sp tcc) -> (time, lat, lon) array in ERA5 units
            (m s**-1, m, K, K, Pa, (0 - 1)), rows in the order of ``latitude``.
        legacy: False = current CDS netCDF (FORMATS C.1: int64 ``valid_time`` seconds since 1970,
            float32 unpacked, NaN fill, ``number``/``expver`` coords, GRIB_* attributes);
            True = the old layout (``time`` hours since 1900-01-01, int16 scale/offset packing,
            netCDF3 64-bit offset).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lat = np.asarray(latitude, dtype=np.float64)
    lon = np.asarray(longitude, dtype=np.float64)
    flip = lat.size > 1 and lat[0] < lat[-1]
    if flip:
        lat = lat[::-1]
    n_time = len(valid_time)
    for name, values in fields.items():
        if name not in ERA5_VARIABLES:
            raise ValueError(f"unknown ERA5 variable {name!r}")
        if values.shape != (n_time, lat.size, lon.size):
            raise ValueError(
                f"{name} has shape {values.shape}, expected {(n_time, lat.size, lon.size)}"
            )
    ordered = {
        name: np.asarray(fields[name])[:, ::-1] if flip else np.asarray(fields[name])
        for name in ERA5_VARIABLES
        if name in fields
    }
    with atomic_path(path) as tmp:
        if legacy:
            _write_era5_legacy(tmp, valid_time, lat, lon, ordered)
        else:
            _write_era5_current(tmp, valid_time, lat, lon, ordered)
    return path


def _write_era5_current(
    path: Path,
    valid_time: NDArray[np.datetime64],
    lat: NDArray[np.float64],
    lon: NDArray[np.float64],
    fields: dict[str, NDArray[np.floating]],
) -> None:
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.setncatts(
            {
                "GRIB_centre": "ecmf",
                "GRIB_centreDescription": "European Centre for Medium-Range Weather Forecasts",
                "GRIB_subCentre": np.int64(0),
                "Conventions": "CF-1.7",
                "institution": "European Centre for Medium-Range Weather Forecasts",
                "history": "GRIB to CDM+CF via cfgrib-0.9.15.1/ecCodes-2.48.2 with "
                "{'source': 'data.grib', 'filter_by_keys': {'stream': ['oper'], "
                "'stepType': ['instant']}, "
                "'encode_cf': ('parameter', 'time', 'geography', 'vertical')} "
                "(simulated world written by no2fusion.synth)",
            }
        )
        ds.createDimension("valid_time", len(valid_time))
        ds.createDimension("latitude", lat.size)
        ds.createDimension("longitude", lon.size)
        number = ds.createVariable("number", "i8", ())
        number.setncatts(
            {
                "long_name": "ensemble member numerical id",
                "units": "1",
                "standard_name": "realization",
            }
        )
        number.assignValue(0)
        vt = ds.createVariable("valid_time", "i8", ("valid_time",))
        vt.setncatts(
            {
                "long_name": "time",
                "standard_name": "time",
                "units": "seconds since 1970-01-01",
                "calendar": "proleptic_gregorian",
            }
        )
        vt[:] = _seconds_since_1970(valid_time)
        la = ds.createVariable("latitude", "f8", ("latitude",))
        la.setncatts(
            {
                "units": "degrees_north",
                "standard_name": "latitude",
                "long_name": "latitude",
                "stored_direction": "decreasing",
            }
        )
        la[:] = lat
        lo = ds.createVariable("longitude", "f8", ("longitude",))
        lo.setncatts(
            {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"}
        )
        lo[:] = lon
        expver = ds.createVariable("expver", str, ("valid_time",))
        expver.setncatts({"long_name": "Experiment Version"})
        expver[:] = np.array(["0001"] * len(valid_time), dtype=object)
        step = float(abs(lat[1] - lat[0])) if lat.size > 1 else 0.25
        for name, values in fields.items():
            info = ERA5_VARIABLES[name]
            var = ds.createVariable(
                name,
                "f4",
                ("valid_time", "latitude", "longitude"),
                fill_value=np.float32(np.nan),
                zlib=True,
                complevel=1,
                chunksizes=(min(24, len(valid_time)), lat.size, lon.size),
            )
            var.setncatts(
                {
                    "GRIB_paramId": np.int64(info.param_id),
                    "GRIB_dataType": "an",
                    "GRIB_numberOfPoints": np.int64(lat.size * lon.size),
                    "GRIB_typeOfLevel": "surface",
                    "GRIB_stepUnits": np.int64(1),
                    "GRIB_stepType": "instant",
                    "GRIB_gridType": "regular_ll",
                    "GRIB_uvRelativeToGrid": np.int64(0),
                    "GRIB_NV": np.int64(0),
                    "GRIB_Nx": np.int64(lon.size),
                    "GRIB_Ny": np.int64(lat.size),
                    "GRIB_iDirectionIncrementInDegrees": step,
                    "GRIB_jDirectionIncrementInDegrees": step,
                    "GRIB_latitudeOfFirstGridPointInDegrees": float(lat[0]),
                    "GRIB_latitudeOfLastGridPointInDegrees": float(lat[-1]),
                    "GRIB_longitudeOfFirstGridPointInDegrees": float(lon[0]),
                    "GRIB_longitudeOfLastGridPointInDegrees": float(lon[-1]),
                    "GRIB_missingValue": 3.4028234663852886e38,
                    "GRIB_name": info.name,
                    "GRIB_shortName": name,
                    "GRIB_units": info.units,
                    "long_name": info.name,
                    "units": info.units,
                    "standard_name": info.standard_name,
                    "GRIB_surface": 0.0,
                    "coordinates": "number valid_time latitude longitude expver",
                }
            )
            var[:] = np.asarray(values, dtype=np.float32)


def _write_era5_legacy(
    path: Path,
    valid_time: NDArray[np.datetime64],
    lat: NDArray[np.float64],
    lon: NDArray[np.float64],
    fields: dict[str, NDArray[np.floating]],
) -> None:
    hours = (
        (np.asarray(valid_time).astype("datetime64[s]") - np.datetime64("1900-01-01T00:00:00", "s"))
        // np.timedelta64(1, "h")
    ).astype(np.int32)
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.setncatts(
            {
                "Conventions": "CF-1.6",
                "history": "netCDF legacy layout written by no2fusion.synth (simulated world)",
            }
        )
        ds.createDimension("longitude", lon.size)
        ds.createDimension("latitude", lat.size)
        ds.createDimension("time", len(valid_time))
        lo = ds.createVariable("longitude", "f4", ("longitude",))
        lo.setncatts({"units": "degrees_east", "long_name": "longitude"})
        lo[:] = lon.astype(np.float32)
        la = ds.createVariable("latitude", "f4", ("latitude",))
        la.setncatts({"units": "degrees_north", "long_name": "latitude"})
        la[:] = lat.astype(np.float32)
        ti = ds.createVariable("time", "i4", ("time",))
        ti.setncatts(
            {
                "units": "hours since 1900-01-01 00:00:00.0",
                "long_name": "time",
                "calendar": "gregorian",
            }
        )
        ti[:] = hours
        for name, values in fields.items():
            info = ERA5_VARIABLES[name]
            data = np.asarray(values, dtype=np.float64)
            finite = data[np.isfinite(data)]
            lo_v, hi_v = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
            # span the packed range -32766..32766; -32767 is the fill value
            scale = (hi_v - lo_v) / (2**16 - 4) if hi_v > lo_v else 1.0
            offset = (hi_v + lo_v) / 2.0
            packed = np.where(np.isfinite(data), np.rint((data - offset) / scale), LEGACY_FILL)
            var = ds.createVariable(
                name, "i2", ("time", "latitude", "longitude"), fill_value=LEGACY_FILL
            )
            var.setncatts(
                {
                    "scale_factor": np.float64(scale),
                    "add_offset": np.float64(offset),
                    "missing_value": LEGACY_FILL,
                    "units": info.units,
                    "long_name": info.name,
                }
            )
            if info.standard_name != "unknown":
                var.setncattr("standard_name", info.standard_name)
            var.set_auto_maskandscale(False)
            var[:] = packed.astype(np.int16)
