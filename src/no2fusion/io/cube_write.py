"""Writing the datacube (Zarr): an empty store with the full time axis, then one day at a time.

Sits in ``io/`` beside ``cube.py`` (reading) and ``cube_schema.py`` (the schema both follow);
``pipeline/build.py`` is the only caller. Every per-day variable is chunked one day per chunk,
so parallel processes can write different days; ``day_complete`` is set last for each day, so
a crash never leaves a half-written day that reads as valid.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.errors import CubeSchemaError
from no2fusion.grid import edges_from_centres
from no2fusion.io.cube_schema import (
    CUBE_VARIABLES,
    OPTIONAL_VARIABLES,
    TIME_ENCODING,
    check_cube_schema,
    open_store,
)
from no2fusion.vocab import FEATURES, MET_VARIABLES, VARIABLES

ERA5_SPACING_DEG = 0.25  # a met axis of a single cell: ERA5's native spacing

_LONG_NAMES: dict[str, str] = {
    "no2": "tropospheric NO2 vertical column, QA-filtered, area-weighted",
    "no2_precision": "propagated NO2 column precision (1 sigma)",
    "no2_weight": "summed area-fraction weight of the contributing pixels",
    "no2_count": "number of contributing pixels",
    "overpass_time": "mean UTC time of the valid pixels over the domain",
    "met_time": "ERA5 time of each hourly step",
    "features": "meteorological and time features, unnormalized",
    "region": "region class",
    "cell_area": "cell area on the sphere",
    "day_complete": "all variables of this day are written",
    "no2_truth": "true NO2 column of the simulated world at the overpass",
}


@dataclass(frozen=True)
class CubeLayout:
    """Everything fixed when a cube store is created (the shape of every variable).

    Attributes:
        days: (n_time,) datetime64[ns], overpass days at 00:00 UTC, ascending.
        lat_edges, lon_edges: target grid edges, degrees (ascending).
        met_lat, met_lon: ERA5 grid centres (ascending, degrees) cropped to the domain.
        steps: hourly steps per day (``hour`` = -(steps-1)..0).
        with_truth: add ``no2_truth`` (simulated world).
    """

    days: NDArray[np.datetime64]
    lat_edges: NDArray[np.float64]
    lon_edges: NDArray[np.float64]
    met_lat: NDArray[np.float64]
    met_lon: NDArray[np.float64]
    steps: int
    with_truth: bool

    @property
    def shapes(self) -> dict[str, int]:
        return {
            "time": len(self.days),
            "lat": len(self.lat_edges) - 1,
            "lon": len(self.lon_edges) - 1,
            "hour": self.steps,
            "feature": len(FEATURES),
            "met_lat": len(self.met_lat),
            "met_lon": len(self.met_lon),
        }


def _met_bounds(centres: NDArray[np.float64]) -> NDArray[np.float64]:
    return _bounds(edges_from_centres(centres, ERA5_SPACING_DEG))  # (n, 2)


def _bounds(edges: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.stack([edges[:-1], edges[1:]], axis=1)  # (n, 2)


def _template(
    layout: CubeLayout,
    region: NDArray[np.int8],
    cell_area: NDArray[np.float64],
    region_legend: str,
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    import dask.array as da

    n = layout.shapes
    t = n["time"]

    def lazy(shape: tuple[int, ...], fill: Any, dtype: Any) -> Any:
        return da.full(shape, fill, dtype=dtype, chunks=(1, *shape[1:]))

    field = ("time", "lat", "lon")
    met = ("time", "hour", "met_lat", "met_lon")
    grid2 = (n["lat"], n["lon"])
    metshape = (t, n["hour"], n["met_lat"], n["met_lon"])
    nat = np.datetime64("NaT", "ns")
    data: dict[str, Any] = {
        "no2": (field, lazy((t, *grid2), np.nan, np.float32)),
        "no2_precision": (field, lazy((t, *grid2), np.nan, np.float32)),
        "no2_weight": (field, lazy((t, *grid2), 0.0, np.float32)),
        "no2_count": (field, lazy((t, *grid2), 0, np.int32)),
        "overpass_time": (("time",), lazy((t,), nat, "datetime64[ns]")),
        "met_time": (("time", "hour"), lazy((t, n["hour"]), nat, "datetime64[ns]")),
        **{f"met_{v}": (met, lazy(metshape, np.nan, np.float32)) for v in MET_VARIABLES},
        "features": (
            (*met, "feature"),
            lazy((*metshape, n["feature"]), np.nan, np.float32),
        ),
        "day_complete": (("time",), lazy((t,), False, bool)),
        "region": (("lat", "lon"), np.asarray(region, dtype=np.int8)),
        "cell_area": (("lat", "lon"), np.asarray(cell_area, dtype=np.float64)),
        "lat_bounds": (("lat", "bounds"), _bounds(layout.lat_edges)),
        "lon_bounds": (("lon", "bounds"), _bounds(layout.lon_edges)),
        "met_lat_bounds": (("met_lat", "bounds"), _met_bounds(layout.met_lat)),
        "met_lon_bounds": (("met_lon", "bounds"), _met_bounds(layout.met_lon)),
    }
    if layout.with_truth:
        data["no2_truth"] = (field, lazy((t, *grid2), np.nan, np.float32))
    lat = 0.5 * (layout.lat_edges[:-1] + layout.lat_edges[1:])
    lon = 0.5 * (layout.lon_edges[:-1] + layout.lon_edges[1:])
    cube = xr.Dataset(
        data,
        coords={
            "time": np.asarray(layout.days).astype("datetime64[ns]"),
            "lat": lat,
            "lon": lon,
            "hour": np.arange(-(layout.steps - 1), 1, dtype=np.int32),
            "feature": np.array(FEATURES, dtype=object),  # variable-length strings in Zarr
            "met_lat": np.asarray(layout.met_lat, dtype=np.float64),
            "met_lon": np.asarray(layout.met_lon, dtype=np.float64),
        },
        attrs={"Conventions": "CF-1.10", **attrs},
    )
    for name, (_dims, units) in {**CUBE_VARIABLES, **OPTIONAL_VARIABLES}.items():
        if name in cube and units is not None:
            cube[name].attrs["units"] = units
    for name, text in _LONG_NAMES.items():
        if name in cube:
            cube[name].attrs["long_name"] = text
    for name in MET_VARIABLES:
        cube[f"met_{name}"].attrs["long_name"] = VARIABLES[name].long_name
    cube["region"].attrs["legend"] = region_legend
    cube["features"].attrs["comment"] = "definitions in no2fusion.pipeline.features"
    axis_attrs = {
        "time": {"long_name": "overpass day (00:00 UTC)", "standard_name": "time"},
        "lat": {"units": "degrees_north", "standard_name": "latitude", "bounds": "lat_bounds"},
        "lon": {"units": "degrees_east", "standard_name": "longitude", "bounds": "lon_bounds"},
        "met_lat": {
            "units": "degrees_north",
            "long_name": "ERA5 grid latitude",
            "bounds": "met_lat_bounds",
        },
        "met_lon": {
            "units": "degrees_east",
            "long_name": "ERA5 grid longitude",
            "bounds": "met_lon_bounds",
        },
        "hour": {"units": "h", "long_name": "hourly step relative to the overpass step"},
        "feature": {"long_name": "feature name (vocab.FEATURES order)"},
    }
    for name, values in axis_attrs.items():
        cube[name].attrs.update(values)
    for name in ("lat_bounds", "lon_bounds", "met_lat_bounds", "met_lon_bounds"):
        cube[name].attrs["units"] = "degrees_north" if "lat" in name else "degrees_east"
    return cube


def create_cube(
    path: str | Path,
    layout: CubeLayout,
    region: NDArray[np.int8],
    cell_area: NDArray[np.float64],
    region_legend: str,
    attrs: Mapping[str, Any],
) -> None:
    """Create an empty cube store with the full time axis (every day absent: ``day_complete``
    False, fields NaN). Written to a temporary folder and renamed, so a crash leaves no store.

    Raises ``CubeSchemaError`` if ``path`` already exists.
    """
    path = Path(path)
    if path.exists():
        raise CubeSchemaError("already exists; not overwriting", path)
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cube = _template(layout, region, cell_area, region_legend, attrs)
    encoding = {name: dict(TIME_ENCODING) for name in ("overpass_time", "met_time")}
    try:
        with warnings.catch_warnings():
            # consolidated metadata is a Zarr v3 extension; xarray and zarr-python read it
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            cube.to_zarr(tmp, mode="w-", compute=False, encoding=encoding, consolidated=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cube_layout_matches(path: str | Path, layout: CubeLayout) -> str | None:
    """None if the existing store at ``path`` has exactly this layout, else what differs."""
    cube = open_store(path)
    check_cube_schema(cube, path)
    n = layout.shapes
    for dim, size in n.items():
        if cube.sizes.get(dim) != size:
            return f"dimension '{dim}' has size {cube.sizes.get(dim)}, this build needs {size}"
    checks = {
        "time": np.asarray(layout.days).astype("datetime64[ns]"),
        "met_lat": layout.met_lat,
        "met_lon": layout.met_lon,
    }
    for name, values in checks.items():
        if not np.array_equal(cube[name].values, values):
            return f"coordinate '{name}' differs from this build's"
    if not np.allclose(cube["lat_bounds"].values, _bounds(layout.lat_edges)) or not np.allclose(
        cube["lon_bounds"].values, _bounds(layout.lon_edges)
    ):
        return "the target grid differs from this build's"
    if layout.with_truth != ("no2_truth" in cube):
        return "one of them has no2_truth and the other not"
    return None


def completed_days(path: str | Path) -> NDArray[np.bool_]:
    """The ``day_complete`` flags (n_time,) of an existing store."""
    import zarr

    flags = zarr.open_array(str(path), path="day_complete", mode="r")
    return np.asarray(flags[:], dtype=bool)


def _encode_day(name: str, array: NDArray[Any]) -> NDArray[Any]:
    """Datetimes -> float64 seconds since 1970 (NaT -> NaN), as ``TIME_ENCODING`` declares."""
    if np.issubdtype(array.dtype, np.datetime64):
        stamp = array.astype("datetime64[ns]")
        seconds = (stamp - np.datetime64("1970-01-01T00:00:00", "ns")) / np.timedelta64(1, "s")
        return np.where(np.isnat(stamp), np.nan, seconds)
    return array


def write_day(path: str | Path, index: int, values: Mapping[str, NDArray[Any]]) -> None:
    """Write one day (time ``index``), then set ``day_complete`` LAST.

    ``values`` maps variable names with a leading ``time`` dim to that day's array WITHOUT the
    time axis (e.g. ``no2`` (lat, lon), ``features`` (hour, met_lat, met_lon, feature),
    ``overpass_time`` a datetime64 scalar). Every per-day variable is chunked one day per chunk,
    so each assignment replaces whole chunks of this day only: days can be written by parallel
    processes. A crash before the flag leaves the day absent (``open_cube`` drops it).

    This is a region write done with zarr-python on the arrays that ``create_cube`` laid out
    (same result as ``Dataset.to_zarr(region=...)``, which costs ~35 ms per call in metadata
    handling; here the whole day costs a few ms).
    """
    import zarr
    from zarr.core.sync import sync

    dims = {
        **{k: v[0] for k, v in CUBE_VARIABLES.items()},
        **{k: v[0] for k, v in OPTIONAL_VARIABLES.items()},
    }
    prepared = {}
    for name, array in values.items():
        if name == "day_complete":
            raise ValueError("day_complete is set by write_day itself")
        if name not in dims or dims[name][0] != "time":
            raise ValueError(f"'{name}' is not a per-day cube variable")
        prepared[name] = _encode_day(name, np.asarray(array))
    store = zarr.storage.LocalStore(str(path))
    # all arrays of the day are written concurrently on zarr's event loop (the per-call
    # overhead then overlaps instead of adding up), then the flag, last
    sync(_write_arrays(store, index, prepared))
    _set_day_complete(store, index)


async def _write_arrays(store: Any, index: int, prepared: Mapping[str, NDArray[Any]]) -> None:
    import zarr.api.asynchronous as zarr_async
    from zarr import AsyncArray

    names = list(prepared)
    # the array metadata comes from the store's consolidated metadata (one read instead of one
    # per array; ``create_cube`` writes it, and shapes and codecs never change afterwards)
    group = await zarr_async.open_group(store=store, mode="r+", use_consolidated=None)
    targets = []
    for name, target in zip(
        names, await asyncio.gather(*(group.getitem(name) for name in names)), strict=True
    ):
        if not isinstance(target, AsyncArray):
            raise ValueError(f"'{name}' is a group in the cube, not an array")
        targets.append(target)
    for name, target in zip(names, targets, strict=True):
        array = prepared[name]
        if tuple(target.shape[1:]) != array.shape:
            raise ValueError(
                f"'{name}' has shape {array.shape}, the cube expects {target.shape[1:]}"
            )
        if not 0 <= index < target.shape[0]:
            raise IndexError(f"day index {index} outside the cube's {target.shape[0]} days")
    await asyncio.gather(
        *(
            target.setitem(index, prepared[name])
            for name, target in zip(names, targets, strict=True)
        )
    )


def _set_day_complete(store: Any, index: int) -> None:
    """The last write of a day: its completeness flag."""
    import zarr

    zarr.open_array(store, path="day_complete", mode="r+")[index] = True


def clear_day_complete(path: str | Path, indices: Sequence[int]) -> None:
    """Unset the flags of days to be written again (a damaged day), before any of their data."""
    import zarr

    flags = zarr.open_array(str(path), path="day_complete", mode="r+")
    for index in indices:
        flags[int(index)] = False


def write_static(
    path: str | Path, name: str, values: NDArray[Any], attrs: Mapping[str, Any] | None = None
) -> None:
    """Overwrite a variable without a time dim (e.g. ``region`` derived after the days)."""
    import zarr

    array = zarr.open_array(str(path), path=name, mode="r+")
    array[...] = values
    if attrs:
        array.attrs.update(dict(attrs))
    _consolidate(path)


def update_cube_attrs(path: str | Path, attrs: Mapping[str, Any]) -> None:
    """Merge global attributes (values JSON-encoded when not str/number) and reconsolidate."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    plain = {
        key: value if isinstance(value, str | int | float) else json.dumps(value)
        for key, value in attrs.items()
    }
    group.attrs.update(plain)
    _consolidate(path)


def _consolidate(path: str | Path) -> None:
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(str(path))
