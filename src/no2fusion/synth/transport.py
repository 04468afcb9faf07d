"""NO2 column transport of the simulated world: advection, diffusion, emission, chemical loss.

Sits in ``synth`` after the meteorology: it carries the tropospheric NO2 column C (umol m-2)
on the target grid, hour by hour, and yields the truth that the satellite samples.

    dC/dt = -div(u C) + div(K grad C) + E - k C

- Finite volumes on the lat/lon grid, first-order upwind fluxes through cell faces, so the
  scheme is positive and conserves mass exactly (every face flux leaves one cell and enters its
  neighbour; cell areas are the spherical areas of ``Grid.cell_area_m2``).
- Stable time step: each hour is cut into substeps with Courant + diffusion number <= 0.9.
- Boundaries: inflow faces bring the background column ``c_inflow``; outflow faces let mass
  leave; ``closed=True`` sets every boundary flux to zero (used to test conservation).
- Loss: k = (1/tau_night + k_sun max(cos SZA, 0)) * exp(0.03 (T - 288 K)) * (blh / 1000 m)^0.15,
  applied as an exact exponential per substep. Sunlight (OH) dominates, so the lifetime is
  shortest at noon in summer (~``lifetime_noon_summer_h``) and long at night and in winter.
  A deeper boundary layer dilutes NOx and speeds up its OH loss a little (weak exponent 0.15);
  the column itself is not diluted by the boundary layer.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

from no2fusion.grid import EARTH_RADIUS_M, Grid

COURANT_MAX = 0.9


@numba.njit(cache=True, fastmath=False)
def advance_column(
    column: NDArray[np.float64],
    u: NDArray[np.float64],
    v: NDArray[np.float64],
    emission: NDArray[np.float64],
    loss_rate: NDArray[np.float64],
    c_inflow: float,
    duration_s: float,
    dx: NDArray[np.float64],
    dy: float,
    face_ns: NDArray[np.float64],
    area: NDArray[np.float64],
    diffusivity: float,
    closed: bool,
) -> int:
    """Advance ``column`` (n_lat, n_lon) umol m-2 in place by ``duration_s`` seconds.

    Args:
        u, v: cell-centre winds (n_lat, n_lon) m s-1 (east, north), constant over the call.
        emission: (n_lat, n_lon) umol m-2 s-1.  loss_rate: (n_lat, n_lon) s-1.
        c_inflow: column carried in through inflow boundary faces, umol m-2.
        dx: (n_lat,) east-west cell width m; dy: north-south cell height m.
        face_ns: (n_lat + 1,) length of the north/south faces m; area: (n_lat,) cell area m2.
        diffusivity: horizontal eddy diffusivity m2 s-1.
        closed: zero flux through every boundary face.

    Returns the number of substeps used.
    """
    ny, nx = column.shape
    # face velocities: east-west faces (ny, nx + 1), north-south faces (ny + 1, nx)
    ue = np.empty((ny, nx + 1))
    vn = np.empty((ny + 1, nx))
    for j in range(ny):
        for i in range(nx + 1):
            if i == 0:
                ue[j, i] = 0.0 if closed else u[j, 0]
            elif i == nx:
                ue[j, i] = 0.0 if closed else u[j, nx - 1]
            else:
                ue[j, i] = 0.5 * (u[j, i - 1] + u[j, i])
    for j in range(ny + 1):
        for i in range(nx):
            if j == 0:
                vn[j, i] = 0.0 if closed else v[0, i]
            elif j == ny:
                vn[j, i] = 0.0 if closed else v[ny - 1, i]
            else:
                vn[j, i] = 0.5 * (v[j - 1, i] + v[j, i])
    # stable substep: outflow Courant number + diffusion number <= COURANT_MAX in every cell
    rate_max = 1e-12
    for j in range(ny):
        diff = 2.0 * diffusivity * (1.0 / (dx[j] * dx[j]) + 1.0 / (dy * dy))
        for i in range(nx):
            out = (
                max(ue[j, i + 1], 0.0) * dy
                + max(-ue[j, i], 0.0) * dy
                + max(vn[j + 1, i], 0.0) * face_ns[j + 1]
                + max(-vn[j, i], 0.0) * face_ns[j]
            ) / area[j]
            rate_max = max(rate_max, out + diff)
    n_sub = max(1, int(math.ceil(duration_s * rate_max / COURANT_MAX)))
    dt = duration_s / n_sub
    fe = np.empty((ny, nx + 1))
    fn = np.empty((ny + 1, nx))
    for _ in range(n_sub):
        # fluxes through east-west faces, umol s-1
        for j in range(ny):
            for i in range(nx + 1):
                vel = ue[j, i]
                if i == 0:
                    upwind = c_inflow if vel > 0 else column[j, 0]
                    fe[j, i] = vel * upwind * dy
                elif i == nx:
                    upwind = column[j, nx - 1] if vel > 0 else c_inflow
                    fe[j, i] = vel * upwind * dy
                else:
                    upwind = column[j, i - 1] if vel > 0 else column[j, i]
                    grad = (column[j, i] - column[j, i - 1]) / dx[j]
                    fe[j, i] = (vel * upwind - diffusivity * grad) * dy
        # fluxes through north-south faces
        for j in range(ny + 1):
            for i in range(nx):
                vel = vn[j, i]
                if j == 0:
                    upwind = c_inflow if vel > 0 else column[0, i]
                    fn[j, i] = vel * upwind * face_ns[j]
                elif j == ny:
                    upwind = column[ny - 1, i] if vel > 0 else c_inflow
                    fn[j, i] = vel * upwind * face_ns[j]
                else:
                    upwind = column[j - 1, i] if vel > 0 else column[j, i]
                    grad = (column[j, i] - column[j - 1, i]) / dy
                    fn[j, i] = (vel * upwind - diffusivity * grad) * face_ns[j]
        for j in range(ny):
            for i in range(nx):
                divergence = (fe[j, i + 1] - fe[j, i] + fn[j + 1, i] - fn[j, i]) / area[j]
                value = column[j, i] + dt * (emission[j, i] - divergence)
                column[j, i] = value * math.exp(-loss_rate[j, i] * dt)
    return n_sub


class GridMetrics:
    """Finite-volume metrics of a lat/lon ``Grid`` for ``advance_column``."""

    def __init__(self, grid: Grid) -> None:
        dlat = np.deg2rad(np.diff(grid.lat_edges))
        dlon = float(np.deg2rad(np.diff(grid.lon_edges)).mean())
        if not np.allclose(dlat, dlat[0]):
            raise ValueError("transport needs a regular grid")
        self.dy = float(EARTH_RADIUS_M * dlat[0])  # m
        self.dx = EARTH_RADIUS_M * np.cos(np.deg2rad(grid.lat)) * dlon  # (n_lat,) m
        self.face_ns = EARTH_RADIUS_M * np.cos(np.deg2rad(grid.lat_edges)) * dlon  # (n_lat + 1,) m
        self.area = grid.cell_area_m2()[:, 0].copy()  # (n_lat,) m2, same for every column

    def advance(
        self,
        column: NDArray[np.float64],
        u: NDArray[np.float64],
        v: NDArray[np.float64],
        emission: NDArray[np.float64],
        loss_rate: NDArray[np.float64],
        c_inflow: float,
        duration_s: float,
        diffusivity: float = 1000.0,
        closed: bool = False,
    ) -> int:
        """Advance ``column`` in place (see ``advance_column``); returns the substeps used."""
        return int(
            advance_column(
                column,
                np.ascontiguousarray(u, dtype=np.float64),
                np.ascontiguousarray(v, dtype=np.float64),
                np.ascontiguousarray(emission, dtype=np.float64),
                np.ascontiguousarray(loss_rate, dtype=np.float64),
                float(c_inflow),
                float(duration_s),
                self.dx,
                self.dy,
                self.face_ns,
                self.area,
                float(diffusivity),
                bool(closed),
            )
        )

    def mass(self, column: NDArray[np.float64]) -> float:
        """Total NO2 in the domain, umol (column x cell area)."""
        return float((column * self.area[:, None]).sum())


def loss_rate_per_s(
    cos_sza: NDArray[np.float64],
    t2m_k: NDArray[np.float64],
    blh_m: NDArray[np.float64],
    k_sun_per_s: float,
    lifetime_night_h: float,
) -> NDArray[np.float64]:
    """First-order NO2 loss rate (s-1) from sunlight, temperature and boundary-layer depth."""
    sun = np.maximum(cos_sza, 0.0)
    base = 1.0 / (lifetime_night_h * 3600.0) + k_sun_per_s * sun
    return np.asarray(
        base * np.exp(0.03 * (t2m_k - 288.0)) * (np.maximum(blh_m, 50.0) / 1000.0) ** 0.15
    )


def sun_loss_coefficient(
    lat_deg: float, lifetime_noon_summer_h: float, lifetime_night_h: float
) -> float:
    """k_sun (s-1 per unit cos SZA) so the lifetime at noon on the summer solstice is the target
    (at 288 K and a 1000 m boundary layer)."""
    from no2fusion.synth.meteorology import cos_solar_zenith

    cos_noon = float(cos_solar_zenith(lat_deg, 172.0, 12.0))
    target = 1.0 / (lifetime_noon_summer_h * 3600.0) - 1.0 / (lifetime_night_h * 3600.0)
    return max(target, 0.0) / max(cos_noon, 0.05)


@numba.njit(cache=True)
def hour_inputs(
    u10: NDArray[np.float32],
    v10: NDArray[np.float32],
    t2m: NDArray[np.float32],
    blh: NDArray[np.float32],
    j: NDArray[np.intp],
    i: NDArray[np.intp],
    wy: NDArray[np.float64],
    wx: NDArray[np.float64],
    lat_deg: NDArray[np.float64],
    lon_deg: NDArray[np.float64],
    day_of_year: NDArray[np.float64],
    utc_hour_mid: NDArray[np.float64],
    k_sun_per_s: float,
    lifetime_night_h: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Transport inputs for each hour on the target cells (fused, one pass).

    Met fields are (hours, met_lat, met_lon); ``j, i, wy, wx`` are the bilinear indices and
    weights of the n target cells (``Bilinear``); ``lat_deg, lon_deg`` (n,) cell centres.
    Returns u, v (hours, n) m s-1 and the loss rate (hours, n) s-1 of ``loss_rate_per_s`` with
    the solar zenith angle at mid-hour.
    """
    n_hours = u10.shape[0]
    n = j.size
    u = np.empty((n_hours, n))
    v = np.empty((n_hours, n))
    loss = np.empty((n_hours, n))
    night = 1.0 / (lifetime_night_h * 3600.0)
    sin_phi = np.sin(np.radians(lat_deg))
    cos_phi = np.cos(np.radians(lat_deg))
    cos_lon = np.cos(np.radians(lon_deg))  # hour angle = omega_t + lon: expand the cosine
    sin_lon = np.sin(np.radians(lon_deg))
    for t in range(n_hours):
        decl = math.radians(-23.44) * math.cos(2.0 * math.pi * (day_of_year[t] + 10.0) / 365.0)
        omega = math.radians(15.0 * (utc_hour_mid[t] - 12.0))
        cos_om, sin_om = math.cos(omega), math.sin(omega)
        sin_d, cos_d = math.sin(decl), math.cos(decl)
        for c in range(n):
            a, b = j[c], i[c]
            w01 = (1.0 - wy[c]) * wx[c]
            w10 = wy[c] * (1.0 - wx[c])
            w11 = wy[c] * wx[c]
            w00 = 1.0 - w01 - w10 - w11
            u[t, c] = (
                u10[t, a, b] * w00
                + u10[t, a, b + 1] * w01
                + u10[t, a + 1, b] * w10
                + u10[t, a + 1, b + 1] * w11
            )
            v[t, c] = (
                v10[t, a, b] * w00
                + v10[t, a, b + 1] * w01
                + v10[t, a + 1, b] * w10
                + v10[t, a + 1, b + 1] * w11
            )
            temp = (
                t2m[t, a, b] * w00
                + t2m[t, a, b + 1] * w01
                + t2m[t, a + 1, b] * w10
                + t2m[t, a + 1, b + 1] * w11
            )
            depth = (
                blh[t, a, b] * w00
                + blh[t, a, b + 1] * w01
                + blh[t, a + 1, b] * w10
                + blh[t, a + 1, b + 1] * w11
            )
            cos_hour = cos_om * cos_lon[c] - sin_om * sin_lon[c]
            cos_sza = sin_phi[c] * sin_d + cos_phi[c] * cos_d * cos_hour
            base = night + k_sun_per_s * max(cos_sza, 0.0)
            # exp(0.03 (T - 288)) * (blh / 1000) ** 0.15 in one exponential
            loss[t, c] = base * math.exp(
                0.03 * (temp - 288.0) + 0.15 * math.log(max(depth, 50.0) / 1000.0)
            )
    return u, v, loss


