"""The arrays of a cube that samples are cut from, and the statistics fitted on training days.

Sits in ``data/`` after ``io/cube.py`` (which opens and checks the Zarr cube) and before
``dataset.py`` (which cuts samples). ``CubeArrays`` holds the NO2 field in memory and serves the
hourly features of any block of met cells, either from an in-memory cache (normalized, float16,
built chunk by chunk under a byte budget) or straight from the Zarr store. ``fit_normalizers``
fits everything that is fitted (NO2 and feature normalizers, the per-cell climatology) on the
training days only and on valid values only.

Memory: ``no2`` is (time, lat, lon) float32; the feature cache is 2 bytes per (time, hour,
met_lat, met_lon, feature) value and is only built when that fits ``cache_max_bytes``
(``data.cache_max_gb``); above it every sample reads its met block from the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.config import DataConfig
from no2fusion.data.inputs import MetBlock, fit_climatology
from no2fusion.errors import CubeSchemaError
from no2fusion.grid import edges_from_centres
from no2fusion.io.cube import open_cube
from no2fusion.pipeline.features import REFERENCE_WIND_M_S
from no2fusion.pipeline.normalize import RobustNormalizer
from no2fusion.vocab import FEATURES

F32 = NDArray[np.float32]
# training days whose met cells the feature normalizer is fitted on (evenly spaced)
_NORMALIZER_DAYS = 48
_CACHE_CHUNK_DAYS = 16
_U, _V = FEATURES.index("u_norm"), FEATURES.index("v_norm")


@dataclass
class Normalizers:
    """What is fitted on the training days: the NO2 normalizer (scalar, umol m-2), the feature
    normalizer (per feature, (F,)) and the per-cell NO2 climatology (lat, lon) umol m-2 on the
    training grid, whose cell centres are ``climatology_lat`` / ``climatology_lon`` (degrees)."""

    no2: RobustNormalizer
    features: RobustNormalizer
    climatology: F32
    climatology_lat: NDArray[np.float64]
    climatology_lon: NDArray[np.float64]

    def to_dict(self) -> dict[str, Any]:
        return {
            "no2": self.no2.to_dict(),
            "features": self.features.to_dict(),
            "climatology": np.asarray(self.climatology, dtype=np.float64).tolist(),
            "climatology_lat": np.asarray(self.climatology_lat, dtype=np.float64).tolist(),
            "climatology_lon": np.asarray(self.climatology_lon, dtype=np.float64).tolist(),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Normalizers:
        return cls(
            RobustNormalizer.from_dict(values["no2"]),
            RobustNormalizer.from_dict(values["features"]),
            np.asarray(values["climatology"], dtype=np.float32),
            np.asarray(values["climatology_lat"], dtype=np.float64),
            np.asarray(values["climatology_lon"], dtype=np.float64),
        )

    def climatology_on(
        self, lat: NDArray[np.float64], lon: NDArray[np.float64]
    ) -> tuple[F32, float]:
        """The climatology on another grid of cell centres ``lat`` (n,) / ``lon`` (m,) degrees:
        cells whose centre is a training cell's (within a hundredth of a cell) take its value,
        the others the median of the training climatology (nothing is known there). Returns
        ((n, m) float32 umol m-2, the fraction of cells that lie on the training grid)."""
        rows = _matching_index(self.climatology_lat, lat)
        cols = _matching_index(self.climatology_lon, lon)
        fallback = np.float32(np.median(self.climatology))
        out = np.full((lat.size, lon.size), fallback, dtype=np.float32)
        known_rows, known_cols = rows >= 0, cols >= 0
        out[np.ix_(known_rows, known_cols)] = self.climatology[
            np.ix_(rows[known_rows], cols[known_cols])
        ]
        return out, float(known_rows.mean() * known_cols.mean()) if out.size else 0.0


def _matching_index(
    reference: NDArray[np.float64], centres: NDArray[np.float64]
) -> NDArray[np.int64]:
    """For each of ``centres``, the index of the equal ``reference`` centre (ascending), -1 where
    none lies within 1 % of the reference spacing."""
    if reference.size == 0:
        return np.full(centres.shape, -1, dtype=np.int64)
    step = float(np.median(np.diff(reference))) if reference.size > 1 else 1.0
    nearest = np.clip(np.searchsorted(reference, centres), 0, reference.size - 1)
    before = np.clip(nearest - 1, 0, reference.size - 1)
    closer = np.abs(reference[before] - centres) < np.abs(reference[nearest] - centres)
    index = np.where(closer, before, nearest)
    return np.where(np.abs(reference[index] - centres) <= 0.01 * abs(step), index, -1)


def _edges(cube: xr.Dataset, name: str, centres: str) -> NDArray[np.float64]:
    """Cell edges (n+1,) from ``<name>`` bounds [n, 2] when stored, else from the centres."""
    if name in cube.variables:
        bounds = np.asarray(cube[name].values, dtype=np.float64)  # (n, 2)
        return np.concatenate([bounds[:, 0], bounds[-1:, 1]])
    return edges_from_centres(np.asarray(cube[centres].values, dtype=np.float64))


def _centres(edges: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (edges[:-1] + edges[1:])


def _stored_features(raw: F32, normalizer: RobustNormalizer) -> NDArray[np.float16]:
    """Raw features (..., F) -> what the cache holds: normalized, clipped, NaN -> 0, float16
    (computed in float32: float64 would buy nothing at float16)."""
    values = normalizer.transform(raw, clip=True, compute_dtype=np.float32)
    return np.nan_to_num(values, copy=False).astype(np.float16)


class CubeArrays:
    """The arrays of one cube that samples are cut from (see the module docstring).

    Attributes: ``times`` (time,) datetime64[D]; ``no2`` (time, lat, lon) float32 umol m-2;
    ``region`` (lat, lon) int codes (evaluation breakdowns only, never an input);
    ``cell_area`` (lat, lon) m2; ascending cell centres ``lat``, ``lon``, ``met_lat``,
    ``met_lon`` (degrees) and their edges; ``dataset``, the opened cube itself (lazy: the
    noise-free truth and the hourly wind are read from it only where evaluation needs them).
    """

    def __init__(
        self,
        cube: xr.Dataset,
        cache: bool = True,
        cache_max_bytes: float = 4e9,
        path: str | Path = "cube",
    ) -> None:
        self.path = Path(path)
        self.dataset = cube
        self.times = np.asarray(cube["time"].values).astype("datetime64[D]")  # (n_time,)
        self.lat_edges = _edges(cube, "lat_bounds", "lat")
        self.lon_edges = _edges(cube, "lon_bounds", "lon")
        self.met_lat_edges = _edges(cube, "met_lat_bounds", "met_lat")
        self.met_lon_edges = _edges(cube, "met_lon_bounds", "met_lon")
        self.lat, self.lon = _centres(self.lat_edges), _centres(self.lon_edges)
        self.met_lat, self.met_lon = _centres(self.met_lat_edges), _centres(self.met_lon_edges)
        self.shape = (self.lat.size, self.lon.size)
        self.no2 = np.asarray(cube["no2"].values, dtype=np.float32)  # (time, lat, lon)
        self.region = np.asarray(cube["region"].values, dtype=np.int64)  # (lat, lon)
        self.cell_area = np.asarray(cube["cell_area"].values, dtype=np.float64)  # (lat, lon) m2
        self.n_hours = int(cube.sizes["hour"])
        self.n_features = int(cube.sizes["feature"])
        if self.no2.shape[1:] != self.shape:
            raise CubeSchemaError(
                f"no2 has {self.no2.shape[1:]} cells but lat/lon bounds give {self.shape}", path
            )
        if np.any(np.diff(self.lat) <= 0) or np.any(np.diff(self.met_lat) <= 0):
            raise CubeSchemaError("lat and met_lat must be ascending", path)
        self._features_lazy = cube["features"]  # (time, hour, met_lat, met_lon, feature)
        self.cache = cache
        self.cache_max_bytes = cache_max_bytes
        self._cache: NDArray[np.float16] | None = None
        self._cache_for: RobustNormalizer | None = None
        self._day_index = {day: i for i, day in enumerate(self.times.tolist())}

    # ------------------------------------------------------------------ days

    @classmethod
    def open(cls, path: str | Path, memory: DataConfig) -> CubeArrays:
        """Open the cube at ``path`` (schema-checked by ``io.cube.open_cube``) with the feature
        cache budget of ``memory`` (``cache_in_memory``, ``cache_max_gb``)."""
        return cls(open_cube(path), memory.cache_in_memory, memory.cache_max_gb * 1e9, path)

    def index_of(self, day: np.datetime64) -> int | None:
        """Index of a calendar day in ``times``, or None when the cube lacks it."""
        return self._day_index.get(np.asarray(day).astype("datetime64[D]").item())

    def indices_of(self, days: NDArray[np.datetime64]) -> NDArray[np.int64]:
        """Indices of ``days`` (all must be in the cube)."""
        found = [self.index_of(day) for day in days]
        if any(i is None for i in found):
            raise CubeSchemaError("split days are not all in the cube", self.path)
        return np.asarray(found, dtype=np.int64)

    # ------------------------------------------------------------------ features
    @property
    def feature_shape(self) -> tuple[int, ...]:
        """(hour, met_lat, met_lon, feature): the shape of one day's features."""
        return tuple(int(n) for n in self._features_lazy.shape[1:])

    @property
    def feature_cache_bytes(self) -> int:
        """Bytes the float16 feature cache of the whole cube would take."""
        return 2 * int(np.prod([int(n) for n in self._features_lazy.shape]))

    @property
    def caches_features(self) -> bool:
        """True when the normalized features are (or will be) held in memory."""
        return self.cache and self.feature_cache_bytes <= self.cache_max_bytes

    def raw_features(
        self,
        days: NDArray[np.int64] | slice,
        lat_index: NDArray[np.int64] | None = None,
        lon_index: NDArray[np.int64] | None = None,
    ) -> F32:
        """Raw features (n, hour, met_lat, met_lon, feature) float32 of day indices ``days``
        (optionally of some met rows/columns), read from the store."""
        lazy = self._features_lazy.isel(time=days)
        if lat_index is not None:
            lazy = lazy.isel(met_lat=lat_index)
        if lon_index is not None:
            lazy = lazy.isel(met_lon=lon_index)
        # synchronous: a DataLoader worker forked from a process whose dask thread pool was
        # in use would deadlock on that pool
        with dask.config.set(scheduler="synchronous"):
            return np.asarray(lazy.values, dtype=np.float32)

    def _cached(self, normalizer: RobustNormalizer) -> NDArray[np.float16] | None:
        """The normalized float16 cache for ``normalizer``, built on first use (chunks of days,
        so the raw float32 features are never all in memory); None above the budget."""
        if not self.caches_features:
            return None
        # keyed by the statistics, not the object: the checkpoints of one run (cross_modal and
        # its baselines) carry equal normalizers, and evaluation alternates between them
        if self._cache_for is None or not self._cache_for.same_statistics(normalizer):
            n_time = self.times.size
            cache = np.empty(self._features_lazy.shape, dtype=np.float16)
            for start in range(0, n_time, _CACHE_CHUNK_DAYS):
                days = slice(start, min(start + _CACHE_CHUNK_DAYS, n_time))
                raw = self.raw_features(days)
                cache[days] = _stored_features(raw, normalizer)
            self._cache, self._cache_for = cache, normalizer
        return self._cache

    def met_block(
        self, t: int, block: MetBlock, normalizer: RobustNormalizer
    ) -> tuple[F32, F32, F32]:
        """Day index ``t`` on the met cells of ``block``: (normalized features (hour, mh, mw,
        feature) with NaN -> 0, u10 and v10 (hour, mh, mw) m s-1)."""
        cached = self._cached(normalizer)
        rows, cols = block.lat_index[:, None], block.lon_index[None, :]
        if cached is not None:
            stored = cached[t][:, rows, cols, :]  # (T, mh, mw, F) float16
        else:  # the same values as the cache would hold: normalized, NaN -> 0, float16
            raw = self.raw_features(np.array([t]), block.lat_index, block.lon_index)[0]
            stored = _stored_features(raw, normalizer)
        normalized = stored.astype(np.float32)
        # raw wind (within the clip range): the inverse of the two wind features only
        restored = normalizer.inverse_transform(normalized[..., [_U, _V]], features=[_U, _V])
        wind = [
            np.nan_to_num(restored[..., k] * REFERENCE_WIND_M_S).astype(np.float32) for k in (0, 1)
        ]
        return normalized, wind[0], wind[1]


