"""ERA5 hourly single levels from the Copernicus Climate Data Store (CDS) through ``cdsapi``.

Sits at the very start of the flow (``io/download/``): it fetches the ERA5 NetCDF files that
``io/era5.py`` reads. The request uses the current CDS form (FORMATS.md D.2): list-valued
``product_type``/``variable``/``year``/``month``/``day``/``time``, ``data_format: netcdf``,
``download_format: unarchived`` and ``area: [N, W, S, E]``; the retired ``format`` key is not
sent. One request per calendar month keeps each under the CDS size limits and makes a
re-run skip finished months.

Files (in ``out_dir``): ``era5_YYYY_MM.nc`` when the CDS returns one NetCDF; when it returns a
ZIP with one file per GRIB ``stepType`` (it does so whenever instantaneous and accumulated
fields are mixed, even with ``unarchived``), each member becomes ``era5_YYYY_MM_<stepType>.nc``
(``instant``, ``accum``, ...), written last-``instant`` so that its presence marks the month
complete. Every write goes to a temporary name first and ends with an atomic rename.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import math
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from no2fusion.grid import BBox
from no2fusion.io.download.cdse import check_zip_members
from no2fusion.io.download.credentials import CDSCredentials, Redactor, cds_credentials
from no2fusion.io.download.http import DownloadError
from no2fusion.vocab import ERA5_REQUEST_NAMES

log = logging.getLogger(__name__)

DATASET = "reanalysis-era5-single-levels"
ERA5_RESOLUTION_DEG = 0.25
HOURS: tuple[str, ...] = tuple(f"{hour:02d}:00" for hour in range(24))
_STEP_TYPE = re.compile(r"stepType-([A-Za-z0-9]+)")


class CdsClient(Protocol):
    """What we use of ``cdsapi.Client``: ``retrieve(dataset, request, target)`` writes a file."""

    def retrieve(self, name: str, request: dict[str, Any], target: str | None = None) -> Any: ...


ClientFactory = Callable[[CDSCredentials], CdsClient]


def cdsapi_client(credentials: CDSCredentials) -> CdsClient:
    """The real client (``cdsapi`` >= 0.7 with a personal access token)."""
    import cdsapi

    client: CdsClient = cdsapi.Client(
        url=credentials.url, key=credentials.key.reveal(), quiet=True, progress=True
    )
    return client


@dataclass(frozen=True)
class MonthRequest:
    """The days of one calendar month inside the requested range."""

    year: int
    month: int
    days: tuple[int, ...]

    @property
    def stem(self) -> str:
        return f"era5_{self.year:04d}_{self.month:02d}"


def split_by_month(start: dt.date, end: dt.date) -> list[MonthRequest]:
    """The inclusive date range [start, end] cut into calendar months."""
    if end < start:
        raise DownloadError(f"end date {end} is before start date {start}")
    months: list[MonthRequest] = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        last = calendar.monthrange(year, month)[1]
        first_day = start.day if (year, month) == (start.year, start.month) else 1
        last_day = end.day if (year, month) == (end.year, end.month) else last
        months.append(MonthRequest(year, month, tuple(range(first_day, last_day + 1))))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def request_area(bbox: BBox, margin_deg: float) -> list[float]:
    """``[North, West, South, East]``: the bbox widened by ``margin_deg`` and snapped outwards to
    the 0.25 deg ERA5 grid, clipped to the globe."""
    step = ERA5_RESOLUTION_DEG
    north = min(90.0, math.ceil((bbox.lat_max + margin_deg) / step) * step)
    south = max(-90.0, math.floor((bbox.lat_min - margin_deg) / step) * step)
    west = max(-180.0, math.floor((bbox.lon_min - margin_deg) / step) * step)
    east = min(180.0, math.ceil((bbox.lon_max + margin_deg) / step) * step)
    return [north, west, south, east]


def era5_request(month: MonthRequest, area: list[float]) -> dict[str, Any]:
    """The CDS request for one month: every hour, the variables of ``vocab.ERA5_REQUEST_NAMES``."""
    return {
        "product_type": ["reanalysis"],
        "variable": list(ERA5_REQUEST_NAMES.values()),
        "year": [f"{month.year:04d}"],
        "month": [f"{month.month:02d}"],
        "day": [f"{day:02d}" for day in month.days],
        "time": list(HOURS),
        "data_format": "netcdf",
        "download_format": "unarchived",
        "area": area,
    }


def month_is_complete(out_dir: Path, month: MonthRequest) -> bool:
    """A month is complete when ``era5_YYYY_MM.nc`` or ``era5_YYYY_MM_instant.nc`` exists."""
    return any(
        (out_dir / name).exists() for name in (f"{month.stem}.nc", f"{month.stem}_instant.nc")
    )


def install_result(part: Path, out_dir: Path, month: MonthRequest) -> list[Path]:
    """Move a retrieved file into place: a NetCDF is renamed, a ZIP is split by ``stepType``."""
    with part.open("rb") as handle:
        magic = handle.read(4)
    if magic in (b"\x89HDF", b"CDF\x01", b"CDF\x02", b"CDF\x05"):
        final = out_dir / f"{month.stem}.nc"
        os.replace(part, final)
        return [final]
    if magic != b"PK\x03\x04":
        part.unlink()
        raise DownloadError(
            f"CDS result is neither NetCDF nor ZIP (starts with {magic!r}); removed it", part
        )
    installed: list[tuple[str, Path]] = []
    with zipfile.ZipFile(part) as archive:
        check_zip_members(archive, out_dir, str(part))
        members = [i for i in archive.infolist() if i.filename.lower().endswith(".nc")]
        if not members:
            raise DownloadError("CDS archive holds no .nc file", part)
        for info in members:
            found = _STEP_TYPE.search(PurePosixPath(info.filename).name)
            step = found.group(1) if found else PurePosixPath(info.filename).stem
            tmp = out_dir / f".{month.stem}_{step}.nc.tmp"
            with archive.open(info) as source, tmp.open("wb") as sink:
                shutil.copyfileobj(source, sink, length=1 << 20)
            installed.append((step, tmp))
    finals: list[Path] = []
    # 'instant' last: its presence is what marks the month complete.
    for step, tmp in sorted(installed, key=lambda item: item[0] == "instant"):
        final = out_dir / f"{month.stem}_{step}.nc"
        os.replace(tmp, final)
        finals.append(final)
    part.unlink()
    return finals


def download_era5(
    bbox: BBox,
    start: dt.date,
    end: dt.date,
    out_dir: str | Path,
    *,
    margin_deg: float = 1.0,
    credentials: CDSCredentials | None = None,
    client_factory: ClientFactory = cdsapi_client,
    dry_run: bool = False,
) -> list[Path]:
    """Retrieve hourly ERA5 for ``bbox`` (plus ``margin_deg``) and the inclusive date range.

    Returns the NetCDF paths (new and already present). With ``dry_run`` nothing is requested
    and the paths that would be written are returned. Raises ``CredentialsError`` without
    ``~/.cdsapirc`` / ``CDSAPI_URL`` + ``CDSAPI_KEY``, ``DownloadError`` when the CDS fails.
    """
    out = Path(out_dir)
    months = split_by_month(start, end)
    area = request_area(bbox, margin_deg)
    if dry_run:
        return [out / f"{month.stem}.nc" for month in months]
    creds = credentials or cds_credentials()
    redact = Redactor([creds.key])
    out.mkdir(parents=True, exist_ok=True)
    client: CdsClient | None = None
    paths: list[Path] = []
    for month in months:
        if month_is_complete(out, month):
            log.info("%s: already complete, skipped", month.stem)
            paths.extend(sorted(out.glob(f"{month.stem}*.nc")))
            continue
        if client is None:
            client = client_factory(creds)
        part = out / f"{month.stem}.part"
        request = era5_request(month, area)
        log.info("ERA5 %s: requesting %d days, area %s", month.stem, len(month.days), area)
        try:
            client.retrieve(DATASET, request, str(part))
        except Exception as error:  # cdsapi raises bare Exceptions and requests errors alike
            message = redact(f"{type(error).__name__}: {error}").splitlines()[0][:300]
            raise DownloadError(f"ERA5 request for {month.stem} failed: {message}") from None
        if not part.is_file() or part.stat().st_size == 0:
            raise DownloadError(f"ERA5 request for {month.stem} returned no data", part)
        paths.extend(install_result(part, out, month))
    return paths
