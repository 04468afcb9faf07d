"""The 13 meteorological and time features (DESIGN §2), in ``vocab.FEATURES`` order.

Sits in ``pipeline/`` after ``align.py``: aligned hourly meteorology (canonical ids and units from
``io/era5``) in, a float32 array with a trailing feature axis of 13 out. Features are stored in
the cube unnormalized; the ``RobustNormalizer`` is applied later, in training.

Definitions (u = u10, v = v10 in m s-1; t = UTC time of the step):

==================  ===========================================================================
u_norm              u / 10 m s-1: the eastward component scaled by a reference speed of 10 m s-1
                    (keeps the speed information; u/|wind| would only repeat wind_dir_sin).
v_norm              v / 10 m s-1.
wind_dir_sin        sin(θ), θ = meteorological wind direction, the direction the wind blows FROM,
                    clockwise from north: θ = atan2(-u, -v). A west wind (u > 0) has θ = 270°,
                    so sin = -1, cos = 0. Calm air (speed < 1e-6 m s-1) gives sin = cos = 0.
wind_dir_cos        cos(θ).
wind_speed          sqrt(u² + v²), m s-1.
blh                 boundary layer height, m.
t2m                 2 m temperature, K.
relative_humidity   2 m relative humidity over water, %, 100 e_s(d2m) / e_s(t2m) with the IFS
                    Teten constants (FORMATS C.3), clipped to 0..100 (``io.era5.relative_humidity``;
                    taken from an ``rh`` field when present).
surface_pressure    surface pressure, Pa.
day_sin, day_cos    sin/cos(2π d / 365.25), d = fractional day of the year of t (0 at 1 Jan
                    00:00 UTC).
hour_sin, hour_cos  sin/cos(2π h / 24), h = fractional UTC hour of t. UTC rather than local solar
                    time: one value per step for the whole domain, and over a regional domain the
                    local solar hour differs from it only by a constant lon/15 h offset (≈ 0.5 h
                    across the default 6.4° domain), which the model absorbs.
==================  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.io.era5 import relative_humidity
from no2fusion.vocab import FEATURES

REFERENCE_WIND_M_S = 10.0
DAYS_PER_YEAR = 365.25
_CALM_M_S = 1e-6
_NEEDED = ("u10", "v10", "blh", "t2m", "sp")


def day_of_year_fraction(times: NDArray[np.datetime64]) -> NDArray[np.float64]:
    """Fractional day of the year (0 at 1 Jan 00:00 UTC), any shape."""
    t = np.asarray(times).astype("datetime64[ns]")
    year_start = t.astype("datetime64[Y]").astype("datetime64[ns]")
    return (t - year_start) / np.timedelta64(86_400_000_000_000, "ns")


def utc_hour_fraction(times: NDArray[np.datetime64]) -> NDArray[np.float64]:
    """Fractional UTC hour 0..24, any shape."""
    t = np.asarray(times).astype("datetime64[ns]")
    day_start = t.astype("datetime64[D]").astype("datetime64[ns]")
    return (t - day_start) / np.timedelta64(3_600_000_000_000, "ns")


class FeatureEngineer:
    """Meteorology + times -> (..., 13) features in ``vocab.FEATURES`` order (see module doc)."""

    feature_names: tuple[str, ...] = FEATURES

    def transform(
        self,
        met_aligned: xr.Dataset | Mapping[str, Any],
        times: Any = None,
    ) -> NDArray[np.float32]:
        """Compute the features.

        Args:
            met_aligned: ``u10 v10`` (m s-1), ``blh`` (m), ``t2m`` (K), ``sp`` (Pa) and ``rh`` (%)
                or ``d2m`` (K); all of one shape S. An ``xr.Dataset`` (e.g. dims hour, lat, lon
                from ``TemporalAligner``) or a mapping of arrays.
            times: UTC times of the steps, datetime64. For a dataset: a DataArray whose dims are a
                subset of the fields' dims, or an array matching the fields' LEADING dims; for a
                mapping: an array matching the leading dims of S (e.g. (T,) for fields (T, lat,
                lon)). None: ``met_time`` (or ``time``) from ``met_aligned``.

        Returns:
            float32 array of shape S + (13,).
        """
        fields, stamp = self._fields(met_aligned, times)
        u, v = fields["u10"], fields["v10"]
        speed = np.hypot(u, v)
        calm = speed < _CALM_M_S
        safe = np.where(calm, 1.0, speed)
        # direction the wind comes from: the unit vector pointing upwind is (-u, -v)/|w|
        dir_sin = np.where(calm, 0.0, -u / safe)
        dir_cos = np.where(calm, 0.0, -v / safe)
        if "rh" in fields:
            rh = fields["rh"]
        elif "d2m" in fields:
            rh = relative_humidity(fields["t2m"], fields["d2m"])
        else:
            raise KeyError("features need 'rh' or 'd2m' for relative_humidity")
        day = 2.0 * np.pi * day_of_year_fraction(stamp) / DAYS_PER_YEAR
        hour = 2.0 * np.pi * utc_hour_fraction(stamp) / 24.0
        shape = u.shape
        columns = {
            "u_norm": u / REFERENCE_WIND_M_S,
            "v_norm": v / REFERENCE_WIND_M_S,
            "wind_dir_sin": dir_sin,
            "wind_dir_cos": dir_cos,
            "wind_speed": speed,
            "blh": fields["blh"],
            "t2m": fields["t2m"],
            "relative_humidity": rh,
            "surface_pressure": fields["sp"],
            "day_sin": np.sin(day),
            "day_cos": np.cos(day),
            "hour_sin": np.sin(hour),
            "hour_cos": np.cos(hour),
        }
        out = np.empty((*shape, len(FEATURES)), dtype=np.float32)
        for index, name in enumerate(FEATURES):
            out[..., index] = np.broadcast_to(columns[name], shape)
        return out

    @staticmethod
    def _fields(
        met: xr.Dataset | Mapping[str, Any], times: Any
    ) -> tuple[dict[str, NDArray[np.float64]], NDArray[np.datetime64]]:
        names = [n for n in (*_NEEDED, "rh", "d2m") if n in met]
        missing = [n for n in _NEEDED if n not in met]
        if missing:
            raise KeyError(f"features need meteorology {missing}")
        if times is None:
            key = next((k for k in ("met_time", "time") if k in met), None)
            if key is None:
                raise KeyError("features need times: pass `times` or a 'met_time'/'time' entry")
            times = met[key]
        if isinstance(met, xr.Dataset):
            dims = met[names[0]].dims
            arrays = {n: met[n].transpose(*dims).values.astype(np.float64) for n in names}
            if isinstance(times, xr.DataArray):
                stamp = times.broadcast_like(met[names[0]]).transpose(*dims).values
            else:
                stamp = np.asarray(times)
        else:
            arrays = {n: np.asarray(met[n], dtype=np.float64) for n in names}
            stamp = np.asarray(times.values if isinstance(times, xr.DataArray) else times)
        shape = arrays[names[0]].shape
        for name, array in arrays.items():
            if array.shape != shape:
                raise ValueError(f"meteorology '{name}' has shape {array.shape}, expected {shape}")
        stamp = stamp.astype("datetime64[ns]")
        if stamp.shape != shape:
            if stamp.shape != shape[: stamp.ndim]:
                raise ValueError(f"times of shape {stamp.shape} do not lead the fields' {shape}")
            stamp = np.broadcast_to(
                stamp.reshape(stamp.shape + (1,) * (len(shape) - stamp.ndim)), shape
            )
        return arrays, stamp
