"""Exact area-weighted regridding of L2 pixel polygons onto the regular target grid.

Sits in ``pipeline/`` right after the QA filter (``qa.py``) and before the cube: it turns the
1-D ``pixel`` dataset of kept pixels (values plus 4 corner coordinates each) into one L3 field
on a ``grid.Grid``.

The geometry is HARP ``bin_spatial``'s (FORMATS.md B.1): straight edges in the lat/lon plane
(Plate Carree, not great circles). For every pixel and every candidate cell, the pixel's corner
polygon is clipped to the cell's latitude band, then to its longitude band (Sutherland-Hodgman
on axis-aligned edges), and the shoelace area of what is left is the overlap. The weight of a
pixel in a cell is ``overlap / cell_area`` (both in degree²): the fraction of the CELL the pixel
covers, so the summed weight is 1 for a cell tiled exactly once. The cell value is
``Σ w·x / Σ w``.

Antimeridian: corner longitudes are unwrapped to within ±180° of the first corner; a polygon
reaching beyond +180° is also tested shifted by −360°, one reaching below −180° shifted by
+360°. Pixels with any NaN corner (or a NaN value) are dropped and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from no2fusion.grid import Grid

_BUF = 64  # scratch vertices per clipping stage; a quad clipped by 4 half-planes needs <= 16


@dataclass(frozen=True)
class RegridResult:
    """One regridded field on a grid of shape (n_lat, n_lon).

    Unpacks as the seed's pair, ``gridded, counts = regridder.regrid(...)`` (``mean`` and
    ``count``); the summed weight and the uncertainty are attributes.

    Attributes:
        mean: (n_lat, n_lon) float64, Σ w·x / Σ w in the units of the input values; NaN where
            no pixel overlaps the cell.
        weight: (n_lat, n_lon) float64, Σ w, w = overlap area / cell area (dimensionless, the
            fraction of the cell covered; > 1 where pixels overlap).
        count: (n_lat, n_lon) int32, number of pixels with a non-zero overlap.
        uncertainty: (n_lat, n_lon) float64 sqrt(Σ w² σ²) / Σ w when uncertainties were given
            (same units as the values; NaN where no pixel), else None.
    """

    mean: NDArray[np.float64]
    weight: NDArray[np.float64]
    count: NDArray[np.int32]
    uncertainty: NDArray[np.float64] | None

    def __iter__(self) -> Iterator[NDArray[Any]]:
        """``(mean, count)``: the seed's ``gridded, counts``."""
        return iter((self.mean, self.count))


@njit(cache=True, inline="always")
def _clip(
    in_x: NDArray[np.float64],
    in_y: NDArray[np.float64],
    n: int,
    on_y: bool,
    bound: float,
    keep_above: bool,
    out_x: NDArray[np.float64],
    out_y: NDArray[np.float64],
) -> int:
    """Sutherland-Hodgman: clip polygon (in_x, in_y)[:n] to the half-plane x >= bound (or
    <= bound; y when ``on_y``). Writes the result to (out_x, out_y), returns its vertex count."""
    if n == 0:
        return 0
    m = 0
    px = in_x[n - 1]
    py = in_y[n - 1]
    pc = py if on_y else px
    p_in = pc >= bound if keep_above else pc <= bound
    for k in range(n):
        cx = in_x[k]
        cy = in_y[k]
        cc = cy if on_y else cx
        c_in = cc >= bound if keep_above else cc <= bound
        if c_in != p_in:  # the edge crosses the boundary: add the crossing point
            t = (bound - pc) / (cc - pc)
            if on_y:
                out_x[m] = px + t * (cx - px)
                out_y[m] = bound
            else:
                out_x[m] = bound
                out_y[m] = py + t * (cy - py)
            m += 1
        if c_in:
            out_x[m] = cx
            out_y[m] = cy
            m += 1
        px = cx
        py = cy
        pc = cc
        p_in = c_in
    return m


@njit(cache=True, inline="always")
def _area(x: NDArray[np.float64], y: NDArray[np.float64], n: int) -> float:
    """|shoelace area| of polygon (x, y)[:n]; either orientation."""
    if n < 3:
        return 0.0
    s = 0.0
    x0 = x[0]
    y0 = y[0]
    for k in range(1, n - 1):  # fan from vertex 0: fewer rounding errors far from the origin
        s += (x[k] - x0) * (y[k + 1] - y0) - (x[k + 1] - x0) * (y[k] - y0)
    return abs(0.5 * s)


