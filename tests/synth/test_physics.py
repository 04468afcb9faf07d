"""Physics of the simulated world: transport, lifetime, meteorology, emissions, satellite."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from no2fusion.config import ClimateConfig, EmissionsConfig, SatelliteConfig
from no2fusion.grid import BBox, create_target_grid
from no2fusion.synth.emissions import build_emissions, time_factors
from no2fusion.synth.meteorology import MeteorologyModel, cos_solar_zenith, make_met_grid
from no2fusion.synth.satellite import across_track_edges, observe, overpass_for_day
from no2fusion.synth.transport import (
    Bilinear,
    GridMetrics,
    hour_inputs,
    loss_rate_per_s,
    sun_loss_coefficient,
)
from no2fusion.vocab import REGION_CODES

GRID = create_target_grid(BBox(50.0, 51.2, 6.0, 7.6), 0.1)  # 12 x 16 cells


def _zeros() -> np.ndarray:
    return np.zeros(GRID.shape)


def test_closed_domain_without_decay_gains_exactly_the_emitted_mass() -> None:
    rng = np.random.default_rng(0)
    metrics = GridMetrics(GRID)
    column = rng.uniform(5, 50, GRID.shape)
    emission = rng.uniform(0, 0.05, GRID.shape)
    start = metrics.mass(column)
    emitted = 0.0
    for _ in range(6):
        u, v = rng.normal(0, 8, GRID.shape), rng.normal(0, 8, GRID.shape)  # divergent, random
        metrics.advance(
            column, u, v, emission, _zeros(), 30.0, 3600.0, diffusivity=2000.0, closed=True
        )
        emitted += float((emission * metrics.area[:, None]).sum()) * 3600.0
    assert metrics.mass(column) - start == pytest.approx(emitted, rel=1e-10)
    assert column.min() >= 0.0  # upwind + CFL-limited substeps stay positive


def test_plume_moves_downwind() -> None:
    metrics = GridMetrics(GRID)
    emission = _zeros()
    emission[6, 3] = 0.1
    for u_speed, side in ((6.0, 1), (-6.0, -1)):
        column = _zeros()
        u, v = np.full(GRID.shape, u_speed), _zeros()
        for _ in range(3):
            metrics.advance(column, u, v, emission, _zeros(), 0.0, 3600.0, diffusivity=0.0)
        east = column[:, 4:].sum()
        west = column[:, :3].sum()
        assert (east > 10 * west) if side > 0 else (west > 10 * east)
        assert column[:, 4:].sum() + column[:, :3].sum() > 0
        assert column[5, :].sum() < column[6, :].sum()  # no northward spread without v


def test_stronger_wind_lowers_the_column_over_a_source_as_ventilation_predicts() -> None:
    metrics = GridMetrics(GRID)
    emission = _zeros()
    emission[6, 5] = 0.05
    k = np.full(GRID.shape, 1.0 / (6 * 3600.0))
    over_source = {}
    for speed in (3.0, 10.0):
        column = _zeros()
        u = np.full(GRID.shape, speed)
        for _ in range(24):
            n_sub = metrics.advance(column, u, _zeros(), emission, k, 0.0, 3600.0, 0.0)
        over_source[speed] = column[6, 5]
        # 1-D upwind steady state of the source cell, dC/dt = E - (u / dx) C - k C: continuous
        # E / (u / dx + k); the scheme (step, then exact decay q = exp(-k dt)) settles at
        # dt E q / (1 - q + dt (u / dx) q), which tends to it as dt -> 0
        ventilation = speed / metrics.dx[6]
        dt_sub = 3600.0 / n_sub
        q = np.exp(-k[0, 0] * dt_sub)
        discrete = dt_sub * 0.05 * q / (1 - q + dt_sub * ventilation * q)
        assert over_source[speed] == pytest.approx(discrete, rel=1e-6)
        assert over_source[speed] == pytest.approx(0.05 / (ventilation + k[0, 0]), rel=0.02)
    assert over_source[10.0] < 0.4 * over_source[3.0]


def test_boundary_inflow_fills_a_clean_domain_with_the_background() -> None:
    # west wind only: east-west faces all have the same length, so the flow has no divergence
    # and the inflow value fills the domain exactly (a uniform v would converge poleward)
    metrics = GridMetrics(GRID)
    column = _zeros()
    for _ in range(24):
        metrics.advance(
            column, np.full(GRID.shape, 8.0), _zeros(), _zeros(), _zeros(), 20.0, 3600.0
        )
    np.testing.assert_allclose(column, 20.0, rtol=1e-9)


def test_lifetime_is_shorter_in_summer_and_calibrated_at_summer_noon() -> None:
    lat = 50.0
    k_sun = sun_loss_coefficient(lat, 3.0, 16.0)
    hours = np.arange(24) + 0.5
    noon_summer = loss_rate_per_s(
        cos_solar_zenith(lat, 172.0, 12.0), np.array(288.0), np.array(1000.0), k_sun, 16.0
    )
    assert 1.0 / float(noon_summer) / 3600.0 == pytest.approx(3.0, rel=1e-6)
    lifetimes = {}
    for name, doy, t2m, blh in (("winter", 15.0, 275.0, 500.0), ("summer", 196.0, 292.0, 1400.0)):
        rate = loss_rate_per_s(
            cos_solar_zenith(lat, doy, hours), np.full(24, t2m), np.full(24, blh), k_sun, 16.0
        )
        lifetimes[name] = 1.0 / rate.mean() / 3600.0  # daily-mean lifetime, hours
    assert lifetimes["summer"] < 0.6 * lifetimes["winter"]
    # night (no sunlight) at 288 K and 1000 m is exactly the night lifetime
    assert 1.0 / float(
        loss_rate_per_s(np.array(-0.3), np.array(288.0), np.array(1000.0), k_sun, 16.0)
    ) == pytest.approx(16 * 3600)


def test_fused_hour_inputs_match_the_numpy_path() -> None:
    met_grid = make_met_grid(GRID, 0.25, 0.5)
    model = MeteorologyModel(met_grid, ClimateConfig(), np.random.default_rng(1))
    hours = np.arange("2021-06-01T00", "2021-06-02T00", dtype="datetime64[h]")
    met = model.generate(hours)
    lon2, lat2 = np.meshgrid(GRID.lon, GRID.lat)
    bil = Bilinear(met_grid.lat, met_grid.lon, lat2, lon2)
    doy = np.full(24, 152.0)
    mid = np.arange(24) + 0.5
    u, v, loss = hour_inputs(
        met["u10"],
        met["v10"],
        met["t2m"],
        met["blh"],
        bil.j,
        bil.i,
        bil.wy,
        bil.wx,
        lat2.ravel(),
        lon2.ravel(),
        doy,
        mid,
        2e-5,
        16.0,
    )
    np.testing.assert_allclose(u.reshape(24, *GRID.shape), bil(met["u10"]), rtol=1e-6, atol=1e-6)
    cos_sza = cos_solar_zenith(
        lat2[None], doy[:, None, None], mid[:, None, None] + lon2[None] / 15.0
    )
    expected = loss_rate_per_s(cos_sza, bil(met["t2m"]), bil(met["blh"]), 2e-5, 16.0)
    np.testing.assert_allclose(loss.reshape(24, *GRID.shape), expected, rtol=1e-6)


def test_meteorology_has_persistent_regimes_and_seasonal_diurnal_cycles() -> None:
    grid = create_target_grid(BBox(50.0, 50.4, 6.0, 6.4), 0.1)
    met_grid = make_met_grid(grid, 0.25, 0.25)
    model = MeteorologyModel(
        met_grid, ClimateConfig(synoptic_timescale_days=3.0), np.random.default_rng(4)
    )
    hours = np.arange("2021-01-01T00", "2022-01-01T00", dtype="datetime64[h]")
    met = {}
    for chunk in np.array_split(hours, 6):  # state carries across calls
        for name, values in model.generate(chunk).items():
            met.setdefault(name, []).append(values)
    fields = {name: np.concatenate(parts) for name, parts in met.items()}
    u = fields["u10"].mean(axis=(1, 2))
    u = u - u.mean()

    def autocorr(lag: int) -> float:
        return float(np.corrcoef(u[:-lag], u[lag:])[0, 1])

    assert autocorr(24) > 0.5  # a regime persists for days
    assert autocorr(24 * 20) < 0.3  # and is forgotten after weeks
    local_noon = (np.arange(hours.size) % 24) == 12
    local_night = (np.arange(hours.size) % 24) == 2
    blh = fields["blh"].mean(axis=(1, 2))
    t2m = fields["t2m"].mean(axis=(1, 2))
    assert blh[local_noon].mean() > 2 * blh[local_night].mean()
    jan, jul = slice(0, 31 * 24), slice(181 * 24, 212 * 24)
    assert blh[jul][local_noon[jul]].mean() > 1.5 * blh[jan][local_noon[jan]].mean()
    assert t2m[jul].mean() - t2m[jan].mean() > 12.0
    assert (fields["d2m"] <= fields["t2m"]).all()
    assert fields["tcc"].min() >= 0.0 and fields["tcc"].max() <= 1.0
    assert 0.4 < fields["tcc"].mean() < 0.7
    assert fields["blh"].min() >= 50.0


def test_emission_map_regions_and_cycles() -> None:
    grid = create_target_grid(BBox(47.0, 53.4, 4.0, 10.4), 0.1)
    config = EmissionsConfig()
    emissions = build_emissions(grid, config, np.random.default_rng(2))
    counts = {name: int((emissions.region == code).sum()) for name, code in REGION_CODES.items()}
    assert all(count > 0 for count in counts.values()), counts
    urban = emissions.region == REGION_CODES["urban"]
    background = emissions.region == REGION_CODES["background"]
    assert emissions.total[urban].mean() > 10 * emissions.total[background].mean()
    monday, sunday = dt.datetime(2021, 3, 1), dt.datetime(2021, 3, 7)
    assert time_factors(sunday, 12.0, config)[0] == pytest.approx(
        config.weekend_factor * time_factors(monday, 12.0, config)[0], rel=0.02
    )
    assert (
        time_factors(dt.datetime(2021, 1, 13), 12.0, config)[0]
        > time_factors(dt.datetime(2021, 7, 14), 12.0, config)[0]
    )
    daily = np.mean([time_factors(dt.datetime(2021, 4, 7), h + 0.5, config)[0] for h in range(24)])
    seasonal = 1 + (config.winter_factor - 1) * np.cos(2 * np.pi * (97 - 15) / 365.25)
    assert daily / seasonal == pytest.approx(1.0, abs=0.03)  # the diurnal profile averages to 1


def test_across_track_pixels_widen_toward_the_edge() -> None:
    edges = across_track_edges(450, 3.5, 2600.0)
    widths = np.diff(edges)
    assert edges[0] == pytest.approx(-1300.0) and edges[-1] == pytest.approx(1300.0)
    assert widths[225] == pytest.approx(3.5, rel=1e-3)
    assert widths[0] > 2.5 * widths[225]
    assert np.all(np.diff(widths[225:]) > 0)


def test_satellite_swath_geometry_noise_and_clouds() -> None:
    config = SatelliteConfig(ground_pixels=120, swath_width_km=700.0)
    met_grid = make_met_grid(GRID, 0.25, 0.5)
    truth = np.full(GRID.shape, 60.0)
    tcc = np.zeros(met_grid.shape)
    tcc[:, : met_grid.shape[1] // 2] = 0.9  # western half cloudy
    offsets = []
    for day in range(16):
        op = overpass_for_day(
            day,
            dt.date(2021, 6, 1) + dt.timedelta(days=day),
            GRID,
            config,
            np.random.default_rng(day),
        )
        offsets.append(op.offset_km)
        assert op.heading_rad < 0  # ascending, sun-synchronous: west of north
    assert (
        max(offsets) - min(offsets) > 0.9 * config.swath_width_km / 2
    )  # the track shifts day to day
    # day 2 of the 16-day pattern: nadir ~250 km east of the domain centre
    op = overpass_for_day(2, dt.date(2021, 6, 3), GRID, config, np.random.default_rng(0))
    swath = observe(op, GRID, truth, met_grid, tcc, 60.0, config, np.random.default_rng(1))
    assert swath.latitude.shape[1] == 120
    times = swath.scanline_time.astype(np.int64)
    assert np.all(np.diff(times) > 0) and np.all(np.diff(swath.latitude[:, 60]) > 0)  # ascending
    # local solar time at nadir ~13:30
    nadir_lon = float(swath.longitude[swath.latitude.shape[0] // 2, 60])
    utc = (times[times.size // 2] % 86_400_000) / 3_600_000
    assert (utc + nadir_lon / 15.0) % 24 == pytest.approx(13.5, abs=0.1)
    # the swath covers the domain from south to north
    assert (
        swath.latitude_bounds.min() < GRID.lat_edges[0]
        and swath.latitude_bounds.max() > GRID.lat_edges[-1]
    )
    inside = (
        (swath.latitude > GRID.lat_edges[0])
        & (swath.latitude < GRID.lat_edges[-1])
        & (swath.longitude > GRID.lon_edges[0])
        & (swath.longitude < GRID.lon_edges[-1])
    )
    valid = inside & np.isfinite(swath.no2)
    cloudy = valid & (swath.longitude < float(met_grid.lon[met_grid.shape[1] // 2 - 1]) - 0.15)
    clear = valid & (swath.longitude > float(met_grid.lon[met_grid.shape[1] // 2]) + 0.15)
    assert cloudy.sum() > 30 and clear.sum() > 30
    assert swath.qa_value[cloudy].max() < 0.75
    assert swath.qa_value[clear].min() >= 0.8
    # truth and inflow are both 60, so every clear pixel of the swath samples 60 + noise
    east = np.isfinite(swath.no2) & (
        swath.longitude > float(met_grid.lon[met_grid.shape[1] // 2]) + 0.15
    )
    assert east.sum() > 500
    z = (swath.no2[east] * 1e6 - 60.0) / (swath.no2_precision[east] * 1e6)
    assert z.std() == pytest.approx(1.0, abs=0.05)  # the precision variable is the noise sigma
    assert abs(z.mean()) < 0.05


def test_crop_margin_keeps_only_the_ground_pixels_near_the_domain() -> None:
    met_grid = make_met_grid(GRID, 0.25, 0.5)
    op = overpass_for_day(2, dt.date(2021, 6, 3), GRID, SatelliteConfig(), np.random.default_rng(0))
    args = (op, GRID, np.full(GRID.shape, 30.0), met_grid, np.zeros(met_grid.shape), 30.0)
    full = observe(*args, SatelliteConfig(), np.random.default_rng(1))
    cropped = observe(*args, SatelliteConfig(crop_margin_deg=0.2), np.random.default_rng(1))
    assert full.latitude.shape[1] == 450
    assert 10 < cropped.latitude.shape[1] < 150
    assert cropped.latitude.shape[0] == full.latitude.shape[0]
    # every kept column has a pixel within the margin, and the domain is still covered
    assert (cropped.longitude.max(axis=0) > GRID.lon_edges[0] - 0.2).all()
    assert (cropped.longitude.min(axis=0) < GRID.lon_edges[-1] + 0.2).all()
    assert cropped.longitude_bounds.min() < GRID.lon_edges[0]
    assert cropped.longitude_bounds.max() > GRID.lon_edges[-1]


def test_regular_bilinear_kernel_matches_the_general_interpolator() -> None:
    from no2fusion.synth.transport import bilinear_regular

    rng = np.random.default_rng(9)
    field = rng.normal(size=GRID.shape)
    lat = rng.uniform(49.8, 51.4, (30, 7))  # some points beyond the outer cell centres
    lon = rng.uniform(5.8, 7.8, (30, 7))
    general = Bilinear(GRID.lat, GRID.lon, lat, lon)(field)
    fast = bilinear_regular(field, GRID.lat[0], 0.1, GRID.lon[0], 0.1, lat, lon)
    np.testing.assert_allclose(fast, general, rtol=1e-9, atol=1e-12)
    # linear fields are reproduced exactly inside the grid
    lat2 = np.broadcast_to(GRID.lat[:, None], GRID.shape)
    inside = (lat > GRID.lat[0]) & (lat < GRID.lat[-1]) & (lon > GRID.lon[0]) & (lon < GRID.lon[-1])
    exact = bilinear_regular(3.0 * lat2 + 1.0, GRID.lat[0], 0.1, GRID.lon[0], 0.1, lat, lon)
    np.testing.assert_allclose(exact[inside], 3.0 * lat[inside] + 1.0, rtol=1e-9)
