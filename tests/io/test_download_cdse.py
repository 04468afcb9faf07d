"""CDSE Sentinel-5P client against mocked HTTP (``responses``); never touches the network."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import netCDF4
import numpy as np
import pytest
import responses
from urllib3.exceptions import ProtocolError

from no2fusion.cli import main
from no2fusion.errors import CredentialsError
from no2fusion.grid import BBox
from no2fusion.io.download.cdse import (
    CATALOGUE_URL,
    TOKEN_URL,
    CDSEClient,
    Product,
    build_filter,
    jwt_expiry,
)
from no2fusion.io.download.credentials import CDSECredentials, Secret, cdse_credentials
from no2fusion.io.download.http import DownloadError, RetryPolicy, retry_after_seconds

PASSWORD = "Hunter2-very-secret-pw"
NAME = "S5P_OFFL_L2__NO2____20240101T113000_20240101T131130_32171_03_020600_20240103T034051"
BBOX = BBox(lat_min=35.0, lat_max=55.0, lon_min=-15.0, lon_max=25.0)
T0 = 1_700_000_000.0


def download_url(product_id: str) -> str:
    return f"https://download.dataspace.copernicus.eu/odata/v1/Products({product_id})/$value"


def make_jwt(exp: float, tag: str) -> str:
    """An unsigned JWT with ``exp``; ``tag`` makes each token distinct and greppable."""

    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'exp': exp, 'jti': tag})}.sig{tag}"


def token_reply(exp: float, tag: str) -> dict[str, object]:
    return {
        "access_token": make_jwt(exp, tag),
        "refresh_token": f"refresh-{tag}-token",
        "expires_in": 600,
        "refresh_expires_in": 3600,
    }


def netcdf_bytes(tmp_path: Path, seed: int = 0) -> bytes:
    """A small real NetCDF-4 file with the S5P group layout, as bytes."""
    path = tmp_path / f"payload_{seed}.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.id = NAME
        product = ds.createGroup("PRODUCT")
        product.createDimension("scanline", 8)
        product.createDimension("ground_pixel", 4)
        var = product.createVariable(
            "nitrogendioxide_tropospheric_column", "f4", ("scanline", "ground_pixel")
        )
        var.units = "mol m-2"
        var[:] = np.random.default_rng(seed).uniform(0, 1e-4, (8, 4)).astype("f4")
    return path.read_bytes()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def product(data: bytes, pid: str = "aaaa-1", md5: str | None = "auto") -> Product:
    checksums = {"MD5": hashlib.md5(data).hexdigest() if md5 == "auto" else md5} if md5 else {}
    return Product(
        id=pid, name=f"{NAME}.nc", size=len(data), start="2024-01-01", checksums=checksums
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def creds() -> CDSECredentials:
    return CDSECredentials("alice@example.org", Secret(PASSWORD))


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(creds: CDSECredentials, sleeps: list[float], clock: Clock) -> CDSEClient:
    return CDSEClient(
        creds,
        sleep=sleeps.append,
        clock=clock,
        page_size=2,
        progress=False,
        policy=RetryPolicy(max_retries=3, backoff_s=1.0, max_wait_s=30.0),
    )


def form(call: responses.Call) -> dict[str, str]:
    body = call.request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {key: values[0] for key, values in parse_qs(text).items()}


# --------------------------------------------------------------------------------------------
# search
# --------------------------------------------------------------------------------------------
def test_filter_has_collection_type_time_stream_and_lon_lat_polygon() -> None:
    text = build_filter(BBOX, dt.date(2024, 1, 1), dt.date(2024, 1, 3), "RPRO")
    assert "Collection/Name eq 'SENTINEL-5P'" in text
    assert "att/OData.CSC.StringAttribute/Value eq 'L2__NO2___'" in text
    assert "ContentDate/Start ge 2024-01-01T00:00:00.000Z" in text
    assert "ContentDate/Start lt 2024-01-04T00:00:00.000Z" in text  # end day inclusive
    assert "startswith(Name,'S5P_RPRO_L2__NO2')" in text
    wkt = "POLYGON((-15.0 35.0,25.0 35.0,25.0 55.0,-15.0 55.0,-15.0 35.0))"  # lon lat, closed
    assert f"geography'SRID=4326;{wkt}'" in text
    with pytest.raises(DownloadError, match="before start"):
        build_filter(BBOX, dt.date(2024, 1, 3), dt.date(2024, 1, 1))


def entry(i: int) -> dict[str, object]:
    return {
        "Id": f"id-{i}",
        "Name": f"{NAME[:-5]}{i:05d}.nc",
        "ContentLength": 1000 + i,
        "ContentDate": {"Start": f"2024-01-0{i}T11:30:00.000Z"},
        "Checksum": [
            {"Value": f"ABCDEF{i}", "Algorithm": "MD5"},
            {"Value": f"b3{i}", "Algorithm": "BLAKE3"},
        ],
    }


@responses.activate
def test_search_follows_next_link_across_pages(client: CDSEClient) -> None:
    next_link = f"{CATALOGUE_URL}?$skiptoken=page2"
    responses.get(CATALOGUE_URL, json={"value": [entry(1), entry(2)], "@odata.nextLink": next_link})
    responses.get(CATALOGUE_URL, json={"value": [entry(3)]})
    found = client.search(BBOX, dt.date(2024, 1, 1), dt.date(2024, 1, 3))
    assert [p.id for p in found] == ["id-1", "id-2", "id-3"]
    assert found[0].size == 1001
    assert found[0].checksums == {"MD5": "abcdef1", "BLAKE3": "b31"}
    first_url = str(responses.calls[0].request.url)
    first = parse_qs(urlsplit(first_url).query)
    assert first["$top"] == ["2"]
    assert first["$orderby"] == ["ContentDate/Start asc"]
    assert "startswith(Name,'S5P_OFFL_L2__NO2')" in first["$filter"][0]
    assert "%20" in first_url  # spaces sent as %20, not '+'
    assert responses.calls[1].request.url == next_link
    assert len(responses.calls) == 2
    # searching needs no token
    assert all("Authorization" not in call.request.headers for call in responses.calls)


@responses.activate
def test_search_retries_429_honouring_retry_after(client: CDSEClient, sleeps: list[float]) -> None:
    responses.get(CATALOGUE_URL, status=429, headers={"Retry-After": "7"})
    responses.get(CATALOGUE_URL, status=503)
    responses.get(CATALOGUE_URL, json={"value": [entry(1)]})
    found = client.search(BBOX, dt.date(2024, 1, 1), dt.date(2024, 1, 1))
    assert [p.id for p in found] == ["id-1"]
    assert sleeps == [7.0, 2.0]  # Retry-After, then backoff_s * 2**1


@responses.activate
def test_search_gives_up_after_max_retries(client: CDSEClient, sleeps: list[float]) -> None:
    responses.get(CATALOGUE_URL, status=502)
    with pytest.raises(DownloadError, match=r"HTTP 502 after 3 retries") as caught:
        client.search(BBOX, dt.date(2024, 1, 1), dt.date(2024, 1, 1))
    assert "\n" not in str(caught.value)
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(responses.calls) == 4


def test_retry_after_accepts_http_dates() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == 60.0
    assert retry_after_seconds("soon") is None


# --------------------------------------------------------------------------------------------
# token
# --------------------------------------------------------------------------------------------
def test_jwt_expiry_is_read_from_the_payload() -> None:
    assert jwt_expiry(make_jwt(T0 + 600, "x")) == T0 + 600
    assert jwt_expiry("not-a-jwt") is None


@responses.activate
def test_token_refreshed_when_jwt_expires(client: CDSEClient, clock: Clock, tmp_path: Path) -> None:
    data_a, data_b = netcdf_bytes(tmp_path, 1), netcdf_bytes(tmp_path, 2)
    responses.post(TOKEN_URL, json=token_reply(T0 + 600, "one"))
    responses.post(TOKEN_URL, json=token_reply(T0 + 1300, "two"))
    responses.get(download_url("a"), body=data_a)
    responses.get(download_url("b"), body=data_b)
    pa = Product("a", "A.nc", len(data_a), "", {"MD5": hashlib.md5(data_a).hexdigest()})
    pb = Product("b", "B.nc", len(data_b), "", {"MD5": hashlib.md5(data_b).hexdigest()})
    client.download(pa, tmp_path / "out")
    clock.now = T0 + 700  # past the first token's exp
    client.download(pb, tmp_path / "out")
    token_calls = [c for c in responses.calls if c.request.url == TOKEN_URL]
    assert [form(c)["grant_type"] for c in token_calls] == ["password", "refresh_token"]
    assert form(token_calls[0])["client_id"] == "cdse-public"
    assert form(token_calls[1])["refresh_token"] == "refresh-one-token"
    gets = [c for c in responses.calls if c.request.method == "GET"]
    assert gets[0].request.headers["Authorization"] == f"Bearer {make_jwt(T0 + 600, 'one')}"
    assert gets[1].request.headers["Authorization"] == f"Bearer {make_jwt(T0 + 1300, 'two')}"
    assert (tmp_path / "out" / "A.nc").read_bytes() == data_a
    assert (tmp_path / "out" / "B.nc").read_bytes() == data_b


@responses.activate
def test_401_refreshes_then_a_rejected_refresh_logs_in_again(
    client: CDSEClient, tmp_path: Path
) -> None:
    data = netcdf_bytes(tmp_path)
    responses.post(TOKEN_URL, json=token_reply(T0 + 600, "one"))  # login
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})  # refresh rejected
    responses.post(TOKEN_URL, json=token_reply(T0 + 600, "two"))  # login again
    responses.get(download_url("aaaa-1"), status=401)
    responses.get(download_url("aaaa-1"), body=data)
    path = client.download(product(data), tmp_path)
    assert path.read_bytes() == data
    grants = [form(c)["grant_type"] for c in responses.calls if c.request.url == TOKEN_URL]
    assert grants == ["password", "refresh_token", "password"]
    gets = [c for c in responses.calls if c.request.method == "GET"]
    assert gets[1].request.headers["Authorization"].endswith(make_jwt(T0 + 600, "two"))


@responses.activate
def test_rejected_login_is_a_credentials_error_without_the_password(
    client: CDSEClient, tmp_path: Path
) -> None:
    responses.post(
        TOKEN_URL,
        status=401,
        json={
            "error": "invalid_grant",
            "error_description": f"Invalid user credentials {PASSWORD}",
        },
    )
    with pytest.raises(CredentialsError, match="CDSE login rejected") as caught:
        client.download(product(b"x"), tmp_path)
    assert PASSWORD not in str(caught.value)
    assert form(responses.calls[0])["password"] == PASSWORD  # it was sent, in the body only


# --------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------
@responses.activate
def test_download_retries_429_then_succeeds(
    client: CDSEClient, sleeps: list[float], tmp_path: Path
) -> None:
    data = netcdf_bytes(tmp_path)
    responses.post(TOKEN_URL, json=token_reply(T0 + 600, "one"))
    responses.get(download_url("aaaa-1"), status=429, headers={"Retry-After": "3"})
    responses.get(download_url("aaaa-1"), body=data)
    path = client.download(product(data), tmp_path / "out")
    assert path == tmp_path / "out" / f"{NAME}.nc"
    assert path.read_bytes() == data
    assert sleeps == [3.0]


class DroppingReader(io.RawIOBase):
    """A response body that breaks off after ``cut`` bytes, like a dropped TCP connection."""

    def __init__(self, data: bytes, cut: int) -> None:
        self.data, self.cut, self.pos = data, cut, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        if self.pos >= self.cut:
            raise ProtocolError("Connection broken: simulated drop")
        n = min(len(buffer), self.cut - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@responses.activate
def test_dropped_connection_is_resumed_with_range(
    client: CDSEClient, sleeps: list[float], tmp_path: Path
) -> None:
    data = zip_bytes({f"{NAME}/{NAME}.nc": netcdf_bytes(tmp_path)})  # zip wrapping a folder
    cut = 4 * 256  # bytes that arrived in whole chunks before the drop
    client._chunk_size = 256
    responses.post(TOKEN_URL, json=token_reply(T0 + 600, "one"))
    responses.get(
        download_url("aaaa-1"),
        body=io.BufferedReader(DroppingReader(data, cut)),
        headers={"Content-Length": str(len(data))},
    )
    responses.get(
        download_url("aaaa-1"),
        status=206,
        body=data[cut:],
        headers={"Content-Range": f"bytes {cut}-{len(data) - 1}/{len(data)}"},
    )
    out = tmp_path / "out"
    path = client.download(product(data), out)
    gets = [c for c in responses.calls if c.request.method == "GET"]
    assert "Range" not in gets[0].request.headers
    assert gets[1].request.headers["Range"] == f"bytes={cut}-"
    assert sleeps == [1.0]
    assert path.read_bytes() == netcdf_bytes(tmp_path)  # the .nc unzipped from the folder
    assert sorted(p.name for p in out.iterdir()) == [f"{NAME}.nc"]  # no .part, no zip left
    with netCDF4.Dataset(path) as ds:
        assert ds["PRODUCT/nitrogendioxide_tropospheric_column"].units == "mol m-2"


@responses.activate
def test_existing_part_resumes_and_a_server_ignoring_range_restarts(
    client: CDSEClient, tmp_path: Path
) -> None:
    data = netcdf_bytes(tmp_path)
    (tmp_path / f"{NAME}.part").write_bytes(b"garbage-from-an-old-run")
    responses.post(TOKEN_URL, json=token_reply(T0 + 600, "one"))
    responses.get(download_url("aaaa-1"), status=200, body=data)  # Range ignored: full body
    path = client.download(product(data), tmp_path)
    gets = [c for c in responses.calls if c.request.method == "GET"]
    assert gets[0].request.headers["Range"] == "bytes=23-"
    assert path.read_bytes() == data


@responses.activate
def test_checksum_mismatch_removes_the_part_file(client: CDSEClient, tmp_path: Path) -> None:
    data = netcdf_bytes(tmp_path)
    responses.post(TOKEN_URL, json=token_reply(T0 + 600, "one"))
    responses.get(download_url("aaaa-1"), body=data)
    with pytest.raises(DownloadError, match="MD5 checksum mismatch") as caught:
        client.download(product(data, md5="0" * 32), tmp_path / "out")
    assert NAME in str(caught.value) and "\n" not in str(caught.value)
    assert list((tmp_path / "out").iterdir()) == []  # no .part, no .nc


@responses.activate
def test_complete_file_is_skipped_without_any_request(client: CDSEClient, tmp_path: Path) -> None:
    (tmp_path / f"{NAME}.nc").write_bytes(b"already here")
    path = client.download(product(b"other bytes"), tmp_path)
    assert path.read_bytes() == b"already here"
    assert len(responses.calls) == 0


@pytest.mark.parametrize("evil", ["../escaped.nc", "/tmp/absolute_escape.nc", "a/../../up.nc"])
@responses.activate
def test_zip_slip_member_rejects_the_archive(client: CDSEClient, tmp_path: Path, evil: str) -> None:
    data = zip_bytes({f"{NAME}.nc": netcdf_bytes(tmp_path), evil: b"payload"})
    out = tmp_path / "deep" / "out"
    responses.post(TOKEN_URL, json=token_reply(T0 + 600, "one"))
    responses.get(download_url("aaaa-1"), body=data)
    with pytest.raises(DownloadError, match="zip-slip"):
        client.download(product(data), out)
    assert not (out / f"{NAME}.nc").exists()
    assert not (tmp_path / "deep" / "escaped.nc").exists()
    assert not Path("/tmp/absolute_escape.nc").exists()


@responses.activate
def test_redirects_keep_the_token_on_cdse_hosts_only(client: CDSEClient, tmp_path: Path) -> None:
    data = netcdf_bytes(tmp_path)
    zipper = "https://zipper.dataspace.copernicus.eu/odata/v1/Products(aaaa-1)/$value"
    bucket = "https://storage.example.net/eodata/file.nc?signature=abc"
    responses.post(TOKEN_URL, json=token_reply(T0 + 600, "one"))
    responses.get(download_url("aaaa-1"), status=301, headers={"Location": zipper})
    responses.get(zipper, status=307, headers={"Location": bucket})
    responses.get(bucket, body=data)
    client.download(product(data), tmp_path)
    gets = [c for c in responses.calls if c.request.method == "GET"]
    assert [str(c.request.url).split("?")[0] for c in gets] == [
        download_url("aaaa-1"),
        zipper,
        bucket.split("?")[0],
    ]
    assert "Authorization" in gets[0].request.headers
    assert "Authorization" in gets[1].request.headers  # requests itself would have dropped it
    assert "Authorization" not in gets[2].request.headers  # never to a foreign host


def test_not_netcdf_or_zip_is_rejected(tmp_path: Path) -> None:
    from no2fusion.io.download.cdse import install_product

    part = tmp_path / "x.part"
    part.write_bytes(b"<html>maintenance</html>")
    with pytest.raises(DownloadError, match="neither zip nor netCDF"):
        install_product(part, tmp_path / "x.nc")
    assert not part.exists() and not (tmp_path / "x.nc").exists()


# --------------------------------------------------------------------------------------------
# credentials and the command line
# --------------------------------------------------------------------------------------------
def test_credentials_from_env_then_netrc(tmp_path: Path) -> None:
    env = {"CDSE_USERNAME": "bob", "CDSE_PASSWORD": PASSWORD, "CDSE_TOTP": "123456"}
    got = cdse_credentials(env, netrc_path=tmp_path / "none")
    assert got.username == "bob" and got.password.reveal() == PASSWORD
    assert got.totp is not None and got.totp.reveal() == "123456"
    assert PASSWORD not in repr(got) and "123456" not in repr(got)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine identity.dataspace.copernicus.eu login carol password {PASSWORD}\n")
    netrc.chmod(0o600)
    got = cdse_credentials({}, netrc_path=netrc)
    assert (got.username, got.password.reveal(), got.source) == ("carol", PASSWORD, str(netrc))
    with pytest.raises(CredentialsError, match="CDSE_USERNAME and CDSE_PASSWORD"):
        cdse_credentials({}, netrc_path=tmp_path / "none")


def test_cli_without_credentials_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("CDSE_USERNAME", "CDSE_PASSWORD", "CDSE_TOTP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    code = main(
        [
            "download",
            "s5p",
            "--bbox",
            "-15",
            "35",
            "25",
            "55",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-01",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "CDSE_USERNAME" in err and "CDSE_PASSWORD" in err and "~/.netrc" in err
    assert not (tmp_path / "out").exists()


@responses.activate
def test_cli_dry_run_lists_names_and_sizes_without_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CDSE_PASSWORD", raising=False)
    responses.get(CATALOGUE_URL, json={"value": [entry(1), entry(2)]})
    code = main(
        [
            "download",
            "s5p",
            "--bbox",
            "-15",
            "35",
            "25",
            "55",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
            "--out",
            str(tmp_path / "out"),
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"{NAME[:-5]}00001.nc\t1001 B" in out
    assert "2 products, 2.0 KB in total" in out
    assert not (tmp_path / "out").exists()


@responses.activate
def test_credentials_never_appear_in_output_logs_errors_or_files(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full CLI run (login, 401, refresh, redirect, download) and a failing one; grep all."""
    monkeypatch.setenv("CDSE_USERNAME", "alice@example.org")
    monkeypatch.setenv("CDSE_PASSWORD", PASSWORD)
    monkeypatch.setenv("CDSE_TOTP", "918273")
    caplog.set_level(logging.DEBUG)
    data = netcdf_bytes(tmp_path)
    now = __import__("time").time()
    replies = [token_reply(now + 600, "one"), token_reply(now + 600, "two")]
    listing = {
        **entry(1),
        "Id": "aaaa-1",
        "Name": f"{NAME}.nc",
        "ContentLength": len(data),
        "Checksum": [{"Value": hashlib.md5(data).hexdigest(), "Algorithm": "MD5"}],
    }
    responses.get(CATALOGUE_URL, json={"value": [listing]})
    for reply in replies:
        responses.post(TOKEN_URL, json=reply)
    zipper = "https://zipper.dataspace.copernicus.eu/odata/v1/Products(aaaa-1)/$value"
    responses.get(download_url("aaaa-1"), status=401)
    responses.get(download_url("aaaa-1"), status=302, headers={"Location": zipper})
    responses.get(zipper, body=data)
    args = [
        "download",
        "s5p",
        "--bbox",
        "-15",
        "35",
        "25",
        "55",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-01",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    assert (tmp_path / "out" / f"{NAME}.nc").read_bytes() == data

    # second run: the service rejects the login and echoes the password back
    responses.reset()
    responses.get(CATALOGUE_URL, json={"value": [{**listing, "Id": "bbbb-2", "Name": "B.nc"}]})
    responses.post(TOKEN_URL, status=401, json={"error_description": f"bad password {PASSWORD}"})
    with pytest.raises(CredentialsError) as caught:
        CDSEClient(cdse_credentials(), progress=False).download(
            Product("bbbb-2", "B.nc", 10, "", {}), tmp_path / "out"
        )
    assert main(args[:-2] + ["--out", str(tmp_path / "out2")]) == 2

    captured = capsys.readouterr()
    texts = [captured.out, captured.err, caplog.text, str(caught.value), repr(caught.value)]
    for path in (tmp_path / "out").rglob("*"):
        texts.append(path.read_bytes().decode("latin-1"))
    secrets = [PASSWORD, "918273"]
    for reply in replies:
        secrets += [str(reply["access_token"]), str(reply["refresh_token"])]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert (
        "no2fusion download: error: CDSE login rejected (HTTP 401: bad password ***)"
        in captured.err
    )
