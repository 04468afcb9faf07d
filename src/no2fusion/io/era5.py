"""ERA5 single-level NetCDF reader: files as the CDS delivers them -> one canonical dataset.

Sits in ``io/`` at the left of the flow: ``pipeline/build.py`` scans the files once (``scan_era5``)
and hands hourly slices of its result to ``pipeline/align.py``. ERA5 short names and unit strings
stop here (``vocab.ERA5_NAMES``, ``vocab.ERA5_UNIT_ALIASES``); what leaves this module uses the
canonical ids and units of ``vocab.VARIABLES``.

Both CDS layouts are read (FORMATS.md C.1):

- current (since 2024): ``valid_time`` (int64 seconds since 1970), float32 unpacked with NaN fill,
  scalar ``number`` and ``expver`` (a string coordinate on ``valid_time``);
- legacy: ``time`` (hours since 1900), int16 with ``scale_factor``/``add_offset``; when ERA5 and
  ERA5T were mixed, an ``expver`` *dimension*, combined here by taking, for each time step, the
  first expver (in file order) that holds a finite value.

Output: dims (time, lat, lon); ``time`` datetime64[ns] UTC ascending without duplicates; ``lat``
ascending; ``lon`` normalised to −180..180 and ascending; float32 variables u10 v10 blh t2m d2m sp
tcc plus the derived ``rh`` (2 m relative humidity over water, %); a ``source_file`` coordinate on
``time`` names the file each step came from.

NaN policy: a non-finite value inside the cropped region of a required variable is an error
naming the file, variable and first bad time (ERA5 reanalysis has no gaps, so a NaN means a
broken download, and silently averaging around it would bias the features).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.errors import InputFileError, NoDataError
from no2fusion.grid import BBox
from no2fusion.io.checks import (
    check_axis,
    check_range,
    duplicate_time_conflict,
)
from no2fusion.io.era5_files import Era5FileSummary, check_files, summarise
from no2fusion.vocab import ERA5_NAMES, ERA5_UNIT_ALIASES, VARIABLES

# Unit strings that need an actual conversion: source unit -> (canonical unit, scale, offset);
# canonical = source * scale + offset. Identity mappings come from ``vocab.ERA5_UNIT_ALIASES``.
UNIT_CONVERSIONS: dict[str, tuple[str, float, float]] = {
    "hPa": ("Pa", 100.0, 0.0),
    "kPa": ("Pa", 1000.0, 0.0),
    "degC": ("K", 1.0, 273.15),
    "degrees_Celsius": ("K", 1.0, 273.15),
    "°C": ("K", 1.0, 273.15),
    "%": ("1", 0.01, 0.0),
    "km": ("m", 1000.0, 0.0),
}

# IFS saturation vapour pressure over water, Teten form (FORMATS.md C.3, IFS Cy41r2 IV eq. 7.5).
TETEN_A1_PA = 611.21
TETEN_A3_WATER = 17.502
TETEN_A4_WATER_K = 32.19
TETEN_T0_K = 273.16

REQUIRED_VARIABLES: tuple[str, ...] = tuple(ERA5_NAMES.values())
Mapper = Callable[[Callable[[Path], Any], Sequence[Path]], Sequence[Any]]
_TIME_NAMES = ("valid_time", "time")


def saturation_vapour_pressure_water(temperature_k: NDArray[np.floating]) -> NDArray[np.float64]:
    """IFS Teten saturation vapour pressure over water, Pa, for temperatures in K (any shape)."""
    t = np.asarray(temperature_k, dtype=np.float64)
    return TETEN_A1_PA * np.exp(TETEN_A3_WATER * (t - TETEN_T0_K) / (t - TETEN_A4_WATER_K))


def relative_humidity(
    t2m_k: NDArray[np.floating], d2m_k: NDArray[np.floating]
) -> NDArray[np.float64]:
    """2 m relative humidity over water, %: 100 e_s(d2m) / e_s(t2m), clipped to 0..100."""
    ratio = saturation_vapour_pressure_water(d2m_k) / saturation_vapour_pressure_water(t2m_k)
    return np.clip(100.0 * ratio, 0.0, 100.0)


def normalise_longitude(lon: NDArray[np.floating]) -> NDArray[np.float64]:
    """Map longitudes (degrees east, any range) to [−180, 180); 180 becomes −180."""
    return (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0


def _open(path: Path) -> xr.Dataset:
    if not path.exists():
        raise InputFileError("no such ERA5 file", path)
    try:
        return xr.open_dataset(path, engine="netcdf4", decode_times=True, mask_and_scale=True)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise InputFileError(f"not a readable NetCDF file ({type(error).__name__})", path) from None


def _combine_expver(ds: xr.Dataset) -> xr.Dataset:
    """Legacy layout: collapse an ``expver`` dimension (ERA5 + ERA5T) to one value per time."""
    if "expver" not in ds.dims:
        return ds.drop_vars([c for c in ("expver", "number") if c in ds.variables])
    combined = ds.isel(expver=0, drop=True)
    for index in range(1, ds.sizes["expver"]):
        combined = combined.combine_first(ds.isel(expver=index, drop=True))
    return combined.drop_vars([c for c in ("expver", "number") if c in combined.variables])


def _canonical_units(path: Path, name: str, units: str | None) -> tuple[float, float]:
    """(scale, offset) turning ``units`` into the canonical units of ``name``, or an error."""
    target = VARIABLES[name].units
    if units is None:
        raise InputFileError(f"variable '{name}' has no units attribute", path)
    if ERA5_UNIT_ALIASES.get(units) == target:
        return 1.0, 0.0
    conversion = UNIT_CONVERSIONS.get(units)
    if conversion is not None and conversion[0] == target:
        return conversion[1], conversion[2]
    raise InputFileError(f"variable '{name}' has unknown units {units!r} (expected {target})", path)


def read_era5_file(
    path: Path,
    bbox: BBox | None = None,
    margin_deg: float = 1.0,
    variables: Sequence[str] = REQUIRED_VARIABLES,
    window: tuple[np.datetime64, np.datetime64] | None = None,
) -> xr.Dataset | None:
    """One file -> canonical (time, lat, lon) dataset (loaded, cropped, float32, canonical units)
    of the wanted ``variables`` it holds; None if it holds none of them. ``window`` (first,
    last), UTC, inclusive: read only those time steps. ``rh`` is added after combining files.
    Variables are read one at a time (a month of Europe is ~45 MB per variable)."""
    path = Path(path)
    needed = variables
    with _open(path) as raw:
        time_name = next((t for t in _TIME_NAMES if t in raw.dims), None)
        if time_name is None or "latitude" not in raw.dims or "longitude" not in raw.dims:
            raise InputFileError(
                f"not an ERA5 single-level file (dims {tuple(raw.dims)}; need "
                "valid_time|time, latitude, longitude)",
                path,
            )
        present = {src: canon for src, canon in ERA5_NAMES.items() if src in raw.data_vars}
        present = {src: canon for src, canon in present.items() if canon in needed}
        if not present:
            return None
        ds = raw[list(present)].rename(
            {time_name: "time", "latitude": "lat", "longitude": "lon", **present}
        )
        ds = _combine_expver(ds)
        if not np.issubdtype(ds["time"].dtype, np.datetime64):
            raise InputFileError(f"cannot decode the '{time_name}' axis as times", path)
        check_axis(path, "latitude", ds["lat"].values)
        check_axis(path, "longitude", ds["lon"].values)
        # longitude -> [-180, 180), both axes ascending
        lon = normalise_longitude(ds["lon"].values)
        ds = ds.assign_coords(lon=lon)
        _, first = np.unique(lon, return_index=True)
        ds = ds.isel(lon=np.sort(first)).sortby("lon").sortby("lat").sortby("time")
        if window is not None:
            ds = ds.sel(time=slice(*(np.asarray(when, "datetime64[ns]") for when in window)))
        if bbox is not None:
            ds = ds.sel(
                lat=slice(bbox.lat_min - margin_deg, bbox.lat_max + margin_deg),
                lon=slice(bbox.lon_min - margin_deg, bbox.lon_max + margin_deg),
            )
            if ds.sizes["lat"] == 0 or ds.sizes["lon"] == 0:
                raise NoDataError("ERA5 grid does not overlap the domain", path)
        scales = {
            str(name): _canonical_units(path, str(name), ds[name].attrs.get("units")) for name in ds
        }
        times = ds["time"].values
        out = {}
        for name, (scale, offset) in scales.items():
            try:
                raw_values = ds[name].values
            except (OSError, RuntimeError, ValueError) as error:
                raise InputFileError(
                    f"cannot read data ({type(error).__name__}: {error})", path
                ) from None
            values = raw_values.astype(np.float64) * scale + offset
            del raw_values
            bad = ~np.isfinite(values)
            if bad.any():
                step = int(np.argwhere(bad)[0][0])
                when = np.datetime_as_string(times[step], unit="h")
                raise InputFileError(
                    f"variable '{name}' has NaN/inf values (first at {when} UTC) inside the domain",
                    path,
                )
            check_range(path, name, values)  # t2m in degC labelled K, sp in hPa labelled Pa
            when = duplicate_time_conflict(times, values)
            if when is not None:
                raise InputFileError(
                    f"time {np.datetime_as_string(when, unit='h')} appears twice with different "
                    f"'{name}' values",
                    path,
                )
            out[name] = (("time", "lat", "lon"), values.astype(np.float32), _attrs(name))
        result = xr.Dataset(
            out,
            coords={
                "time": times.astype("datetime64[ns]"),
                "lat": ds["lat"].values.astype(np.float64),
                "lon": ds["lon"].values.astype(np.float64),
            },
        )
        return result.assign_coords(source_file=("time", np.full(result.sizes["time"], path.name)))


def _attrs(name: str) -> dict[str, str]:
    var = VARIABLES[name]
    return {"units": var.units, "long_name": var.long_name}


def summarise_era5_file(
    path: Path,
    bbox: BBox | None = None,
    margin_deg: float = 1.0,
    variables: Sequence[str] = REQUIRED_VARIABLES,
) -> Era5FileSummary | None:
    """``read_era5_file`` (every check of one file) reduced to its ``Era5FileSummary``: what a
    scan of many files returns, so that no file's values are held beyond its own read."""
    part = read_era5_file(path, bbox, margin_deg, variables)
    return None if part is None else summarise(part)