def fit_normalizers(
    arrays: CubeArrays, train_days: NDArray[np.datetime64], clip_range: tuple[float, float]
) -> Normalizers:
    """Fit on the training days only, on valid (finite) values only: the NO2 normalizer over
    every valid cell of every training day; the per-cell climatology (``fit_climatology``); the
    feature normalizer per feature over every hour and met cell of up to 48 evenly spaced
    training days (what the model sees: the features where each token is)."""
    indices = arrays.indices_of(train_days)
    no2 = arrays.no2[indices]  # (N, lat, lon)
    no2_normalizer = RobustNormalizer(clip_range).fit(no2[np.isfinite(no2)])
    climatology = fit_climatology(no2)
    pick = np.unique(np.linspace(0, indices.size - 1, min(_NORMALIZER_DAYS, indices.size)))
    days = indices[pick.astype(np.int64)]
    features = np.empty((days.size, *arrays.feature_shape), dtype=np.float32)  # (n, T, i, j, F)
    for k in range(days.size):  # day by day: no second copy of the n days while reading
        features[k] = arrays.raw_features(days[k : k + 1])[0]
    feature_normalizer = RobustNormalizer(clip_range).fit(features, axis=(0, 1, 2, 3))
    return Normalizers(no2_normalizer, feature_normalizer, climatology, arrays.lat, arrays.lon)