@njit(cache=True, inline="always")
def _cell_range(
    edges: NDArray[np.float64], uniform: bool, inv_step: float, lo: float, hi: float
) -> tuple[int, int]:
    """Indices (first, last) of the cells of ``edges`` that the open interval (lo, hi) can
    touch, clamped to the grid; first > last when none. ``uniform`` (edges evenly spaced,
    ``inv_step`` = 1 / spacing) only selects a faster search; the answer is exact either way."""
    n_cells = edges.size - 1
    if uniform:  # guess from the spacing, then step to the exact answer (1 step at most, ~)
        first = min(max(int(np.floor((lo - edges[0]) * inv_step)), 0), n_cells)
        while first > 0 and edges[first] > lo:
            first -= 1
        while first < n_cells and edges[first + 1] <= lo:
            first += 1
        last = min(max(int(np.floor((hi - edges[0]) * inv_step)), -1), n_cells)
        while last > -1 and edges[last] >= hi:
            last -= 1
        while last < n_cells - 1 and edges[last + 1] < hi:
            last += 1
    else:
        first = int(np.searchsorted(edges, lo, side="right")) - 1
        last = int(np.searchsorted(edges, hi, side="left")) - 1
    if first < 0:
        first = 0
    if last > n_cells - 1:
        last = n_cells - 1
    return first, last


@njit(cache=True)
def _regrid_kernel(
    values: NDArray[np.floating],
    sigma: NDArray[np.floating],
    use_sigma: bool,
    lat_b: NDArray[np.floating],
    lon_b: NDArray[np.floating],
    lat_edges: NDArray[np.float64],
    lon_edges: NDArray[np.float64],
    lat_uniform: bool,
    lon_uniform: bool,
    sum_w: NDArray[np.float64],
    sum_wx: NDArray[np.float64],
    sum_w2s2: NDArray[np.float64],
    count: NDArray[np.int32],
) -> tuple[int, int]:
    """Accumulate every pixel into the (n_lat, n_lon) sums. Returns (dropped for NaN corners,
    dropped for NaN value or uncertainty)."""
    n_pix = values.shape[0]
    lat_inv = (lat_edges.size - 1) / (lat_edges[-1] - lat_edges[0])
    lon_inv = (lon_edges.size - 1) / (lon_edges[-1] - lon_edges[0])
    lat_lo = lat_edges[0]
    lat_hi = lat_edges[-1]
    lon_lo = lon_edges[0]
    lon_hi = lon_edges[-1]
    px = np.empty(4)
    py = np.empty(4)
    bx = np.empty(_BUF)  # polygon clipped to a latitude band
    by = np.empty(_BUF)
    tx = np.empty(_BUF)  # scratch
    ty = np.empty(_BUF)
    cx = np.empty(_BUF)  # polygon clipped to a cell
    cy = np.empty(_BUF)
    dropped_corners = 0
    dropped_values = 0
    for p in range(n_pix):
        ymin = np.inf
        ymax = -np.inf
        bad = False
        for k in range(4):
            y = float(lat_b[p, k])
            if not np.isfinite(y):
                bad = True
            py[k] = y
            ymin = min(ymin, y)
            ymax = max(ymax, y)
        x_first = float(lon_b[p, 0])
        xmin = np.inf
        xmax = -np.inf
        for k in range(4):
            x = float(lon_b[p, k])
            if not np.isfinite(x):
                bad = True
            # unwrap to within ±180 deg of the first corner
            d = x - x_first
            if d > 180.0:
                x -= 360.0
            elif d < -180.0:
                x += 360.0
            px[k] = x
            xmin = min(xmin, x)
            xmax = max(xmax, x)
        if bad:
            dropped_corners += 1
            continue
        value = float(values[p])
        s = float(sigma[p]) if use_sigma else 0.0
        if not (np.isfinite(value) and np.isfinite(s)):
            dropped_values += 1
            continue
        if ymax <= lat_lo or ymin >= lat_hi:  # cheap reject: most of an orbit misses the box
            continue
        i0, i1 = _cell_range(lat_edges, lat_uniform, lat_inv, ymin, ymax)
        for shift_k in range(3):
            if shift_k == 0:
                shift = 0.0
            elif shift_k == 1:
                if xmax <= 180.0:
                    continue
                shift = -360.0
            else:
                if xmin >= -180.0:
                    continue
                shift = 360.0
            if xmax + shift <= lon_lo or xmin + shift >= lon_hi:
                continue
            for i in range(i0, i1 + 1):
                y_low = lat_edges[i]
                y_high = lat_edges[i + 1]
                # clip the (shifted) pixel polygon to the latitude band [y_low, y_high]
                for k in range(4):
                    tx[k] = px[k] + shift
                    ty[k] = py[k]
                nb = 4
                if ymin < y_low:
                    nb = _clip(tx, ty, nb, True, y_low, True, bx, by)
                    for k in range(nb):
                        tx[k] = bx[k]
                        ty[k] = by[k]
                if ymax > y_high:
                    nb = _clip(tx, ty, nb, True, y_high, False, bx, by)
                else:
                    for k in range(nb):
                        bx[k] = tx[k]
                        by[k] = ty[k]
                if nb < 3:
                    continue
                bxmin = np.inf
                bxmax = -np.inf
                for k in range(nb):
                    bxmin = min(bxmin, bx[k])
                    bxmax = max(bxmax, bx[k])
                if bxmax <= lon_lo or bxmin >= lon_hi:
                    continue
                j0, j1 = _cell_range(lon_edges, lon_uniform, lon_inv, bxmin, bxmax)
                dy = y_high - y_low
                for j in range(j0, j1 + 1):
                    x_low = lon_edges[j]
                    x_high = lon_edges[j + 1]
                    if bxmin >= x_low and bxmax <= x_high:  # the band polygon lies in this cell
                        area = _area(bx, by, nb)
                    elif bxmin >= x_low:  # only the eastern edge cuts
                        nc = _clip(bx, by, nb, False, x_high, False, cx, cy)
                        area = _area(cx, cy, nc)
                    elif bxmax <= x_high:  # only the western edge cuts
                        nc = _clip(bx, by, nb, False, x_low, True, cx, cy)
                        area = _area(cx, cy, nc)
                    else:
                        nt = _clip(bx, by, nb, False, x_low, True, tx, ty)
                        nc = _clip(tx, ty, nt, False, x_high, False, cx, cy)
                        area = _area(cx, cy, nc)
                    if area <= 0.0:
                        continue
                    w = area / (dy * (x_high - x_low))
                    sum_w[i, j] += w
                    sum_wx[i, j] += w * value
                    if use_sigma:
                        sum_w2s2[i, j] += w * w * s * s
                    count[i, j] += 1
    return dropped_corners, dropped_values