@numba.njit(cache=True)
def bilinear_regular(
    field: NDArray[np.floating],
    lat0: float,
    dlat: float,
    lon0: float,
    dlon: float,
    lat: NDArray[np.floating],
    lon: NDArray[np.floating],
) -> NDArray[np.float64]:
    """Bilinear interpolation of ``field`` (n_lat, n_lon) on a regular ascending grid (first
    centre ``lat0, lon0``, spacing ``dlat, dlon``) at points ``lat, lon`` (any equal shapes);
    points beyond the outer centres take the edge values."""
    n_lat, n_lon = field.shape
    flat_lat = lat.ravel()
    flat_lon = lon.ravel()
    out = np.empty(flat_lat.size)
    for p in range(flat_lat.size):
        fy = min(max((flat_lat[p] - lat0) / dlat, 0.0), n_lat - 1.0)
        fx = min(max((flat_lon[p] - lon0) / dlon, 0.0), n_lon - 1.0)
        j = min(int(fy), n_lat - 2)
        i = min(int(fx), n_lon - 2)
        wy = fy - j
        wx = fx - i
        out[p] = (
            field[j, i] * (1 - wy) * (1 - wx)
            + field[j, i + 1] * (1 - wy) * wx
            + field[j + 1, i] * wy * (1 - wx)
            + field[j + 1, i + 1] * wy * wx
        )
    return out.reshape(lat.shape)


