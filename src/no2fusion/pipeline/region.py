"""Region classes and the simulated world's truth file, for the cube build.

Sits in ``pipeline/`` beside ``build.py``: ``region`` comes from the truth file when the sources
are a simulated world, else it is derived from the long-term mean NO2 (``derive_region``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.errors import InputFileError
from no2fusion.grid import Grid
from no2fusion.vocab import REGION_CODES, REGION_LEGEND

UNKNOWN_REGION = -1
# Derived region classes (no truth file): quantiles of the long-term mean NO2 over cells.
DERIVED_REGION_QUANTILES: tuple[tuple[float, str], ...] = (
    (0.25, "background"),
    (0.50, "rural"),
    (0.80, "suburban"),
    (1.00, "urban"),
)


@dataclass
class Truth:
    """The truth file's contents on the target grid."""

    days: NDArray[np.datetime64]
    no2: NDArray[np.float32]  # (time, lat, lon) umol m-2
    region: NDArray[np.int8] | None
    legend: str


def read_truth(path: Path, grid: Grid) -> Truth:
    """The simulated world's truth file, checked against the grid."""
    try:
        with xr.open_dataset(path) as ds:
            ds = ds.load()
    except (OSError, ValueError) as error:
        raise InputFileError(f"not a readable NetCDF file ({type(error).__name__})", path) from None
    if "no2_truth" not in ds:
        raise InputFileError("variable 'no2_truth' not found", path)
    if ds["no2_truth"].attrs.get("units", "umol m-2") != "umol m-2":
        raise InputFileError(
            f"no2_truth has units {ds['no2_truth'].attrs.get('units')!r}, expected 'umol m-2'", path
        )
    lat, lon = ds["lat"].values, ds["lon"].values
    if (
        lat.shape != grid.lat.shape
        or lon.shape != grid.lon.shape
        or not (np.allclose(lat, grid.lat, atol=1e-6) and np.allclose(lon, grid.lon, atol=1e-6))
    ):
        raise InputFileError("truth grid differs from the configured grid", path)
    truth = ds["no2_truth"].transpose("time", "lat", "lon")
    region = ds["region"].transpose("lat", "lon").values.astype(np.int8) if "region" in ds else None
    legend = (
        str(ds["region"].attrs.get("legend", REGION_LEGEND)) if "region" in ds else REGION_LEGEND
    )
    days = ds["time"].values.astype("datetime64[D]").astype("datetime64[ns]")
    return Truth(days=days, no2=truth.values.astype(np.float32), region=region, legend=legend)


def derive_region(mean_no2: NDArray[np.floating]) -> tuple[NDArray[np.int8], str]:
    """Region classes from the long-term mean NO2 (n_lat, n_lon), for real data without truth.

    Cells are ranked by their mean column: below the 25th percentile -> background, 25-50 ->
    rural, 50-80 -> suburban, above 80 -> urban; ``industrial`` is never assigned (it cannot be
    told from urban by NO2 alone); cells never observed -> -1 (unknown).
    """
    region = np.full(mean_no2.shape, UNKNOWN_REGION, dtype=np.int8)
    finite = np.isfinite(mean_no2)
    if finite.any():
        edges = np.quantile(mean_no2[finite], [q for q, _ in DERIVED_REGION_QUANTILES[:-1]])
        classes = np.digitize(mean_no2[finite], edges)
        codes = np.array(
            [REGION_CODES[name] for _, name in DERIVED_REGION_QUANTILES], dtype=np.int8
        )
        region[finite] = codes[classes]
    legend = f"{UNKNOWN_REGION}=unknown {REGION_LEGEND} (derived from mean NO2 quantiles)"
    return region, legend
