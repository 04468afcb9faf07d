"""Sentinel-5P TROPOMI L2 NO2 reader (and the QA filter, through ``SentinelDataLoader``).

Sits at the left end of the flow (``io/``): real (or simulated, same format) ``S5P_*_L2__NO2___``
files in, a canonical ``xarray.Dataset`` out. Source names, the product's units (mol m-2), its
fill values and its raw uint8 ``qa_value`` encoding stop here (FORMATS.md A). The QA filter
(``SentinelDataLoader.apply_filtering``: ``l2_filter.filter_pixels``, re-exported here) runs
before anything else touches the values; ``pipeline/qa.py`` is the pipeline stage that wraps it
and sums its counts. Every file is checked: its layout and units here, its decoded values
(ranges, times) in ``checks.py``; anything wrong, including whatever the netCDF4 library raises
for a damaged file, is an ``InputFileError`` naming the file.

Why this module is long: one file format, read in one pass with its checks (group layout,
shapes, units, fill values, packed qa, two time encodings, the bbox pre-selection of scanlines
that keeps a real 450 MB orbit cheap); splitting it would scatter the knowledge of the format.

Output of ``load_tropomi_no2`` (dims ``scanline``, ``ground_pixel``, ``corner``):
``no2``, ``no2_precision`` float32 umol m-2 (NaN for fill); ``qa_value`` float32 0..1;
``latitude``, ``longitude`` float32 degrees (pixel centre); ``latitude_bounds``,
``longitude_bounds`` float32 degrees (4 corners); ``time`` (scanline) datetime64[ns] UTC;
``source_file`` (scanline) str. Global attributes: the parsed file-name fields.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.errors import InputFileError, NoDataError
from no2fusion.grid import BBox
from no2fusion.io.checks import check_l2_values
from no2fusion.io.l2_filter import PIXEL_VARS, filter_pixels, qa_mask
from no2fusion.vocab import MOL_M2_TO_UMOL_M2, NO2_UNITS, TROPOMI_NAMES, VARIABLES

# FORMATS A.1: S5P_<stream>_<type>_<start>_<end>_<orbit>_<collection>_<version>_<production>
FILE_NAME_RE = re.compile(
    r"^S5P_(?P<stream>NRTI|OFFL|RPRO|PAL_)_(?P<product>L2__NO2___)_"
    r"(?P<start>\d{8}T\d{6})_(?P<end>\d{8}T\d{6})_(?P<orbit>\d{5})_"
    r"(?P<collection>\d{2})_(?P<version>\d{6})_(?P<production>\d{8}T\d{6})(\.nc)?$"
)
MOL_M2_UNITS = {"mol m-2", "mol m^-2", "mol/m2", "mol m**-2", "mol.m-2"}
NETCDF_DEFAULT_FLOAT_FILL = 9.96921e36
_TIME_UNITS_RE = re.compile(
    r"^\s*(?P<unit>milliseconds|seconds|minutes|hours|days)\s+since\s+"
    r"(?P<date>\d{4}-\d{2}-\d{2})(?:[ T](?P<time>\d{2}:\d{2}:\d{2}(?:\.\d+)?))?\s*(Z|UTC)?\s*$"
)
_UNIT_NS = {
    "milliseconds": 1_000_000,
    "seconds": 1_000_000_000,
    "minutes": 60_000_000_000,
    "hours": 3_600_000_000_000,
    "days": 86_400_000_000_000,
}
_FIELDS = {canonical: path for path, canonical in TROPOMI_NAMES.items()}
_CORNER_VARS = ("latitude_bounds", "longitude_bounds")


# ------------------------------------------------------------------------------------------------
# file names
# ------------------------------------------------------------------------------------------------
def parse_file_name(name: str) -> dict[str, Any] | None:
    """Fields of an official L2 NO2 file name (FORMATS A.1), or None if it does not match.

    Returns: stream, product_type, start, end, production_time (ISO strings, UTC, from the
    name: the start/end span the whole orbit, not the measurements), orbit (int),
    collection (int), processor_version ('MMmmpp' -> 'M.m.p').
    """
    match = FILE_NAME_RE.match(Path(name).name)
    if match is None:
        return None

    def iso(stamp: str) -> str:
        return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S").strftime("%Y-%m-%dT%H:%M:%SZ")

    version = match["version"]
    return {
        "stream": match["stream"],
        "product_type": match["product"],
        "start": iso(match["start"]),
        "end": iso(match["end"]),
        "orbit": int(match["orbit"]),
        "collection": int(match["collection"]),
        "processor_version": ".".join(str(int(version[k : k + 2])) for k in (0, 2, 4)),
        "production_time": iso(match["production"]),
    }


def _file_attrs(path: Path, root: netCDF4.Dataset) -> dict[str, Any]:
    """Parsed name fields; falls back to the global ``id`` (same 83 characters) when the file
    was renamed, then to the ``orbit``/``processor_version`` global attributes."""
    fields = parse_file_name(path.name)
    if fields is None and "id" in root.ncattrs():
        fields = parse_file_name(str(root.getncattr("id")))
    if fields is None:
        fields = {}
        if "orbit" in root.ncattrs():
            fields["orbit"] = int(root.getncattr("orbit"))
        if "processor_version" in root.ncattrs():
            fields["processor_version"] = str(root.getncattr("processor_version"))
    fields["source_file"] = str(path)
    return fields


# ------------------------------------------------------------------------------------------------
# low-level decoding
# ------------------------------------------------------------------------------------------------
def decode_time_units(values: NDArray[Any], units: str, where: str) -> NDArray[np.datetime64]:
    """CF ``<unit> since <date>`` integers -> datetime64[ns] (UTC); fill/NaN -> NaT.

    ``where`` names the file and variable for the error message.
    """
    match = _TIME_UNITS_RE.match(units)
    if match is None:
        raise InputFileError(f"cannot decode time units {units!r}", where)
    epoch = np.datetime64(f"{match['date']}T{match['time'] or '00:00:00'}", "ns")
    data = np.ma.filled(np.ma.asarray(values, dtype=np.float64), np.nan)
    finite = np.isfinite(data)
    ns = np.where(finite, np.rint(data * _UNIT_NS[match["unit"]]), 0).astype(np.int64)
    out = epoch + ns.astype("timedelta64[ns]")
    out[~finite] = np.datetime64("NaT")
    return out


def _decode_float(var: netCDF4.Variable, raw: NDArray[Any]) -> NDArray[np.float32]:
    """Raw float (or packed int) -> float32 with fill/missing values as NaN.

    A float value is fill when it equals ``_FillValue``/``missing_value``, is not finite, or is
    at least 0.99 × 9.96921e36 (the netCDF default fill, which the product uses).
    """
    data = np.asarray(raw)
    packed = "scale_factor" in var.ncattrs() or "add_offset" in var.ncattrs()
    if data.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(data) < 0.99 * NETCDF_DEFAULT_FLOAT_FILL)  # catches NaN and inf too
    else:
        bad = np.zeros(data.shape, dtype=bool)
    for attr in ("_FillValue", "missing_value"):
        if attr in var.ncattrs():
            bad |= data == np.asarray(var.getncattr(attr)).astype(data.dtype)
    if packed:
        out = data.astype(np.float64)
        if "scale_factor" in var.ncattrs():
            out = out * float(var.getncattr("scale_factor"))
        if "add_offset" in var.ncattrs():
            out = out + float(var.getncattr("add_offset"))
        result = out.astype(np.float32)
    else:
        result = data.astype(np.float32)  # float32 in the product: no copy of a copy
    result[bad] = np.nan
    return result


def _decode_qa(var: netCDF4.Variable, raw: NDArray[Any]) -> NDArray[np.float32]:
    """qa_value: raw uint8 0..100 (scale 0.01) -> float 0..1; fill -> NaN (fails any filter)."""
    data = np.asarray(raw)
    if data.dtype.kind == "f":  # already decoded by some other writer
        out = data.astype(np.float64)
    else:
        scale = float(var.getncattr("scale_factor")) if "scale_factor" in var.ncattrs() else 1.0
        offset = float(var.getncattr("add_offset")) if "add_offset" in var.ncattrs() else 0.0
        out = data.astype(np.float64) * scale + offset
        if "_FillValue" in var.ncattrs():
            out[data == np.asarray(var.getncattr("_FillValue")).astype(data.dtype)] = np.nan
    out[(out < 0) | (out > 1)] = np.nan
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# one file
# ------------------------------------------------------------------------------------------------
class _L2File:
    """An open L2 file with its variables checked; reads scanline ranges."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise InputFileError("file not found", path)
        if path.stat().st_size == 0:
            raise InputFileError("empty file (0 bytes): an interrupted download?", path)
        try:
            self.root = netCDF4.Dataset(path, "r")
        except _LIBRARY_ERRORS as err:
            raise InputFileError(
                "not a readable NetCDF-4 file (truncated, or not NetCDF at all): "
                f"{getattr(err, 'strerror', None) or err}",
                path,
            ) from None
        self.root.set_auto_maskandscale(False)
        # decoded arrays read by ``scanline_range``, reused by ``to_dataset``: name -> (first
        # scanline, values)
        self._cache: dict[str, tuple[int, NDArray[np.float32]]] = {}
        try:
            self.vars = self._find_variables()
        except Exception:
            self.root.close()
            raise

    def close(self) -> None:
        self.root.close()

    def _find_variables(self) -> dict[str, netCDF4.Variable]:
        if "PRODUCT" not in self.root.groups:
            raise InputFileError("not a TROPOMI L2 product: no PRODUCT group", self.path)
        product = self.root["PRODUCT"]
        if not product.variables:
            raise InputFileError(
                "header-only L2 product: the PRODUCT group holds dimensions but no variables",
                self.path,
            )
        found: dict[str, netCDF4.Variable] = {}
        for name, where in [*_FIELDS.items(), ("time", "PRODUCT/time")]:
            found[name] = self._variable(where)
        found["delta_time"] = self._variable("PRODUCT/delta_time")
        shape = found["no2"].shape
        if len(shape) != 3 or shape[0] != 1:
            raise InputFileError(
                f"PRODUCT/nitrogendioxide_tropospheric_column has shape {shape}, "
                "expected (1, scanline, ground_pixel)",
                self.path,
            )
        for name in PIXEL_VARS:
            if found[name].shape != shape:
                raise InputFileError(
                    f"{_FIELDS[name]} has shape {found[name].shape}, expected {shape}", self.path
                )
        for name in _CORNER_VARS:
            if found[name].shape != (*shape, 4):
                raise InputFileError(
                    f"{_FIELDS[name]} has shape {found[name].shape}, expected {(*shape, 4)}",
                    self.path,
                )
        if found["delta_time"].shape not in ((1, shape[1]), (shape[1],)):
            raise InputFileError(
                f"PRODUCT/delta_time has shape {found['delta_time'].shape}, "
                f"expected (1, {shape[1]})",
                self.path,
            )
        for name in ("no2", "no2_precision"):
            units = str(getattr(found[name], "units", "")).strip()
            if units not in MOL_M2_UNITS:
                raise InputFileError(
                    f"{_FIELDS[name]} has units {units!r}, expected 'mol m-2'", self.path
                )
        return found

    def _variable(self, where: str) -> netCDF4.Variable:
        group: Any = self.root
        *groups, name = where.split("/")
        for part in groups:
            if part not in group.groups:
                raise InputFileError(
                    f"missing group {'/'.join(groups)} (needed for {where})", self.path
                )
            group = group.groups[part]
        if name not in group.variables:
            raise InputFileError(f"missing variable {where}", self.path)
        return group.variables[name]

    @property
    def n_scanlines(self) -> int:
        return int(self.vars["no2"].shape[1])

    def read(self, name: str, rows: slice) -> NDArray[Any]:
        """Raw values of one variable for scanlines ``rows`` (the time axis squeezed)."""
        var = self.vars[name]
        try:
            if name == "time":
                return np.asarray(var[:])
            if name == "delta_time" and var.ndim == 1:
                return np.asarray(var[rows])
            return np.asarray(var[0, rows])
        except (OSError, RuntimeError, IndexError, ValueError) as err:
            raise InputFileError(
                f"cannot read {var.group().path.strip('/')}/{var.name} (truncated or corrupt "
                f"file?): {err}",
                self.path,
            ) from None

    def scanline_range(self, bbox: BBox) -> tuple[int, int] | None:
        """[first, stop) of the scanlines with a pixel whose corners can touch ``bbox``; None
        when no pixel does.

        Two steps, so that the (4x larger) corner bounds are read only near the box:

        1. candidates: scanlines with a pixel CENTRE latitude within ``margin`` of the box,
           where ``margin`` is two pixel footprints (twice the largest along- plus across-track
           centre spacing in latitude, ``_footprint_margin``), so every pixel whose corners
           reach the box has its centre inside the widened box; a non-finite centre counts as
           a candidate (it is decided on its bounds);
        2. exact: the corner bounds of the candidate scanlines decide, as before (latitude
           overlap, longitude overlap with the antimeridian handled by ``_lon_touches``).

        The decoded centres and bounds are kept for ``to_dataset`` (no second read).
        """
        lat = _decode_float(self.vars["latitude"], self.read("latitude", slice(None)))
        self._cache = {"latitude": (0, lat)}
        margin = _footprint_margin(lat)
        if margin is None:  # fewer than 2x2 finite pixels: no spacing to derive a margin from
            first, stop = 0, self.n_scanlines
        else:
            with np.errstate(invalid="ignore"):
                near = (lat + margin > bbox.lat_min) & (lat - margin < bbox.lat_max)
            candidates = np.flatnonzero((near | ~np.isfinite(lat)).any(axis=1))
            if candidates.size == 0:
                return None
            first, stop = int(candidates[0]), int(candidates[-1]) + 1
        rows = slice(first, stop)
        lat_b = _decode_float(self.vars["latitude_bounds"], self.read("latitude_bounds", rows))
        lon_b = _decode_float(self.vars["longitude_bounds"], self.read("longitude_bounds", rows))
        self._cache["latitude_bounds"] = (first, lat_b)
        self._cache["longitude_bounds"] = (first, lon_b)
        lat_min, lat_max = _corner_min_max(lat_b)  # (scanline, ground_pixel), NaN corners ignored
        with np.errstate(invalid="ignore"):
            lat_hit = (lat_max > bbox.lat_min) & (lat_min < bbox.lat_max)
        hit = lat_hit & _lon_touches(lon_b, bbox.lon_min, bbox.lon_max)
        found = np.flatnonzero(hit.any(axis=1))
        if found.size == 0:
            return None
        return first + int(found[0]), first + int(found[-1]) + 1

    def _decoded(self, name: str, rows: slice) -> NDArray[np.float32]:
        """Decoded float variable for ``rows`` (start/stop given), from the cache of
        ``scanline_range`` when it holds those rows, else read from the file."""
        cached = self._cache.get(name)
        if cached is not None and rows.start is not None and rows.stop is not None:
            offset, values = cached
            start, stop = int(rows.start) - offset, int(rows.stop) - offset
            if 0 <= start <= stop <= values.shape[0]:
                # a copy when it is a part: the dataset must not keep the whole file's array
                part = values[start:stop]
                return part if part.shape[0] == values.shape[0] else part.copy()
        return _decode_float(self.vars[name], self.read(name, rows))

    def to_dataset(self, rows: slice) -> xr.Dataset:
        """Canonical dataset of scanlines ``rows`` (see the module docstring)."""
        data: dict[str, Any] = {}
        for name in ("no2", "no2_precision"):
            values = _decode_float(self.vars[name], self.read(name, rows))
            data[name] = (("scanline", "ground_pixel"), values * np.float32(MOL_M2_TO_UMOL_M2))
        data["qa_value"] = (
            ("scanline", "ground_pixel"),
            _decode_qa(self.vars["qa_value"], self.read("qa_value", rows)),
        )
        for name in ("latitude", "longitude"):
            data[name] = (("scanline", "ground_pixel"), self._decoded(name, rows))
        for name in _CORNER_VARS:
            data[name] = (("scanline", "ground_pixel", "corner"), self._decoded(name, rows))
        data["time"] = (("scanline",), self._scanline_time(rows))
        n_rows = data["time"][1].shape[0]
        data["source_file"] = (("scanline",), np.full(n_rows, str(self.path), dtype=object))
        scan_index = np.arange(self.n_scanlines)[rows]
        ds = xr.Dataset(data, coords={"scanline": scan_index})
        for name in ("no2", "no2_precision", "qa_value", "latitude", "longitude"):
            ds[name].attrs.update(units=VARIABLES[name].units if name in VARIABLES else "")
        for name in ("latitude", "longitude", "latitude_bounds", "longitude_bounds"):
            ds[name].attrs["units"] = "degrees_north" if name.startswith("lat") else "degrees_east"
        ds["no2"].attrs["units"] = NO2_UNITS
        ds["no2_precision"].attrs["units"] = NO2_UNITS
        return ds

    def _scanline_time(self, rows: slice) -> NDArray[np.datetime64]:
        """time (reference, e.g. seconds since 2010-01-01) + delta_time (e.g. milliseconds),
        each scaled by the unit named in its own units attribute (FORMATS A.7)."""
        time_var, delta_var = self.vars["time"], self.vars["delta_time"]
        where = f"{self.path} PRODUCT/time"
        reference = decode_time_units(
            self.read("time", rows).ravel()[:1], str(getattr(time_var, "units", "")), where
        )[0]
        delta_units = str(getattr(delta_var, "units", ""))
        match = _TIME_UNITS_RE.match(delta_units)
        if match is None:
            raise InputFileError(
                f"cannot decode PRODUCT/delta_time units {delta_units!r}", self.path
            )
        raw = self.read("delta_time", rows).ravel().astype(np.float64)
        if "_FillValue" in delta_var.ncattrs():
            raw[raw == float(delta_var.getncattr("_FillValue"))] = np.nan
        finite = np.isfinite(raw)
        offset_ns = np.where(finite, np.rint(raw * _UNIT_NS[match["unit"]]), 0).astype(np.int64)
        times = reference + offset_ns.astype("timedelta64[ns]")
        times[~finite] = np.datetime64("NaT")
        return times