@dataclass(frozen=True)
class Era5Index:
    """ERA5 files checked against each other (``scan_era5``): the time steps every variable has,
    the grid, and each file's first and last step, so that any window can be read later
    (``read_window``) without reading the whole period."""

    times: NDArray[np.datetime64]  # (time,) datetime64[ns], ascending, unique
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    spans: tuple[tuple[Path, np.datetime64, np.datetime64], ...]
    bbox: BBox | None
    margin_deg: float
    variables: tuple[str, ...]

    def read_window(
        self, first: np.datetime64, last: np.datetime64, mapper: Mapper | None = None
    ) -> xr.Dataset:
        """The time steps ``first``..``last`` (inclusive, UTC) of every variable, as
        ``read_era5`` returns them, reading only the files (and steps) of that window."""
        files = [path for path, start, end in self.spans if start <= last and end >= first]
        reader = partial(
            read_era5_file,
            bbox=self.bbox,
            margin_deg=self.margin_deg,
            variables=self.variables,
            window=(first, last),
        )
        parts = _each(reader, files, mapper)
        return _combine([p for p in parts if p is not None and p.sizes["time"]], self.variables)


def _sorted_files(paths: Iterable[str | Path]) -> list[Path]:
    files = sorted(Path(p) for p in paths)
    if not files:
        raise NoDataError("no ERA5 files given")
    return files


