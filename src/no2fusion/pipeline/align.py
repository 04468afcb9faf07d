"""Temporal alignment: hourly ERA5 fields -> the ``steps`` hourly steps ending at an overpass.

Sits in ``pipeline/`` after the regridder (which gives the overpass time: the mean UTC time of the
valid pixels over the domain) and before ``features.py``. Input is the canonical meteorology from
``io/era5.read_era5`` (dims time, lat, lon); output has dims (hour, lat, lon) with
``hour = -(steps-1) .. 0`` and a ``met_time`` (hour) coordinate saying which time each step is.

No linear interpolation in time (seed: nearest or windowed aggregation only):

- ``nearest``: step 0 is the ERA5 ``valid_time`` nearest the overpass (ties go to the earlier
  hour); it must lie within ``max(window_hours, 1 h) / 2`` of the overpass. Step -k is exactly k
  hours before step 0 and must exist in the data.
- ``window``: step -k is centred on ``overpass - k h``; its value is the mean of the ERA5 fields
  whose ``valid_time`` lies in ``[centre - window_hours/2, centre + window_hours/2]``. Every
  window must hold at least one field. ``met_time`` is the window centre.

A missing hour raises ``NoDataError`` naming the time range the overpass needs and the range the
data covers: the user must download more ERA5 (this is not a per-day problem to skip).
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.errors import NoDataError

HOUR = np.timedelta64(3_600_000_000_000, "ns")


def as_ns(value: Any) -> np.datetime64:
    """Any datetime-like scalar (datetime64, ISO string, datetime) -> datetime64[ns]."""
    return np.datetime64(value, "ns")


def _stamp(value: np.datetime64) -> str:
    return str(np.datetime_as_string(value, unit="m")) + "Z"


class TemporalAligner:
    """Pick (``nearest``) or average (``window``) the hourly fields before each overpass."""

    def __init__(
        self,
        window_hours: float = 1.0,
        method: Literal["nearest", "window"] = "nearest",
        steps: int = 24,
    ) -> None:
        if method not in ("nearest", "window"):
            raise ValueError(f"method must be 'nearest' or 'window', got {method!r}")
        if not window_hours > 0:
            raise ValueError(f"window_hours must be > 0, got {window_hours}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.window_hours = float(window_hours)
        self.method = method
        self.steps = int(steps)

    @property
    def hours(self) -> NDArray[np.int64]:
        """Step offsets -(steps-1) .. 0 (hours)."""
        return np.arange(-(self.steps - 1), 1, dtype=np.int64)

    def required_span(self, overpass_time: np.datetime64) -> tuple[np.datetime64, np.datetime64]:
        """(first, last) ERA5 time an overpass may need (inclusive bounds, UTC)."""
        op = as_ns(overpass_time)
        half = np.timedelta64(int(max(self.window_hours, 1.0) / 2 * 3.6e12), "ns")
        return op - (self.steps - 1) * HOUR - half, op + half

    @overload
    def align_to_overpass(self, met: xr.Dataset, overpass_time: Any, /) -> xr.Dataset: ...

    @overload
    def align_to_overpass(
        self, met: NDArray[Any], times: Any, overpass_time: Any, /
    ) -> NDArray[Any]: ...

    def align_to_overpass(self, met: Any, *args: Any) -> Any:
        """Hourly steps ending at the overpass.

        Two forms:

        - ``align_to_overpass(met, overpass_time)``: ``met`` is a dataset with a ``time``
          dimension (datetime64, ascending) plus any spatial dims; every data variable that has
          ``time`` is aligned, others are dropped. Returns a dataset with dims
          (hour, <spatial dims>), ``hour`` = -(steps-1)..0, coordinate ``met_time`` (hour)
          datetime64[ns] and attribute ``overpass_time`` (ISO string).
        - the seed's ``align_to_overpass(data, times, overpass_time)``: ``data`` an array whose
          first axis is time, ``times`` (time,) datetime64; returns an array (steps, ...).

        Raises:
            NoDataError: the data do not cover the hours this overpass needs.
        """
        if len(args) == 2:
            values = np.asarray(met)
            dims = ("time", *[f"dim_{i}" for i in range(1, values.ndim)])
            wrapped = xr.Dataset(
                {"data": (dims, values)},
                coords={"time": np.asarray(args[0]).astype("datetime64[ns]")},
            )
            return self._align(wrapped, args[1])["data"].values
        if len(args) != 1:
            raise TypeError("align_to_overpass(met, overpass_time) or (data, times, overpass_time)")
        return self._align(met, args[0])

    def _align(self, met: xr.Dataset, overpass_time: Any) -> xr.Dataset:
        times = np.asarray(met["time"].values).astype("datetime64[ns]")
        op = as_ns(overpass_time)
        if np.isnat(op):
            raise NoDataError("overpass time is NaT; cannot align meteorology")
        fields = [str(name) for name, var in met.data_vars.items() if "time" in var.dims]
        met = met[fields]
        if self.method == "nearest":
            aligned, met_time = self._nearest(met, times, op)
        else:
            aligned, met_time = self._window(met, times, op)
        aligned = aligned.assign_coords(hour=self.hours, met_time=("hour", met_time))
        aligned["hour"].attrs = {"units": "h", "long_name": "hours relative to the overpass step"}
        aligned.attrs["overpass_time"] = _stamp(op)
        return aligned

    def _missing(self, times: NDArray[np.datetime64], op: np.datetime64, what: str) -> NoDataError:
        first, last = self.required_span(op)
        have = f"{_stamp(times[0])}..{_stamp(times[-1])}" if times.size else "no times"
        return NoDataError(
            f"ERA5 does not cover the overpass at {_stamp(op)}: need hourly fields "
            f"{_stamp(first)}..{_stamp(last)} ({what}); the ERA5 files cover {have}"
        )

    def _nearest_index(
        self, times: NDArray[np.datetime64], op: np.datetime64
    ) -> tuple[NDArray[np.intp], NDArray[np.datetime64]]:
        """Indices into ``times`` of the steps, and their times (nearest method)."""
        if times.size == 0:
            raise self._missing(times, op, "no ERA5 time at all")
        distance = np.abs(times - op)
        nearest = int(np.argmin(distance))  # first minimum = earlier hour on a tie
        tolerance = np.timedelta64(int(max(self.window_hours, 1.0) / 2 * 3.6e12), "ns")
        if distance[nearest] > tolerance:
            raise self._missing(times, op, "no field near the overpass")
        wanted = times[nearest] + self.hours * HOUR  # (steps,)
        index = np.clip(np.searchsorted(times, wanted), 0, times.size - 1)
        found = times[index] == wanted
        if not found.all():
            gap = wanted[~found]
            raise self._missing(times, op, f"{gap.size} hour(s) missing, first {_stamp(gap[0])}")
        return index, wanted

    def _window_bounds(
        self, times: NDArray[np.datetime64], op: np.datetime64
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.datetime64]]:
        """[lo, hi) index ranges into ``times`` per step, and the window centres."""
        centres = op + self.hours * HOUR  # (steps,)
        half = np.timedelta64(int(self.window_hours / 2 * 3.6e12), "ns")
        lo = np.searchsorted(times, centres - half, side="left")
        hi = np.searchsorted(times, centres + half, side="right")
        empty = hi <= lo
        if empty.any():
            first = centres[np.flatnonzero(empty)[0]]
            raise self._missing(times, op, f"no field within the window around {_stamp(first)}")
        return lo, hi, centres

    def check_coverage(self, times: NDArray[np.datetime64], overpass_time: np.datetime64) -> None:
        """Raise ``NoDataError`` if ``times`` (ascending) lack a step this overpass needs."""
        t = np.asarray(times).astype("datetime64[ns]")
        op = as_ns(overpass_time)
        if self.method == "nearest":
            self._nearest_index(t, op)
        else:
            self._window_bounds(t, op)

    def _nearest(
        self, met: xr.Dataset, times: NDArray[np.datetime64], op: np.datetime64
    ) -> tuple[xr.Dataset, NDArray[np.datetime64]]:
        index, wanted = self._nearest_index(times, op)
        out = met.isel(time=index).rename({"time": "hour"})
        return out.drop_vars(
            [c for c in out.coords if c != "hour" and "hour" in out[c].dims]
        ), wanted

    def _window(
        self, met: xr.Dataset, times: NDArray[np.datetime64], op: np.datetime64
    ) -> tuple[xr.Dataset, NDArray[np.datetime64]]:
        lo, hi, centres = self._window_bounds(times, op)
        parts = {}
        for name, var in met.data_vars.items():
            values = np.moveaxis(np.asarray(var.values), var.dims.index("time"), 0)
            cumulative = np.concatenate(
                [np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0, dtype=np.float64)]
            )
            counts = (hi - lo).reshape(-1, *([1] * (values.ndim - 1)))
            mean = (cumulative[hi] - cumulative[lo]) / counts  # (steps, ...)
            dims = ("hour", *[d for d in var.dims if d != "time"])
            parts[name] = (dims, mean.astype(values.dtype), var.attrs)
        coords = {name: coord for name, coord in met.coords.items() if "time" not in coord.dims}
        return xr.Dataset(parts, coords=coords), centres
