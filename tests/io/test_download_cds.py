"""ERA5 download through an injected fake CDS client (the real one would need the network)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest

from no2fusion.cli import main
from no2fusion.errors import CredentialsError
from no2fusion.grid import BBox
from no2fusion.io.download.cds import (
    DATASET,
    download_era5,
    era5_request,
    request_area,
    split_by_month,
)
from no2fusion.io.download.credentials import CDSCredentials, Secret, cds_credentials
from no2fusion.io.download.http import DownloadError
from no2fusion.vocab import ERA5_REQUEST_NAMES

KEY = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
BBOX = BBox(lat_min=50.0, lat_max=51.6, lon_min=6.0, lon_max=7.6)
CREDS = CDSCredentials("https://cds.climate.copernicus.eu/api", Secret(KEY))


def era5_netcdf(path: Path, names: tuple[str, ...] = ("t2m",)) -> None:
    """A tiny file in the new-CDS layout: valid_time (s since 1970), latitude north->south."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("valid_time", 2)
        ds.createDimension("latitude", 3)
        ds.createDimension("longitude", 2)
        time = ds.createVariable("valid_time", "i8", ("valid_time",))
        time.units = "seconds since 1970-01-01"
        time[:] = [1704067200, 1704070800]
        ds.createVariable("latitude", "f8", ("latitude",))[:] = [52.0, 51.75, 51.5]
        ds.createVariable("longitude", "f8", ("longitude",))[:] = [6.0, 6.25]
        for name in names:
            var = ds.createVariable(name, "f4", ("valid_time", "latitude", "longitude"))
            var.units = "K"
            var[:] = np.full((2, 3, 2), 280.0, dtype="f4")


class FakeCds:
    """Stands in for ``cdsapi.Client``: records requests and writes what the CDS would."""

    def __init__(self, tmp: Path, kind: str = "netcdf", fail: Exception | None = None) -> None:
        self.tmp, self.kind, self.fail = tmp, kind, fail
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []

    def __call__(self, credentials: CDSCredentials) -> FakeCds:  # the client factory
        assert credentials.key.reveal() == KEY
        return self

    def retrieve(self, name: str, request: dict[str, Any], target: str | None = None) -> None:
        self.calls.append((name, request, target))
        if self.fail is not None:
            raise self.fail
        assert target is not None
        if self.kind == "netcdf":
            era5_netcdf(Path(target))
            return
        if self.kind == "html":
            Path(target).write_bytes(b"<html>Service unavailable</html>")
            return
        instant, accum = self.tmp / "instant.nc", self.tmp / "accum.nc"
        era5_netcdf(instant, ("t2m", "u10"))
        era5_netcdf(accum, ("ssrd",))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.write(instant, "data_stream-oper_stepType-instant.nc")
            archive.write(accum, "data_stream-oper_stepType-accum.nc")
            if self.kind == "zip-slip":
                archive.writestr("../../outside.nc", b"x")
        Path(target).write_bytes(buffer.getvalue())


def test_split_by_month_across_a_year_boundary() -> None:
    months = split_by_month(dt.date(2023, 12, 30), dt.date(2024, 2, 2))
    assert [(m.year, m.month) for m in months] == [(2023, 12), (2024, 1), (2024, 2)]
    assert months[0].days == (30, 31)
    assert months[1].days == tuple(range(1, 32))
    assert months[2].days == (1, 2)
    assert split_by_month(dt.date(2024, 2, 1), dt.date(2024, 2, 29))[0].days[-1] == 29  # leap
    with pytest.raises(DownloadError, match="before start"):
        split_by_month(dt.date(2024, 2, 2), dt.date(2024, 2, 1))


def test_request_uses_the_current_cds_form() -> None:
    area = request_area(BBOX, margin_deg=0.5)
    assert area == [52.25, 5.5, 49.5, 8.25]  # N, W, S, E widened and snapped to 0.25 deg
    request = era5_request(split_by_month(dt.date(2024, 1, 30), dt.date(2024, 1, 31))[0], area)
    assert request == {
        "product_type": ["reanalysis"],
        "variable": list(ERA5_REQUEST_NAMES.values()),
        "year": ["2024"],
        "month": ["01"],
        "day": ["30", "31"],
        "time": [f"{h:02d}:00" for h in range(24)],
        "data_format": "netcdf",
        "download_format": "unarchived",
        "area": [52.25, 5.5, 49.5, 8.25],
    }
    assert "format" not in request  # the retired key
    assert request_area(BBox(-89.9, 89.9, -179.9, 179.9), 1.0) == [90.0, -180.0, -90.0, 180.0]