def _each(func: Callable[[Path], Any], files: Sequence[Path], mapper: Mapper | None) -> list[Any]:
    """``func`` of every file, through ``mapper`` (e.g. the build's helper processes) if given."""
    return list(map(func, files) if mapper is None else mapper(func, files))


def _concat_time(parts: list[xr.DataArray]) -> xr.DataArray:
    """One variable's steps from several files (checked by ``check_files``) along time,
    ascending, each step once (the first file's)."""
    joined = xr.concat(parts, dim="time", join="exact") if len(parts) > 1 else parts[0]
    if np.any(np.diff(joined["time"].values) < np.timedelta64(0)):  # else no copy to sort
        joined = joined.sortby("time")
    _, first = np.unique(joined["time"].values, return_index=True)
    return joined if first.size == joined.sizes["time"] else joined.isel(time=first)


def _combine(parts: list[xr.Dataset], variables: Sequence[str]) -> xr.Dataset:
    """Files checked by ``check_files`` -> one dataset of the steps every variable has, plus
    ``rh``. Frees each variable's parts once joined, so only one variable is held twice."""
    per_variable: dict[str, list[xr.DataArray]] = {}
    for part in parts:
        for name in part.data_vars:
            per_variable.setdefault(str(name), []).append(part[name])
    del parts  # the lists hold the only references: each variable's parts go once joined
    series = [_concat_time(per_variable.pop(str(name))) for name in variables]
    merged = xr.merge(
        series,
        join="inner",  # times: keep the steps every variable has; grids are equal (checked)
        compat="override",
        combine_attrs="drop",
    )
    for name in variables:
        merged[name].attrs = _attrs(name)
    if "t2m" in merged and "d2m" in merged:
        t2m, d2m = merged["t2m"].values, merged["d2m"].values
        rh = np.empty(t2m.shape, dtype=np.float32)
        for start in range(0, t2m.shape[0], 744):  # a month of hours at a time: bounded memory
            block = slice(start, start + 744)
            rh[block] = relative_humidity(t2m[block], d2m[block])
        merged["rh"] = (("time", "lat", "lon"), rh, _attrs("rh"))
    merged["lat"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    merged["lon"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    return merged


def read_era5(
    paths: Iterable[str | Path],
    bbox: BBox | None = None,
    margin_deg: float = 1.0,
    variables: Sequence[str] = REQUIRED_VARIABLES,
    mapper: Mapper | None = None,
) -> xr.Dataset:
    """Read ERA5 single-level files (any mix of layouts) into one canonical dataset.

    Args:
        paths: NetCDF files; a variable may come from several files (e.g. one per month) and
            different variables from different files. A time step in several files (overlapping
            downloads) must hold the same values in each.
        bbox: crop to this box widened by ``margin_deg`` on every side (degrees); None = all.
        margin_deg: margin around ``bbox``, degrees.
        variables: canonical ids to read; each must be found in at least one file.
        mapper: ``mapper(function, files) -> list`` to read the files in parallel (e.g. the
            build's dask runner); default: one after the other.

    Returns:
        Dataset with dims (time, lat, lon): the variables (float32, canonical units) plus ``rh``
        (%), when t2m and d2m were read; see the module docstring. For a long period over a
        large domain, ``scan_era5`` and ``Era5Index.read_window`` hold one window at a time.

    Raises:
        InputFileError: unreadable file, unknown units, NaN/inf values, values outside their
            plausible range (``vocab.VARIABLES``: wrong units), axes out of order, a time step
            twice with different values, grids that differ between files (naming both), or a
            variable found in no file.
        NoDataError: no files, no time step shared by the variables, or an ERA5 grid that
            covers less than half the domain (a partial cover above that is a warning with the
            fraction).
    """
    files = _sorted_files(paths)
    reader = partial(read_era5_file, bbox=bbox, margin_deg=margin_deg, variables=variables)
    parts = [part for part in _each(reader, files, mapper) if part is not None]
    check_files([summarise(part) for part in parts], variables, files, bbox)
    return _combine(parts, variables)


def scan_era5(
    paths: Iterable[str | Path],
    bbox: BBox | None = None,
    margin_deg: float = 1.0,
    variables: Sequence[str] = REQUIRED_VARIABLES,
    mapper: Mapper | None = None,
) -> Era5Index:
    """Every check of ``read_era5`` on every file, keeping only their axes: the index from
    which ``Era5Index.read_window`` reads any window later. Each file is read once here
    (``summarise_era5_file``, through ``mapper`` as in ``read_era5``); what stays in memory is a
    few numbers per time step, whatever the period. Arguments and errors as for ``read_era5``."""
    files = _sorted_files(paths)
    scanner = partial(summarise_era5_file, bbox=bbox, margin_deg=margin_deg, variables=variables)
    found = _each(scanner, files, mapper)
    pairs = [(path, s) for path, s in zip(files, found, strict=True) if s is not None]
    summaries = [summary for _, summary in pairs]
    times = check_files(summaries, variables, files, bbox)
    spans = tuple((path, s.times.min(), s.times.max()) for path, s in pairs if s.times.size)
    first = summaries[0]
    return Era5Index(times, first.lat, first.lon, spans, bbox, float(margin_deg), tuple(variables))
