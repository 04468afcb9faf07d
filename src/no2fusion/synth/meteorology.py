"""Hourly meteorology of the simulated world on an ERA5-like grid.

Sits in ``synth`` between the emissions and the transport: it produces u10, v10, blh, t2m, d2m,
sp, tcc on a regular 0.25 deg grid (the domain plus ``met_margin_deg``) in ERA5 units, which are
both written as ERA5 files and interpolated to the target grid to drive the transport.

Physics, kept simple but coherent:
- Synoptic regimes: domain-wide wind, temperature, pressure, humidity and cloud anomalies are
  Ornstein-Uhlenbeck processes with the timescale ``synoptic_timescale_days``, so wind direction
  and speed persist for days. Surface pressure carries the geostrophic gradient of the wind
  (p = p0 + rho f (v x - u y) / 0.7), and high pressure means fewer clouds.
- Spatial structure: a few Fourier modes (wavelengths 80-600 km) whose amplitudes are OU
  processes and whose phases move with the mean wind, so clouds drift downwind. The wind's
  spatial perturbation derives from such a field as a stream function, so it is non-divergent
  (a divergent perturbation would pile the column up along convergence lines).
- Cycles: seasonal and diurnal temperature; boundary layer that grows after sunrise, peaks in
  the early afternoon (higher in summer, lower under clouds, deeper in strong wind) and
  collapses to ``blh_night_m`` at night.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter

from no2fusion.config import ClimateConfig
from no2fusion.grid import Grid

KM_PER_DEG_LAT = 110.57
KM_PER_DEG_LON_EQ = 111.32
MET_VARIABLES = ("u10", "v10", "blh", "t2m", "d2m", "sp", "tcc")
N_MODES = 6


@dataclass(frozen=True)
class MetGrid:
    """ERA5-like regular grid, ascending latitude (the writer stores it north -> south)."""

    lat: NDArray[np.float64]  # (n_lat,) degrees north, ascending
    lon: NDArray[np.float64]  # (n_lon,) degrees east, ascending
    lat0: float  # domain centre, degrees
    lon0: float

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lat.size, self.lon.size)

    def xy_km(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Grid-point coordinates in km from the domain centre, each (n_lat, n_lon)."""
        lon2, lat2 = np.meshgrid(self.lon, self.lat)
        x = (lon2 - self.lon0) * KM_PER_DEG_LON_EQ * np.cos(np.deg2rad(self.lat0))
        y = (lat2 - self.lat0) * KM_PER_DEG_LAT
        return x, y


def make_met_grid(grid: Grid, resolution: float, margin_deg: float) -> MetGrid:
    """ERA5-aligned grid (multiples of ``resolution``) covering ``grid`` plus ``margin_deg``."""
    lo_lat = np.floor((grid.lat_edges[0] - margin_deg) / resolution - 1e-9) * resolution
    hi_lat = np.ceil((grid.lat_edges[-1] + margin_deg) / resolution + 1e-9) * resolution
    lo_lon = np.floor((grid.lon_edges[0] - margin_deg) / resolution - 1e-9) * resolution
    hi_lon = np.ceil((grid.lon_edges[-1] + margin_deg) / resolution + 1e-9) * resolution
    lat = np.round(np.arange(round((hi_lat - lo_lat) / resolution) + 1) * resolution + lo_lat, 6)
    lon = np.round(np.arange(round((hi_lon - lo_lon) / resolution) + 1) * resolution + lo_lon, 6)
    return MetGrid(
        lat=lat.clip(-90, 90),
        lon=lon,
        lat0=float(0.5 * (grid.lat_edges[0] + grid.lat_edges[-1])),
        lon0=float(0.5 * (grid.lon_edges[0] + grid.lon_edges[-1])),
    )