def test_one_request_per_month_and_complete_months_are_skipped(tmp_path: Path) -> None:
    fake = FakeCds(tmp_path)
    out = tmp_path / "era5"
    paths = download_era5(
        BBOX, dt.date(2024, 1, 31), dt.date(2024, 2, 1), out, credentials=CREDS, client_factory=fake
    )
    assert [p.name for p in paths] == ["era5_2024_01.nc", "era5_2024_02.nc"]
    assert [call[0] for call in fake.calls] == [DATASET, DATASET]
    assert [call[1]["day"] for call in fake.calls] == [["31"], ["01"]]
    assert sorted(p.name for p in out.iterdir()) == ["era5_2024_01.nc", "era5_2024_02.nc"]
    with netCDF4.Dataset(paths[0]) as ds:
        assert ds["t2m"].units == "K"
    again = download_era5(
        BBOX, dt.date(2024, 1, 31), dt.date(2024, 2, 1), out, credentials=CREDS, client_factory=fake
    )
    assert again == paths
    assert len(fake.calls) == 2  # nothing requested the second time


def test_zip_result_is_split_into_one_file_per_step_type(tmp_path: Path) -> None:
    fake = FakeCds(tmp_path, kind="zip")
    out = tmp_path / "era5"
    paths = download_era5(
        BBOX, dt.date(2024, 3, 1), dt.date(2024, 3, 2), out, credentials=CREDS, client_factory=fake
    )
    assert [p.name for p in paths] == ["era5_2024_03_accum.nc", "era5_2024_03_instant.nc"]
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in paths]  # no .part left
    with netCDF4.Dataset(out / "era5_2024_03_instant.nc") as ds:
        assert set(ds.variables) >= {"t2m", "u10", "valid_time"}
    download_era5(
        BBOX, dt.date(2024, 3, 1), dt.date(2024, 3, 2), out, credentials=CREDS, client_factory=fake
    )
    assert len(fake.calls) == 1


def test_zip_slip_in_a_cds_archive_is_rejected(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    with pytest.raises(DownloadError, match="zip-slip"):
        download_era5(
            BBOX,
            dt.date(2024, 3, 1),
            dt.date(2024, 3, 1),
            out,
            credentials=CREDS,
            client_factory=FakeCds(tmp_path, kind="zip-slip"),
        )
    assert not (tmp_path / "outside.nc").exists()
    assert not list(out.glob("*.nc"))


def test_client_errors_become_one_line_without_the_key(tmp_path: Path) -> None:
    fake = FakeCds(tmp_path, fail=RuntimeError(f"401 Unauthorized for key {KEY}\nTraceback..."))
    with pytest.raises(DownloadError, match="ERA5 request for era5_2024_03 failed") as caught:
        download_era5(
            BBOX,
            dt.date(2024, 3, 1),
            dt.date(2024, 3, 1),
            tmp_path,
            credentials=CREDS,
            client_factory=fake,
        )
    assert KEY not in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.glob("era5_*"))


def test_credentials_from_env_or_cdsapirc(tmp_path: Path) -> None:
    got = cds_credentials({"CDSAPI_URL": "https://x/api", "CDSAPI_KEY": KEY})
    assert (got.url, got.key.reveal()) == ("https://x/api", KEY)
    rc = tmp_path / "rc"
    rc.write_text(f"url: https://cds.climate.copernicus.eu/api\nkey: {KEY}\n")
    got = cds_credentials({"CDSAPI_RC": str(rc)})
    assert got.url == "https://cds.climate.copernicus.eu/api" and got.key.reveal() == KEY
    assert KEY not in repr(got)
    rc.write_text("url: https://cds.climate.copernicus.eu/api\nkey: 12345:old-style-key\n")
    with pytest.raises(CredentialsError, match="old 'UID:APIKEY' form") as caught:
        cds_credentials({"CDSAPI_RC": str(rc)})
    assert "old-style-key" not in str(caught.value)


def test_cli_without_cdsapirc_exits_2_explaining_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("CDSAPI_URL", "CDSAPI_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDSAPI_RC", str(tmp_path / "missing-rc"))
    code = main(
        [
            "download",
            "era5",
            "--bbox",
            "6",
            "50",
            "7.6",
            "51.6",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    for needle in (
        "~/.cdsapirc",
        "url: https://cds.climate.copernicus.eu/api",
        "key: ",
        "CDSAPI_URL",
        "CDSAPI_KEY",
    ):
        assert needle in err
    assert not (tmp_path / "out").exists()


def test_cli_dry_run_lists_monthly_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "download",
            "era5",
            "--bbox",
            "6",
            "50",
            "7.6",
            "51.6",
            "--start",
            "2024-01-30",
            "--end",
            "2024-02-02",
            "--out",
            str(tmp_path / "out"),
            "--dry-run",
            "--margin",
            "0.5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "era5_2024_01.nc\t2 days x 24 h, 7 variables, area N/W/S/E [52.25, 5.5, 49.5, 8.25]" in out
    )
    assert "era5_2024_02.nc\t2 days x 24 h" in out
    assert not (tmp_path / "out").exists()


def test_a_result_that_is_not_netcdf_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "era5"
    with pytest.raises(DownloadError, match="neither NetCDF nor ZIP"):
        download_era5(
            BBOX,
            dt.date(2024, 3, 1),
            dt.date(2024, 3, 1),
            out,
            credentials=CREDS,
            client_factory=FakeCds(tmp_path, kind="html"),
        )
    assert list(out.iterdir()) == []
