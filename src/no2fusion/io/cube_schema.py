"""The analysis-ready datacube on disk (Zarr): its schema, the contract of every cube.

Sits in ``io/``: ``cube_write.py`` (used by ``pipeline/build.py``) writes cubes and ``cube.py``
(used by ``data/`` and ``evaluation/``) reads them, both against the schema here; nobody else
touches the store. The schema below is the contract between the pipeline and training
(DESIGN §5).

Layout (dims in brackets; units in the ``units`` attribute of every variable):

- ``no2`` [time, lat, lon] float32 umol m-2 — QA-filtered, area-weighted L3 column, NaN where no
  valid pixel touched the cell.
- ``no2_precision`` [time, lat, lon] float32 umol m-2 — propagated retrieval precision.
- ``no2_weight`` [time, lat, lon] float32 1 — summed area-fraction weights (HARP ``weight``).
- ``no2_count`` [time, lat, lon] int32 1 — number of contributing pixels.
- ``overpass_time`` [time] datetime64 — mean UTC time of the valid pixels over the domain.
- ``met_time`` [time, hour] datetime64 — ERA5 valid_time used for each of the hourly steps.
- ``met_<v>`` [time, hour, met_lat, met_lon] float32 — raw aligned hourly meteorology for
  v in ``vocab.MET_VARIABLES`` on the ERA5 grid cropped to the domain (plus a margin).
- ``features`` [time, hour, met_lat, met_lon, feature] float32 — the 13 features (DESIGN §2);
  tile-averaging happens in ``data/``.
- ``region`` [lat, lon] int8 — region class codes, legend in attribute ``legend``.
- ``cell_area`` [lat, lon] float64 m2 — cell areas on the sphere.
- ``lat_bounds`` [lat, bounds], ``lon_bounds`` [lon, bounds], ``met_lat_bounds``,
  ``met_lon_bounds`` float64 degrees — cell edges.
- ``day_complete`` [time] bool — set last, after every variable of that day is written: a day
  with ``False`` is absent (a crash never leaves a half-written day that reads as valid).
- ``no2_truth`` [time, lat, lon] float32 umol m-2 — only in cubes built from the simulated world.

Coordinates: ``time`` = overpass day at 00:00 UTC (datetime64[ns]); ``lat``/``lon`` cell
centres (ascending, degrees); ``hour`` = int offsets -(steps-1)..0 in hours relative to the step
nearest the overpass; ``feature`` = names from ``vocab.FEATURES``; ``met_lat``/``met_lon``.

Global attributes: ``Conventions`` (CF-1.10), ``title``, ``qa_threshold``, ``source_files``
(JSON list), ``no2fusion_version``, ``synthetic`` (0/1), ``history``, and ``ALL_CHUNKS_ATTR``
(1: every complete day has a chunk of every per-day variable but ``no2_truth``, as the build
writes them; readers check it, ``io/cube.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from no2fusion.errors import CubeSchemaError
from no2fusion.vocab import FEATURES, MET_VARIABLES, NO2_UNITS, VARIABLES

ALL_CHUNKS_ATTR = "complete_days_have_all_chunks"
CUBE_DIMS: tuple[str, ...] = ("time", "lat", "lon", "hour", "feature", "met_lat", "met_lon")

# variable -> (dims, units); ``None`` units means "not checked" (datetimes, flags).
CUBE_VARIABLES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "no2": (("time", "lat", "lon"), NO2_UNITS),
    "no2_precision": (("time", "lat", "lon"), NO2_UNITS),
    "no2_weight": (("time", "lat", "lon"), "1"),
    "no2_count": (("time", "lat", "lon"), "1"),
    "overpass_time": (("time",), None),
    "met_time": (("time", "hour"), None),
    **{
        f"met_{name}": (("time", "hour", "met_lat", "met_lon"), VARIABLES[name].units)
        for name in MET_VARIABLES
    },
    "features": (("time", "hour", "met_lat", "met_lon", "feature"), "1"),
    "region": (("lat", "lon"), "1"),
    "cell_area": (("lat", "lon"), "m2"),
    "day_complete": (("time",), None),
}
OPTIONAL_VARIABLES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "no2_truth": (("time", "lat", "lon"), NO2_UNITS),
}


# Datetimes are stored as float64 seconds since 1970 (NaN = not written), so a day written in
# one process and read in another decodes identically and unwritten days read as NaT.
TIME_ENCODING: dict[str, Any] = {"units": "seconds since 1970-01-01", "dtype": "float64"}


def check_cube_schema(cube: xr.Dataset, path: str | Path = "cube") -> None:
    """Raise ``CubeSchemaError`` naming the first missing variable, wrong dims or wrong units."""
    for name, (dims, units) in {**CUBE_VARIABLES, **OPTIONAL_VARIABLES}.items():
        if name not in cube.variables:
            if name in OPTIONAL_VARIABLES:
                continue
            raise CubeSchemaError(f"missing variable '{name}'", path)
        actual_dims = cube[name].dims
        if tuple(actual_dims) != dims:
            raise CubeSchemaError(
                f"variable '{name}' has dims {actual_dims}, expected {dims}", path
            )
        if units is not None and cube[name].attrs.get("units") != units:
            raise CubeSchemaError(
                f"variable '{name}' has units {cube[name].attrs.get('units')!r}, "
                f"expected {units!r}",
                path,
            )
    features = [str(f) for f in cube["feature"].values]
    if features != list(FEATURES):
        raise CubeSchemaError(f"feature coordinate {features} differs from {list(FEATURES)}", path)
    for axis in ("lat", "lon"):
        if not np.all(np.diff(cube[axis].values) > 0):
            raise CubeSchemaError(f"coordinate '{axis}' must be strictly ascending", path)


def open_store(path: str | Path) -> xr.Dataset:
    """The store at ``path`` opened lazily (dask, one chunk per day), schema not yet checked.

    Raises ``CubeSchemaError`` for a missing path or a folder that is not a Zarr store."""
    path = Path(path)
    if not path.exists():
        raise CubeSchemaError("no such cube", path)
    try:
        return xr.open_zarr(path, chunks={})
    except Exception as error:  # zarr raises several unrelated types for a non-cube folder
        raise CubeSchemaError(
            f"not a readable Zarr store ({type(error).__name__}: {error})", path
        ) from None
