"""Plausibility of what the readers decode: values against units, axes, times, coverage.

Sits in ``io/`` beside the readers (``era5.py``, ``tropomi.py``), which call these checks on
every file after decoding, in canonical units. A file that passes the format checks can still
be wrong: ``t2m`` in degrees Celsius labelled ``K``, an NO2 column in molec cm-2 labelled
``mol m-2``, a latitude axis out of order, a time step that appears twice with different
values, a time axis decoded with the wrong epoch, or ERA5 that covers one corner of the
domain. Each becomes an ``InputFileError`` (or, for partial coverage, a ``NoDataError`` or a
warning) naming the file and what is wrong. The plausible ranges are ``vocab.VARIABLES``.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.errors import InputFileError, NoDataError
from no2fusion.grid import BBox
from no2fusion.vocab import VARIABLES

log = logging.getLogger(__name__)

# Meteorology covering less of the domain, or of the days' overpass windows, than this is an
# error; more, but not all, a warning with the fraction (the uncovered days are left out).
MIN_DOMAIN_COVERAGE = 0.5
MIN_TIME_COVERAGE = 0.5
# Fraction of an L2 file's finite values allowed outside the plausible range (retrieval noise
# and outliers at high solar zenith angles; a unit mistake puts ~all values outside).
MAX_L2_OUTSIDE_FRACTION = 0.05
# Slack on the ranges for float rounding (fraction of the range's span).
RANGE_SLACK = 1e-3


def _span(values: NDArray[Any]) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)


def check_range(
    path: str | Path, name: str, values: NDArray[Any], max_outside: float = 0.0
) -> None:
    """Raise ``InputFileError`` when more than ``max_outside`` of the finite ``values`` of
    canonical variable ``name`` (canonical units) lie outside its plausible range."""
    var = VARIABLES[name]
    slack = RANGE_SLACK * (var.valid_max - var.valid_min)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    outside = (finite < var.valid_min - slack) | (finite > var.valid_max + slack)
    if outside.mean() > max_outside:
        lo, hi = _span(finite)
        raise InputFileError(
            f"variable '{name}' has values {lo:.4g}..{hi:.4g} {var.units} "
            f"({outside.mean():.0%} outside the plausible {var.valid_min:g}..{var.valid_max:g} "
            f"{var.units} of a {var.long_name}): wrong units, or a damaged file",
            path,
        )


def check_axis(path: str | Path, name: str, values: NDArray[Any]) -> None:
    """Raise ``InputFileError`` unless ``values`` are finite and strictly monotonic (either
    direction), as a grid axis must be."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return
    if not np.isfinite(values).all():
        raise InputFileError(f"coordinate '{name}' has NaN values", path)
    step = np.diff(values)
    if (step == 0).any():
        at = float(values[int(np.flatnonzero(step == 0)[0])])
        raise InputFileError(f"coordinate '{name}' repeats the value {at:g}", path)
    if not ((step > 0).all() or (step < 0).all()):
        at = int(np.flatnonzero(np.sign(step) != np.sign(step[0]))[0]) + 1
        raise InputFileError(
            f"coordinate '{name}' is not monotonic (turns at index {at}, value "
            f"{float(values[at]):g})",
            path,
        )


def duplicate_time_conflict(
    times: NDArray[np.datetime64], values: NDArray[Any]
) -> np.datetime64 | None:
    """The first time stamp that appears more than once with different ``values`` (time on the
    first axis), or None (repeats with equal values, e.g. overlapping downloads, are fine)."""
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    repeated = np.flatnonzero(sorted_times[1:] == sorted_times[:-1])
    for k in repeated:
        a, b = values[order[k]], values[order[k + 1]]
        if not np.allclose(a, b, rtol=1e-6, atol=0, equal_nan=True):
            return sorted_times[k]
    return None


def domain_coverage(lat: NDArray[Any], lon: NDArray[Any], bbox: BBox) -> float:
    """Fraction (0..1) of ``bbox``'s area inside the extent of a grid with cell centres
    ``lat``/``lon`` (ascending; each cell reaches half a spacing beyond its centre)."""

    def covered(centres: NDArray[Any], lo: float, hi: float) -> float:
        if centres.size == 0:
            return 0.0
        half = 0.5 * float(np.median(np.diff(centres))) if centres.size > 1 else 0.125
        start, stop = max(lo, float(centres[0]) - half), min(hi, float(centres[-1]) + half)
        return max(0.0, stop - start) / (hi - lo)

    return covered(np.asarray(lat), bbox.lat_min, bbox.lat_max) * covered(
        np.asarray(lon), bbox.lon_min, bbox.lon_max
    )