def _footprint_margin(lat: NDArray[np.float32]) -> float | None:
    """A safe latitude margin, degrees, between a pixel centre and any of its corners: twice
    (largest along-track + largest across-track centre spacing in latitude) of ``lat``
    (scanline, ground_pixel). A corner lies within one neighbour spacing of its centre on a
    contiguous swath, so this holds with a factor of two to spare. None when the spacing
    cannot be measured (fewer than 2 scanlines or ground pixels, or no finite neighbours)."""
    if lat.shape[0] < 2 or lat.shape[1] < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN differences -> NaN
        along = np.nanmax(np.abs(np.diff(lat, axis=0)))
        across = np.nanmax(np.abs(np.diff(lat, axis=1)))
    margin = 2.0 * (float(along) + float(across))
    return margin if np.isfinite(margin) and margin > 0 else None


def _corner_min_max(bounds: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    """Min and max over the 4 corners (last axis) ignoring NaN corners (NaN only when all 4
    are NaN), as element-wise ``fmin``/``fmax``: much cheaper than ``nanmin`` over a length-4
    axis."""
    c0, c1, c2, c3 = (bounds[..., k] for k in range(4))
    return np.fmin(np.fmin(c0, c1), np.fmin(c2, c3)), np.fmax(np.fmax(c0, c1), np.fmax(c2, c3))


def _lon_touches(lon_b: NDArray[np.float32], lon_min: float, lon_max: float) -> NDArray[np.bool_]:
    """(scanline, ground_pixel) True where a pixel's corner longitudes (unwrapped to within
    ±180 deg of its first corner; also tried shifted by ∓360 deg) overlap [lon_min, lon_max]."""
    lo32, hi32 = _corner_min_max(lon_b)
    lo, hi = lo32.astype(np.float64), hi32.astype(np.float64)
    # Only a pixel spanning more than 180 deg can have a corner more than 180 deg from its
    # first corner; unwrap just those (the antimeridian crossers; few or none per file).
    with np.errstate(invalid="ignore"):
        wide = hi - lo > 180.0
    if wide.any():
        lon = lon_b[wide].astype(np.float64)  # (n_wide, corner)
        d = lon - lon[:, :1]
        lon = np.where(d > 180, lon - 360, np.where(d < -180, lon + 360, lon))
        lo[wide], hi[wide] = _corner_min_max(lon)
    hit = np.zeros(lo.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        for shift in (0.0, -360.0, 360.0):
            hit |= (hi + shift > lon_min) & (lo + shift < lon_max)
    return hit


# What the netCDF4 library raises for a damaged file (besides OSError at open): HDF errors come
# as RuntimeError, an unreadable attribute as AttributeError, a bad index or size as the others.
_LIBRARY_ERRORS = (OSError, RuntimeError, AttributeError, KeyError, IndexError, ValueError)


def _read_file(path: Path, box: BBox | None) -> xr.Dataset | None:
    """One file as a canonical dataset (scanlines that can touch ``box``), None if none can.

    Raises ``InputFileError`` for a file the library cannot read, whatever it raises."""
    try:
        l2 = _L2File(path)
        try:
            attrs = _file_attrs(path, l2.root)
            if box is None:
                rows = slice(0, l2.n_scanlines)
            else:
                found = l2.scanline_range(box)
                if found is None:
                    return None
                rows = slice(*found)
            part = l2.to_dataset(rows)
        finally:
            l2.close()
    except _LIBRARY_ERRORS as err:
        raise InputFileError(
            f"damaged NetCDF-4/HDF5 file ({type(err).__name__}: {err})", path
        ) from None
    part.attrs = attrs
    check_l2_values(part, path)
    return part


def _resolve_paths(path_or_glob: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(path_or_glob, (str, Path)):
        text = str(path_or_glob)
        if any(char in text for char in "*?["):
            paths = [Path(p) for p in sorted(glob.glob(text))]
            if not paths:
                raise InputFileError("no file matches this pattern", text)
            return paths
        return [Path(text)]
    paths = [Path(p) for p in path_or_glob]
    if not paths:
        raise InputFileError("empty list of L2 files")
    return paths


# ------------------------------------------------------------------------------------------------
# public API (seed names)
# ------------------------------------------------------------------------------------------------
class SentinelDataLoader:
    """Reads Sentinel-5P TROPOMI L2 NO2 files and applies the QA filter.

    Args:
        qa_threshold: keep pixels with ``qa_value > qa_threshold`` (0.75 is the product's
            recommendation for the tropospheric column; 0.5 adds cloudy/snowy scenes).
    """

    def __init__(self, qa_threshold: float = 0.75) -> None:
        if not 0.0 <= qa_threshold <= 1.0:
            raise ValueError(f"qa_threshold must be within [0, 1], got {qa_threshold}")
        self.qa_threshold = float(qa_threshold)

    def load_tropomi_no2(
        self,
        path_or_glob: str | Path | Sequence[str | Path],
        bbox: BBox | dict[str, Any] | None = None,
    ) -> xr.Dataset:
        """Read one or more L2 NO2 files into a canonical dataset (module docstring).

        Args:
            path_or_glob: a file, a glob pattern (``S5P_OFFL_L2__NO2____*.nc``) or a list.
            bbox: if given, only the scanlines with a pixel whose corners can touch the box are
                read (pixels of those scanlines outside the box are kept; the regridder ignores
                them). Files that miss the box are skipped (listed in attr ``skipped_files``).

        Returns:
            Dataset with dims (scanline, ground_pixel, corner), several files concatenated
            along scanline in the order given (sorted for a glob).

        Raises:
            InputFileError: unreadable, truncated, header-only, missing-variable, wrong-units file.
            NoDataError: with a bbox, no pixel of any file can touch it.
        """
        box = BBox.from_mapping(bbox) if isinstance(bbox, dict) else bbox
        paths = _resolve_paths(path_or_glob)
        parts: list[xr.Dataset] = []
        skipped: list[str] = []
        for path in paths:
            part = _read_file(path, box)
            if part is None:
                skipped.append(str(path))
            else:
                parts.append(part)
        if not parts:
            where = skipped[0] if len(skipped) == 1 else ", ".join(skipped)
            raise NoDataError(f"no pixel of the swath touches the domain {box}", where)
        if len(parts) == 1:
            result = parts[0]
        else:
            result = xr.concat(parts, dim="scanline", combine_attrs="drop_conflicts")
        result.attrs["source_files"] = json.dumps([p.attrs["source_file"] for p in parts])
        if len(parts) > 1:
            result.attrs.pop("source_file", None)
            result.attrs["orbits"] = json.dumps([p.attrs.get("orbit") for p in parts])
        result.attrs["skipped_files"] = json.dumps(skipped)
        return result

    def apply_filtering(self, data: xr.Dataset) -> xr.Dataset:
        """QA filter (``filter_pixels`` at this loader's threshold): the 1-D ``pixel`` dataset of
        kept pixels with rejection counts in its attrs. Raises ``NoDataError`` when none is kept.
        """
        return filter_pixels(data, self.qa_threshold)


__all__ = [
    "SentinelDataLoader",
    "decode_time_units",
    "filter_pixels",
    "parse_file_name",
    "qa_mask",
]