class Bilinear:
    """Bilinear interpolation from a regular ascending (lat, lon) grid to fixed points."""

    def __init__(
        self,
        src_lat: NDArray[np.float64],
        src_lon: NDArray[np.float64],
        lat: NDArray[np.float64],
        lon: NDArray[np.float64],
    ) -> None:
        def axis(
            src: NDArray[np.float64], pts: NDArray[np.float64]
        ) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
            step = np.diff(src)
            if np.allclose(step, step[0]):  # regular axis: index by arithmetic
                raw = np.floor((pts - src[0]) / step[0]).astype(np.intp)
            else:
                raw = np.searchsorted(src, pts, side="right") - 1
            idx = np.clip(raw, 0, src.size - 2)
            w = np.clip((pts - src[idx]) / (src[idx + 1] - src[idx]), 0.0, 1.0)
            return idx, w

        self.shape = np.shape(lat)
        self.j, self.wy = axis(src_lat, np.ravel(lat))
        self.i, self.wx = axis(src_lon, np.ravel(lon))

    def __call__(self, field: NDArray[np.floating]) -> NDArray[np.float64]:
        """(..., n_lat_src, n_lon_src) -> (..., *points_shape)."""
        j, i, wy, wx = self.j, self.i, self.wy, self.wx
        out = (
            field[..., j, i] * (1 - wy) * (1 - wx)
            + field[..., j, i + 1] * (1 - wy) * wx
            + field[..., j + 1, i] * wy * (1 - wx)
            + field[..., j + 1, i + 1] * wy * wx
        )
        return np.asarray(out.reshape(*field.shape[:-2], *self.shape), dtype=np.float64)
