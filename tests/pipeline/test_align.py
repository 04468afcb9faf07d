"""TemporalAligner: which ERA5 hours each step takes (nearest vs window), and missing hours."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from no2fusion.errors import NoDataError
from no2fusion.pipeline.align import TemporalAligner

T0 = np.datetime64("2021-06-01T00", "ns")
HOURS = 48


def met(start_hour: int = 0, hours: int = HOURS) -> xr.Dataset:
    """Hourly fields whose value is the hour index since T0 (so the picked hour is readable)."""
    h = np.arange(start_hour, start_hour + hours, dtype=np.float64)
    times = T0 + h.astype("timedelta64[h]")
    value = np.broadcast_to(h[:, None, None], (hours, 2, 3)).astype(np.float32)
    return xr.Dataset(
        {"t2m": (("time", "lat", "lon"), value), "blh": (("time", "lat", "lon"), 2 * value)},
        coords={"time": times, "lat": [50.0, 50.25], "lon": [6.0, 6.25, 6.5]},
    )


def overpass(hours: float) -> np.datetime64:
    return T0 + np.timedelta64(int(hours * 3600), "s")


def test_nearest_takes_the_hour_nearest_the_overpass_as_step_0() -> None:
    aligned = TemporalAligner(steps=24).align_to_overpass(met(), overpass(30.6))  # nearest 31
    assert aligned["t2m"].dims == ("hour", "lat", "lon")
    np.testing.assert_array_equal(aligned["hour"].values, np.arange(-23, 1))
    np.testing.assert_array_equal(aligned["t2m"].values[:, 1, 2], np.arange(8, 32))
    np.testing.assert_array_equal(
        aligned["met_time"].values, T0 + np.arange(8, 32).astype("timedelta64[h]")
    )
    np.testing.assert_array_equal(aligned["blh"].values[:, 0, 0], 2 * np.arange(8, 32))
    later = TemporalAligner(steps=24).align_to_overpass(met(), overpass(30.4))  # nearest 30
    assert later["t2m"].values[-1, 0, 0] == 30.0
    tie = TemporalAligner(steps=3).align_to_overpass(met(), overpass(30.5))  # tie -> earlier hour
    np.testing.assert_array_equal(tie["t2m"].values[:, 0, 0], [28, 29, 30])


def test_window_means_the_fields_within_half_a_window() -> None:
    # 1 h window at 30:30: both 30 and 31 are within +-30 min -> mean 30.5
    aligned = TemporalAligner(window_hours=1.0, method="window", steps=4).align_to_overpass(
        met(), overpass(30.5)
    )
    np.testing.assert_allclose(aligned["t2m"].values[:, 0, 0], [27.5, 28.5, 29.5, 30.5])
    np.testing.assert_array_equal(
        aligned["met_time"].values, overpass(30.5) + np.arange(-3, 1).astype("timedelta64[h]")
    )
    # 3 h window at 30:10: hours 29, 30, 31 (28:40..31:40) -> mean 30
    wide = TemporalAligner(window_hours=3.0, method="window", steps=2).align_to_overpass(
        met(), overpass(30 + 1 / 6)
    )
    np.testing.assert_allclose(wide["t2m"].values[:, 1, 1], [29.0, 30.0])
    # a 1 h window at 30:10 holds only hour 30 (29:40..30:40): same as nearest
    narrow = TemporalAligner(method="window", steps=5).align_to_overpass(
        met(), overpass(30 + 1 / 6)
    )
    nearest = TemporalAligner(steps=5).align_to_overpass(met(), overpass(30 + 1 / 6))
    np.testing.assert_array_equal(narrow["t2m"].values, nearest["t2m"].values)


@pytest.mark.parametrize("method", ["nearest", "window"])
def test_missing_hours_raise_naming_the_time_range(method: str) -> None:
    aligner = TemporalAligner(method=method, steps=24)  # type: ignore[arg-type]
    # data start at hour 10: an overpass at 12:20 on day 1 needs hours from 13:00 the day before
    with pytest.raises(
        NoDataError, match=r"2021-05-31T1\d:\d\dZ\.\.2021-06-01T12:\d\dZ.*cover 2021-06-01T10:00Z"
    ):
        aligner.align_to_overpass(met(start_hour=10), overpass(12 + 1 / 3))
    # data end before the overpass
    with pytest.raises(NoDataError, match="does not cover the overpass"):
        aligner.align_to_overpass(met(hours=20), overpass(30.0))
    # a gap inside the 24 h
    gappy = met().drop_isel(time=[20])
    with pytest.raises(
        NoDataError, match="2021-06-01T20:00Z" if method == "nearest" else "window around"
    ):
        aligner.align_to_overpass(gappy, overpass(30.0))
    with pytest.raises(NoDataError):
        aligner.check_coverage(gappy["time"].values, overpass(30.0))
    aligner.check_coverage(met()["time"].values, overpass(30.0))  # no error


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        TemporalAligner(method="linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TemporalAligner(window_hours=0)


def test_seed_call_form_with_an_array_and_times() -> None:
    data = met()
    values = data["t2m"].values  # (time, lat, lon)
    out = TemporalAligner(steps=4).align_to_overpass(values, data["time"].values, overpass(30.2))
    assert isinstance(out, np.ndarray) and out.shape == (4, 2, 3)
    np.testing.assert_array_equal(out[:, 0, 0], [27, 28, 29, 30])