def solar_declination_rad(day_of_year: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """Solar declination (radians) for a day of year (Cooper's formula)."""
    return np.asarray(
        np.deg2rad(-23.44) * np.cos(2 * np.pi * (np.asarray(day_of_year) + 10) / 365.0)
    )


def cos_solar_zenith(
    lat_deg: NDArray[np.float64] | float,
    day_of_year: NDArray[np.float64] | float,
    local_solar_hour: NDArray[np.float64] | float,
) -> NDArray[np.float64]:
    """Cosine of the solar zenith angle (negative at night); broadcasts its arguments."""
    decl = solar_declination_rad(day_of_year)
    phi = np.deg2rad(lat_deg)
    hour_angle = np.deg2rad(15.0 * (np.asarray(local_solar_hour) - 12.0))
    return np.asarray(np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(hour_angle))


def grib_quantize(values: NDArray[np.floating], bits: int = 16) -> NDArray[np.float32]:
    """Round a field the way ERA5's GRIB simple packing does: ``bits`` bits over its range with a
    power-of-two step (binary scale factor), so values are R + k 2^E. The netCDF the CDS
    converts from GRIB carries exactly such values (they also compress far better)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        return np.asarray(values, dtype=np.float32)
    step = 2.0 ** np.ceil(np.log2((hi - lo) / (2**bits - 1)))
    reference = np.floor(lo / step) * step
    return np.asarray(reference + np.rint((values - reference) / step) * step, dtype=np.float32)


def _hours_to_datetimes(hours: NDArray[np.datetime64]) -> list[dt.datetime]:
    seconds = hours.astype("datetime64[s]").astype(np.int64)
    return [dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(s)) for s in seconds]


@dataclass
class _OU:
    """A vector of independent Ornstein-Uhlenbeck processes sampled hourly (AR(1))."""

    timescale_h: float
    sigma: NDArray[np.float64]
    state: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def advance(self, rng: np.random.Generator, n_hours: int) -> NDArray[np.float64]:
        """The next ``n_hours`` values, (n_hours, n); continues from the previous call."""
        phi = np.exp(-1.0 / self.timescale_h)
        n = self.sigma.size
        if self.state.size == 0:
            self.state = rng.standard_normal(n) * self.sigma
        shocks = rng.standard_normal((n_hours, n)) * self.sigma * np.sqrt(1 - phi**2)
        out, _ = lfilter([1.0], [1.0, -phi], shocks, axis=0, zi=(phi * self.state)[None, :])
        self.state = out[-1].copy()
        return np.asarray(out)


class _ModeField:
    """Sum of Fourier modes with OU amplitudes, advected by the domain-mean wind."""

    def __init__(
        self,
        rng: np.random.Generator,
        x: NDArray[np.float64],
        y: NDArray[np.float64],
        timescale_h: float,
    ):
        wavelength = rng.uniform(80.0, 600.0, N_MODES)  # km
        angle = rng.uniform(0, 2 * np.pi, N_MODES)
        kx, ky = 2 * np.pi / wavelength * np.cos(angle), 2 * np.pi / wavelength * np.sin(angle)
        phase = rng.uniform(0, 2 * np.pi, N_MODES)
        arg = kx[:, None] * x.ravel()[None, :] + ky[:, None] * y.ravel()[None, :] + phase[:, None]
        self.basis = np.concatenate([np.cos(arg), np.sin(arg)])  # (2 modes, points)
        # d/dx of the basis (cos -> -kx sin, sin -> kx cos), likewise d/dy; scaled by 1 / |k|
        # so the derivative fields also have unit variance
        k_norm = np.hypot(kx, ky)[:, None]
        self.basis_dx = np.concatenate([-kx[:, None] * np.sin(arg), kx[:, None] * np.cos(arg)])
        self.basis_dy = np.concatenate([-ky[:, None] * np.sin(arg), ky[:, None] * np.cos(arg)])
        self.basis_dx /= np.concatenate([k_norm, k_norm]) / np.sqrt(2.0)
        self.basis_dy /= np.concatenate([k_norm, k_norm]) / np.sqrt(2.0)
        self.k = np.stack([kx, ky], axis=1)  # (modes, 2) rad/km
        self.shape = x.shape
        # amplitudes normalised so the field has unit variance
        self.amplitude = _OU(timescale_h, np.full(N_MODES, np.sqrt(2.0 / N_MODES)))

    def advance(
        self, rng: np.random.Generator, displacement_km: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """(hours, n_lat, n_lon) field for hourly mean-wind displacements (hours, 2) in km."""
        return self._combine(self._coefficients(rng, displacement_km), self.basis)

    def advance_rotational_wind(
        self, rng: np.random.Generator, displacement_km: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Non-divergent wind (u, v) = (-d psi/dy, d psi/dx) of this field as a stream function,
        each (hours, n_lat, n_lon) with ~unit variance per component."""
        coeff = self._coefficients(rng, displacement_km)
        return -self._combine(coeff, self.basis_dy), self._combine(coeff, self.basis_dx)

    def _coefficients(
        self, rng: np.random.Generator, displacement_km: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        amp = self.amplitude.advance(rng, displacement_km.shape[0])  # (hours, modes)
        shift = displacement_km @ self.k.T  # (hours, modes): phase moved downwind
        # cos(a - s) = cos a cos s + sin a sin s
        return np.concatenate([amp * np.cos(shift), amp * np.sin(shift)], axis=1)

    def _combine(
        self, coeff: NDArray[np.float64], basis: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        # (hours, 2 modes) @ (2 modes, points) -> (hours, n_lat, n_lon)
        out = coeff @ basis
        return out.reshape(-1, *self.shape)


class MeteorologyModel:
    """Stateful hourly generator: consecutive ``generate`` calls continue in time."""

    def __init__(self, met_grid: MetGrid, climate: ClimateConfig, rng: np.random.Generator) -> None:
        self.grid = met_grid
        self.climate = climate
        self.rng = rng
        self.x, self.y = met_grid.xy_km()
        tau_h = climate.synoptic_timescale_days * 24.0
        wind_sigma = 0.6 * climate.mean_wind_ms
        # u, v (m s-1), temperature (K), pressure (Pa), dewpoint depression (K), clouds (logit),
        # blh (log)
        self.synoptic = _OU(tau_h, np.array([wind_sigma, wind_sigma, 3.0, 900.0, 1.2, 1.0, 0.25]))
        self.stream_function = _ModeField(rng, self.x, self.y, 24.0)  # non-divergent wind
        self.cloud_modes = _ModeField(rng, self.x, self.y, 12.0)
        self.displacement_km = np.zeros(2)
        direction = np.deg2rad(climate.prevailing_wind_dir_deg)
        mean_vector = 0.5 * climate.mean_wind_ms
        self.mean_uv = np.array(
            [-mean_vector * np.sin(direction), -mean_vector * np.cos(direction)]
        )

    def generate(self, hours: NDArray[np.datetime64]) -> dict[str, NDArray[np.float32]]:
        """Fields for the given consecutive hours: short name -> (hours, n_lat, n_lon) float32.

        Units as ERA5: u10/v10 m s-1, blh m, t2m/d2m K, sp Pa, tcc 0-1.
        """
        c = self.climate
        rng = self.rng
        n = len(hours)
        when = _hours_to_datetimes(hours)
        doy = np.array([t.timetuple().tm_yday for t in when], dtype=np.float64)[:, None, None]
        utc_h = np.array([t.hour for t in when], dtype=np.float64)[:, None, None]
        lon2, lat2 = np.meshgrid(self.grid.lon, self.grid.lat)
        local_h = (utc_h + lon2[None] / 15.0) % 24.0  # (hours, lat, lon)
        summer = 0.5 - 0.5 * np.cos(
            2 * np.pi * (doy - 20.0) / 365.25
        )  # 0 in late Jan, 1 in late Jul

        syn = self.synoptic.advance(rng, n)  # (hours, 7)
        u_mean = self.mean_uv[0] + syn[:, 0]
        v_mean = self.mean_uv[1] + syn[:, 1]
        # the weather pattern moves with the (slower-than-10 m, so x0.7) steering flow
        step = np.stack([u_mean, v_mean], axis=1) * 3.6 / 0.7  # km per hour
        displacement = self.displacement_km + np.cumsum(step, axis=0)
        self.displacement_km = displacement[-1].copy()

        daylight = np.clip(
            np.sin(np.pi * (local_h - 8.0) / 12.0), 0.0, 1.0
        )  # 0 at night, 1 at 14 h
        speed_scale = np.hypot(u_mean, v_mean)[:, None, None] + 1.0
        mixing = 0.8 + 0.35 * daylight  # surface wind is stronger when the boundary layer mixes
        u_rot, v_rot = self.stream_function.advance_rotational_wind(rng, displacement)
        u10 = (u_mean[:, None, None] + 0.25 * speed_scale * u_rot) * mixing
        v10 = (v_mean[:, None, None] + 0.25 * speed_scale * v_rot) * mixing
        wind = np.hypot(u10, v10)

        p_anomaly = syn[:, 3][:, None, None]
        cloud_logit = (
            np.log(c.cloud_fraction_mean / (1.0 - c.cloud_fraction_mean))
            + 1.2 * syn[:, 5][:, None, None]
            - 0.7 * p_anomaly / 900.0
            + 1.6 * self.cloud_modes.advance(rng, displacement)
        )
        tcc = 1.0 / (1.0 + np.exp(-cloud_logit))

        diurnal_t = (
            c.t2m_diurnal_amplitude_k
            * np.cos(2 * np.pi * (local_h - 15.0) / 24.0)
            * (1.0 - 0.5 * tcc)
        )
        t2m = (
            c.t2m_mean_k
            - c.t2m_seasonal_amplitude_k * np.cos(2 * np.pi * (doy - 20.0) / 365.25)
            + diurnal_t
            + syn[:, 2][:, None, None]
            - 0.6 * (lat2[None] - self.grid.lat0)
        )
        depression = (
            1.0 + 7.0 * (1.0 - tcc) * (0.4 + 0.6 * daylight) * (0.6 + 0.4 * summer)
        ) + syn[:, 4][:, None, None]
        d2m = t2m - np.clip(depression, 0.1, None)

        blh_day = c.blh_day_winter_m + (c.blh_day_summer_m - c.blh_day_winter_m) * summer
        blh = c.blh_night_m + (blh_day * (1.0 - 0.45 * tcc) - c.blh_night_m) * daylight
        blh = (blh + 60.0 * (wind - c.mean_wind_ms)) * np.exp(syn[:, 6][:, None, None])
        blh = np.clip(blh, 50.0, None)

        rho_f = 1.2 * 2 * 7.2921e-5 * np.sin(np.deg2rad(self.grid.lat0))
        geostrophic = (
            rho_f
            * (v_mean[:, None, None] * self.x[None] - u_mean[:, None, None] * self.y[None])
            * 1000.0
            / 0.7
        )  # x, y in km -> m; 10 m wind is ~0.7 of the geostrophic wind
        sp = c.surface_pressure_pa + p_anomaly + geostrophic
        fields = {"u10": u10, "v10": v10, "blh": blh, "t2m": t2m, "d2m": d2m, "sp": sp, "tcc": tcc}
        # GRIB-like 16-bit packing per field and call (a month in the world loop), so the
        # values that drive the transport are exactly those written to the ERA5 files
        return {name: grib_quantize(fields[name]) for name in MET_VARIABLES}
