"""The simulated world's truth files: ``truth/truth.nc`` and ``truth/truth_hourly.nc``.

Sits in ``synth`` under ``world.py`` (which simulates the columns and calls these writers),
beside ``writers.py`` (the real products). The truth is not a real product: it is CF-style
NetCDF on the target grid, in umol m-2, read by ``pipeline/build.py`` for the cube's
``no2_truth`` and ``region`` variables (the layout is a contract with the pipeline).
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
from numpy.typing import NDArray

from no2fusion.files import atomic_path
from no2fusion.grid import Grid
from no2fusion.synth.emissions import EmissionMap
from no2fusion.vocab import NO2_UNITS, REGION_LEGEND


def write_truth(
    path: Path,
    grid: Grid,
    truth: NDArray[np.float32],
    overpass_times: NDArray[np.datetime64],
    emissions: EmissionMap,
) -> Path:
    """Write ``truth.nc`` atomically: ``no2_truth`` (time, lat, lon) umol m-2 at each day's
    overpass (``overpass_times`` (time,)), ``region`` (lat, lon) int8 classes with their
    ``legend``, and the annual-mean ``emissions`` (lat, lon) umol m-2 s-1; returns ``path``."""
    days = overpass_times.astype("datetime64[D]")
    with atomic_path(path) as tmp, netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        ds.setncatts(
            {
                "Conventions": "CF-1.8",
                "title": "no2fusion simulated world: true tropospheric NO2 column",
                "source": "no2fusion.synth",
            }
        )
        ds.createDimension("time", truth.shape[0])
        ds.createDimension("lat", grid.shape[0])
        ds.createDimension("lon", grid.shape[1])
        t = ds.createVariable("time", "i4", ("time",))
        t.setncatts(
            {
                "units": "days since 1970-01-01",
                "standard_name": "time",
                "calendar": "proleptic_gregorian",
            }
        )
        t[:] = days.astype(np.int64)
        for name, values, units in (
            ("lat", grid.lat, "degrees_north"),
            ("lon", grid.lon, "degrees_east"),
        ):
            var = ds.createVariable(name, "f8", (name,))
            var.setncatts(
                {"units": units, "standard_name": "latitude" if name == "lat" else "longitude"}
            )
            var[:] = values
        ot = ds.createVariable("overpass_time", "i8", ("time",))
        ot.setncatts(
            {
                "units": "milliseconds since 1970-01-01",
                "long_name": "overpass time (UTC) of the truth snapshot",
            }
        )
        ot[:] = overpass_times.astype("datetime64[ms]").astype(np.int64)
        var = ds.createVariable("no2_truth", "f4", ("time", "lat", "lon"), zlib=True, complevel=1)
        var.setncatts(
            {"units": NO2_UNITS, "long_name": "true tropospheric NO2 column at the overpass"}
        )
        var[:] = truth
        region = ds.createVariable("region", "i1", ("lat", "lon"))
        region.setncatts(
            {"legend": REGION_LEGEND, "long_name": "region class from the emission map"}
        )
        region[:] = emissions.region
        emis = ds.createVariable("emissions", "f4", ("lat", "lon"))
        emis.setncatts({"units": "umol m-2 s-1", "long_name": "annual-mean NO2 emission"})
        emis[:] = emissions.total
    return path


class HourlyTruthFile:
    """Append-only hourly truth (time, lat, lon) umol m-2, written into ``path`` (a temporary
    file from ``atomic_path``) as it is simulated."""

    def __init__(self, path: Path, grid: Grid) -> None:
        self.ds = netCDF4.Dataset(path, "w", format="NETCDF4")
        self.ds.createDimension("time", None)
        self.ds.createDimension("lat", grid.shape[0])
        self.ds.createDimension("lon", grid.shape[1])
        t = self.ds.createVariable("time", "i8", ("time",))
        t.setncatts({"units": "hours since 1970-01-01", "standard_name": "time"})
        for name, values in (("lat", grid.lat), ("lon", grid.lon)):
            self.ds.createVariable(name, "f8", (name,))[:] = values
        var = self.ds.createVariable(
            "no2_truth",
            "f4",
            ("time", "lat", "lon"),
            zlib=True,
            complevel=1,
            chunksizes=(24, *grid.shape),
        )
        var.setncatts({"units": NO2_UNITS, "long_name": "true tropospheric NO2 column, hourly"})
        self.n = 0

    def append(self, hour: np.datetime64, column: NDArray[np.float64]) -> None:
        self.ds["time"][self.n] = int(hour.astype("datetime64[h]").astype(np.int64))
        self.ds["no2_truth"][self.n] = column.astype(np.float32)
        self.n += 1

    def close(self) -> None:
        if self.ds.isopen():
            self.ds.close()