def check_domain_coverage(
    path: str | Path, lat: NDArray[Any], lon: NDArray[Any], bbox: BBox
) -> float:
    """The coverage of ``bbox`` by a meteorology grid: below ``MIN_DOMAIN_COVERAGE`` a
    ``NoDataError`` naming the file and the part it misses; below 1 a warning with the
    fraction. Returns the fraction."""
    fraction = domain_coverage(lat, lon, bbox)
    if fraction >= 1.0 - 1e-9:
        return 1.0
    have = (
        f"lat {float(np.min(lat)):g}..{float(np.max(lat)):g}, "
        f"lon {float(np.min(lon)):g}..{float(np.max(lon)):g}"
        if np.size(lat) and np.size(lon)
        else "no grid point"
    )
    what = (
        f"covers {fraction:.0%} of the domain (grid centres {have}; the domain is lat "
        f"{bbox.lat_min:g}..{bbox.lat_max:g}, lon {bbox.lon_min:g}..{bbox.lon_max:g})"
    )
    if fraction < MIN_DOMAIN_COVERAGE:
        raise NoDataError(
            f"the meteorology {what}; at least {MIN_DOMAIN_COVERAGE:.0%} is needed: download "
            "the whole domain",
            path,
        )
    log.warning("%s: the meteorology %s; the rest uses the nearest ERA5 cells", path, what)
    return fraction


def check_times_near(
    path: str | Path,
    times: NDArray[np.datetime64],
    expected: tuple[np.datetime64, np.datetime64],
    what: str,
) -> None:
    """Raise ``InputFileError`` when the finite ``times`` leave ``expected`` (first, last) or run
    backwards: the sign of a time axis decoded with the wrong unit or epoch."""
    valid = times[~np.isnat(times)]
    if valid.size == 0:
        raise InputFileError(f"{what} holds no valid time", path)
    first, last = valid.min(), valid.max()
    if first < expected[0] or last > expected[1]:
        raise InputFileError(
            f"{what} decodes to {np.datetime_as_string(first, unit='s')}.."
            f"{np.datetime_as_string(last, unit='s')}, outside "
            f"{np.datetime_as_string(expected[0], unit='s')}.."
            f"{np.datetime_as_string(expected[1], unit='s')}: wrong time units?",
            path,
        )
    if (np.diff(valid.astype(np.int64)) < 0).any():
        raise InputFileError(f"{what} runs backwards (scanline times must not decrease)", path)


def _describe_axis(values: NDArray[Any]) -> str:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return "no points"
    step = f" step {float(np.median(np.diff(values))):g}" if values.size > 1 else ""
    return f"{values.size} points {float(values[0]):g}..{float(values[-1]):g}{step}"


def grid_difference(
    a: tuple[NDArray[Any], NDArray[Any]], b: tuple[NDArray[Any], NDArray[Any]]
) -> str | None:
    """How grid ``a`` (lat, lon centres) differs from grid ``b``, e.g. ``lat: 13 points
    49..52 step 0.25 vs 13 points 49.1..52.1 step 0.25``; None when they are equal."""
    parts = []
    for axis, x, y in (("lat", a[0], b[0]), ("lon", a[1], b[1])):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape or not np.allclose(x, y, rtol=0, atol=1e-9):
            parts.append(f"{axis}: {_describe_axis(x)} vs {_describe_axis(y)}")
    return "; ".join(parts) or None


S5P_LAUNCH = np.datetime64("2017-10-13", "ns")


def check_l2_values(part: xr.Dataset, path: str | Path) -> None:
    """A decoded L2 file (``tropomi.py``'s dataset): NO2 and its precision against their units
    (a few outliers allowed), pixel centres on the globe, and scanline times within a day of
    the file name's span (else between launch and tomorrow), never running backwards."""
    for name in ("no2", "no2_precision"):
        check_range(path, name, part[name].values, max_outside=MAX_L2_OUTSIDE_FRACTION)
    for name in ("latitude", "longitude"):
        check_range(path, name, part[name].values)
    day = np.timedelta64(1, "D")
    if "start" in part.attrs and "end" in part.attrs:
        span = (_utc(part.attrs["start"]) - day, _utc(part.attrs["end"]) + day)
    else:
        now = np.datetime64(dt.datetime.now(dt.UTC).replace(tzinfo=None), "ns")
        span = (S5P_LAUNCH, now + day)
    check_times_near(path, part["time"].values, span, "PRODUCT/time + delta_time")


def _utc(iso: str) -> np.datetime64:
    """``2021-03-01T12:00:00Z`` -> datetime64[ns]."""
    return np.datetime64(iso.rstrip("Z"), "ns")
