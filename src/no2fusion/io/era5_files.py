"""Checks across ERA5 files without holding their values: each file's axes and a fingerprint.

Sits in ``io/`` beside ``era5.py``, its only user: ``read_era5`` and ``scan_era5`` reduce every
file they read to an ``Era5FileSummary`` and check the files against each other here (grids,
variables, the same time step in two files with different values).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.errors import InputFileError, NoDataError
from no2fusion.grid import BBox
from no2fusion.io.checks import check_domain_coverage, duplicate_time_conflict, grid_difference


@dataclass(frozen=True)
class Era5FileSummary:
    """One file's time steps, grid and, per variable, a fingerprint (time, 4) of each step
    (mean, std, min, max over the cropped grid): enough to check files against each other
    without holding their values."""

    name: str
    times: NDArray[np.datetime64]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    fingerprints: dict[str, NDArray[np.float64]]


def _fingerprint(values: NDArray[np.floating]) -> NDArray[np.float64]:
    """(time, lat, lon) -> (time, 4): mean, std, min and max of each step, float64."""
    flat = values.reshape(values.shape[0], -1)  # (time, lat * lon)
    out = np.empty((flat.shape[0], 4), dtype=np.float64)
    for start in range(0, flat.shape[0], 744):  # a month of hours at a time: bounded memory
        block = flat[start : start + 744].astype(np.float64)
        out[start : start + 744] = np.stack(
            [block.mean(1), block.std(1), block.min(1), block.max(1)], axis=1
        )
    return out


def summarise(part: xr.Dataset) -> Era5FileSummary:
    return Era5FileSummary(
        name=str(part["source_file"].values[0]) if part.sizes["time"] else "?",
        times=part["time"].values,
        lat=part["lat"].values,
        lon=part["lon"].values,
        fingerprints={str(name): _fingerprint(part[name].values) for name in part.data_vars},
    )


def check_files(
    summaries: Sequence[Era5FileSummary],
    variables: Sequence[str],
    files: Sequence[Path],
    bbox: BBox | None,
) -> NDArray[np.datetime64]:
    """The checks across files; returns the time steps every variable has.

    Raises ``InputFileError`` for a variable found in no file, files of one variable on
    different grids, variables on different grids, a time step in two files with different
    values; ``NoDataError`` when the variables share no step or the grid misses the domain."""
    folder = files[0].parent
    per_variable: dict[str, list[Era5FileSummary]] = {}
    for summary in summaries:
        for name in summary.fingerprints:
            per_variable.setdefault(name, []).append(summary)
    missing = [name for name in variables if name not in per_variable]
    if missing:
        raise InputFileError(
            f"ERA5 variable(s) {missing} not found in any of {len(files)} file(s)", files[0]
        )
    first_name = str(variables[0])
    reference = per_variable[first_name][0]
    common: NDArray[np.datetime64] | None = None
    for name in variables:
        holders = per_variable[name]
        for summary in holders:
            differs = grid_difference((holders[0].lat, holders[0].lon), (summary.lat, summary.lon))
            if differs:
                raise InputFileError(
                    f"ERA5 files {holders[0].name} and {summary.name} are on different grids "
                    f"({differs}); download all files on one grid",
                    folder,
                )
        differs = grid_difference((reference.lat, reference.lon), (holders[0].lat, holders[0].lon))
        if differs:
            raise InputFileError(
                f"ERA5 files {reference.name} ('{first_name}') and {holders[0].name} "
                f"('{name}') are on different grids ({differs}); download all variables on "
                "one grid",
                folder,
            )
        times = np.concatenate([summary.times for summary in holders])
        when = duplicate_time_conflict(
            times, np.concatenate([summary.fingerprints[name] for summary in holders])
        )
        if when is not None:
            names = sorted({s.name for s in holders if np.any(s.times == when)})
            raise InputFileError(
                f"time {np.datetime_as_string(when, unit='h')} of '{name}' is in "
                f"{' and '.join(names)} with different values; remove one of the downloads",
                folder,
            )
        unique = np.unique(times)
        common = unique if common is None else np.intersect1d(common, unique)
    assert common is not None
    if common.size == 0:
        raise NoDataError("ERA5 variables share no time step across the files", files[0])
    if bbox is not None:  # here, not per file: warnings of the isolated readers are not shown
        check_domain_coverage(
            files[0] if len(files) == 1 else folder, reference.lat, reference.lon, bbox
        )
    return common.astype("datetime64[ns]")