def _is_uniform(edges: NDArray[np.float64]) -> bool:
    """Evenly spaced edges (to 1e-9 of a cell): the kernel then finds cells by arithmetic."""
    steps = np.diff(edges)
    return bool(np.all(np.abs(steps - steps.mean()) <= 1e-9 * steps.mean()))


def _float_array(name: str, array: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.floating]:
    out = np.ascontiguousarray(array)
    if out.dtype not in (np.float32, np.float64):
        out = out.astype(np.float64)
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {out.shape}")
    return out


class AreaWeightedRegridder:
    """Exact area-weighted (HARP ``bin_spatial``-style) regridding onto ``grid``.

    After each ``regrid`` call, ``dropped_nan_corners`` and ``dropped_nan_values`` hold how many
    pixels were skipped for a NaN corner or a NaN value/uncertainty.
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self._lat_edges = np.ascontiguousarray(grid.lat_edges, dtype=np.float64)
        self._lon_edges = np.ascontiguousarray(grid.lon_edges, dtype=np.float64)
        self.dropped_nan_corners = 0
        self.dropped_nan_values = 0

    def regrid(
        self,
        values: ArrayLike,
        lat_bounds: ArrayLike,
        lon_bounds: ArrayLike,
        uncertainty: ArrayLike | None = None,
    ) -> RegridResult:
        """Regrid pixel values onto the grid.

        Args:
            values: (...) pixel values (any units; the mean keeps them), any leading shape:
                (N,) pixels or a (scanline, ground_pixel) swath.
            lat_bounds: (..., 4) corner latitudes, degrees north, any corner order (CCW or CW),
                the leading shape of ``values``.
            lon_bounds: (..., 4) corner longitudes, degrees east, −180..180 (a pixel may
                straddle the antimeridian).
            uncertainty: optional 1-sigma uncertainties shaped like ``values``, in their
                units, combined as sqrt(Σ w² σ²) / Σ w.

        Returns:
            ``RegridResult`` of (n_lat, n_lon) arrays; see its docstring.
        """
        vals = np.asarray(values)
        lead = vals.shape  # any leading shape: flattened to pixels
        n = int(np.prod(lead, dtype=np.int64))
        lat_b = _float_array("lat_bounds", lat_bounds, (*lead, 4)).reshape(n, 4)
        lon_b = _float_array("lon_bounds", lon_bounds, (*lead, 4)).reshape(n, 4)
        vals = _float_array("values", vals, lead).reshape(n)
        use_sigma = uncertainty is not None
        sigma = (
            _float_array("uncertainty", np.asarray(uncertainty), lead).reshape(n)
            if use_sigma
            else np.zeros(1, dtype=vals.dtype)
        )
        shape = self.grid.shape
        sum_w = np.zeros(shape)
        sum_wx = np.zeros(shape)
        sum_w2s2 = np.zeros(shape)
        count = np.zeros(shape, dtype=np.int32)
        dropped = _regrid_kernel(
            vals,
            sigma,
            use_sigma,
            lat_b,
            lon_b,
            self._lat_edges,
            self._lon_edges,
            _is_uniform(self._lat_edges),
            _is_uniform(self._lon_edges),
            sum_w,
            sum_wx,
            sum_w2s2,
            count,
        )
        self.dropped_nan_corners, self.dropped_nan_values = int(dropped[0]), int(dropped[1])
        covered = sum_w > 0
        safe_w = np.where(covered, sum_w, 1.0)
        mean = np.where(covered, sum_wx / safe_w, np.nan)
        unc = np.where(covered, np.sqrt(sum_w2s2) / safe_w, np.nan) if use_sigma else None
        return RegridResult(mean=mean, weight=sum_w, count=count, uncertainty=unc)
