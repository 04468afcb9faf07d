"""Download clients for real sources: Sentinel-5P L2 NO2 from CDSE, ERA5 from the CDS.

Sits at the very start of the flow (``io/``): these fetch the files that ``io/tropomi.py`` and
``io/era5.py`` read. ``no2fusion download s5p|era5`` (``commands/download.py``) wires them up.
Tests drive them with mocked HTTP (``responses``) and a fake CDS client; they never touch the
network.
"""

from __future__ import annotations

from no2fusion.io.download.cds import download_era5, era5_request, split_by_month
from no2fusion.io.download.cdse import CDSEClient, Product, build_filter
from no2fusion.io.download.credentials import cds_credentials, cdse_credentials
from no2fusion.io.download.http import DownloadError, RetryPolicy

__all__ = [
    "CDSEClient",
    "DownloadError",
    "Product",
    "RetryPolicy",
    "build_filter",
    "cds_credentials",
    "cdse_credentials",
    "download_era5",
    "era5_request",
    "split_by_month",
]
