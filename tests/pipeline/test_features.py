"""FeatureEngineer: the 13 features against their documented definitions."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from no2fusion.io.era5 import relative_humidity
from no2fusion.pipeline.features import FeatureEngineer, day_of_year_fraction, utc_hour_fraction
from no2fusion.vocab import FEATURES

F = {name: i for i, name in enumerate(FEATURES)}


def met(u: float, v: float, n: int = 4) -> dict[str, np.ndarray]:
    return {
        "u10": np.full(n, u),
        "v10": np.full(n, v),
        "blh": np.full(n, 800.0),
        "t2m": np.full(n, 293.15),
        "d2m": np.full(n, 283.15),
        "sp": np.full(n, 100500.0),
    }


TIMES = np.array(
    ["2021-01-01T00:00", "2021-01-01T06:00", "2021-07-02T12:00", "2021-12-31T18:00"],
    dtype="datetime64[ns]",
)


@pytest.mark.parametrize(
    ("u", "v", "sin", "cos"),
    [
        (5.0, 0.0, -1.0, 0.0),  # from the west (270 deg)
        (-5.0, 0.0, 1.0, 0.0),  # from the east (90 deg)
        (0.0, -5.0, 0.0, 1.0),  # from the north (0 deg): blowing southward
        (0.0, 5.0, 0.0, -1.0),  # from the south (180 deg)
        (3.0, 3.0, -np.sqrt(0.5), -np.sqrt(0.5)),  # from the south-west (225 deg)
    ],
)
def test_wind_direction_is_where_the_wind_comes_from(
    u: float, v: float, sin: float, cos: float
) -> None:
    out = FeatureEngineer().transform(met(u, v), TIMES)
    np.testing.assert_allclose(out[:, F["wind_dir_sin"]], sin, atol=1e-6)
    np.testing.assert_allclose(out[:, F["wind_dir_cos"]], cos, atol=1e-6)
    np.testing.assert_allclose(out[:, F["wind_speed"]], np.hypot(u, v), rtol=1e-6)
    np.testing.assert_allclose(out[:, F["u_norm"]], u / 10.0, rtol=1e-6)
    np.testing.assert_allclose(out[:, F["v_norm"]], v / 10.0, rtol=1e-6)


def test_calm_wind_has_no_direction() -> None:
    out = FeatureEngineer().transform(met(0.0, 0.0), TIMES)
    assert np.all(out[:, F["wind_dir_sin"]] == 0) and np.all(out[:, F["wind_dir_cos"]] == 0)
    assert np.all(np.isfinite(out))


def test_physical_features_pass_through_in_their_units() -> None:
    out = FeatureEngineer().transform(met(1.0, 1.0), TIMES)
    np.testing.assert_allclose(out[:, F["blh"]], 800.0)
    np.testing.assert_allclose(out[:, F["t2m"]], 293.15, rtol=1e-7)
    np.testing.assert_allclose(out[:, F["surface_pressure"]], 100500.0)
    np.testing.assert_allclose(out[:, F["relative_humidity"]], 52.52, atol=0.01)  # FORMATS C.3
    with_rh = {**met(1.0, 1.0), "rh": np.full(4, 61.0)}
    np.testing.assert_allclose(
        FeatureEngineer().transform(with_rh, TIMES)[:, F["relative_humidity"]], 61.0
    )


def test_time_encodings() -> None:
    out = FeatureEngineer().transform(met(1.0, 0.0), TIMES)
    # hours 0, 6, 12, 18 UTC -> angle 0, pi/2, pi, 3pi/2
    np.testing.assert_allclose(out[:, F["hour_sin"]], [0, 1, 0, -1], atol=1e-6)
    np.testing.assert_allclose(out[:, F["hour_cos"]], [1, 0, -1, 0], atol=1e-6)
    # 1 Jan 00:00 -> day 0; 2 Jul 12:00 (non-leap) -> day 182.5 = half of 365 -> angle ~ pi
    np.testing.assert_allclose(day_of_year_fraction(TIMES[:3]), [0.0, 0.25, 182.5])
    np.testing.assert_allclose(out[0, F["day_sin"]], 0.0, atol=1e-7)
    np.testing.assert_allclose(out[0, F["day_cos"]], 1.0, atol=1e-7)
    angle = 2 * np.pi * 182.5 / 365.25
    np.testing.assert_allclose(
        out[2, [F["day_sin"], F["day_cos"]]], [np.sin(angle), np.cos(angle)], atol=1e-6
    )
    np.testing.assert_allclose(
        utc_hour_fraction(np.array(["2021-03-04T13:45"], dtype="datetime64[ns]")), [13.75]
    )
    # on the unit circle
    np.testing.assert_allclose(
        out[:, F["day_sin"]] ** 2 + out[:, F["day_cos"]] ** 2, 1.0, rtol=1e-6
    )


def test_dataset_input_with_met_time_broadcasts_over_space() -> None:
    steps, ny, nx = 3, 2, 4
    rng = np.random.default_rng(0)
    data = {
        name: (("hour", "lat", "lon"), rng.uniform(1, 2, (steps, ny, nx)) * scale)
        for name, scale in [
            ("u10", 3),
            ("v10", -2),
            ("blh", 500),
            ("t2m", 280),
            ("d2m", 270),
            ("sp", 1e5),
        ]
    }
    times = np.array(["2021-05-05T10", "2021-05-05T11", "2021-05-05T12"], dtype="datetime64[ns]")
    ds = xr.Dataset(data, coords={"hour": [-2, -1, 0], "met_time": ("hour", times)})
    out = FeatureEngineer().transform(ds)
    assert out.shape == (steps, ny, nx, 13) and out.dtype == np.float32
    np.testing.assert_allclose(
        out[:, 1, 3, F["hour_sin"]], np.sin(2 * np.pi * np.array([10, 11, 12]) / 24), atol=1e-6
    )
    np.testing.assert_allclose(
        out[..., F["relative_humidity"]],
        relative_humidity(ds["t2m"].values, ds["d2m"].values),
        rtol=1e-6,
    )
    # same answer from a mapping with leading-dim times
    plain = {name: ds[name].values for name in ds.data_vars}
    np.testing.assert_array_equal(FeatureEngineer().transform(plain, times), out)


def test_missing_inputs_are_named() -> None:
    bad = met(1.0, 1.0)
    del bad["blh"]
    with pytest.raises(KeyError, match="blh"):
        FeatureEngineer().transform(bad, TIMES)
    with pytest.raises(ValueError, match="times"):
        FeatureEngineer().transform(met(1.0, 1.0), TIMES[:2])
