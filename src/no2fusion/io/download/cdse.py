"""Sentinel-5P L2 NO2 from the Copernicus Data Space Ecosystem (CDSE): search and download.

Sits at the very start of the flow (``io/download/``): it fetches the TROPOMI L2 files that
``io/tropomi.py`` reads. Facts about the service are in FORMATS.md D.1:

- search: the public OData catalogue (no login), filtered by collection, product type, the
  ``ContentDate/Start`` range, a lon-lat WKT polygon and the stream (by name), ordered by start
  time, paged with ``$top`` and ``@odata.nextLink``;
- token: Keycloak password grant (client ``cdse-public``), refreshed from the JWT ``exp`` or
  after a 401 with the refresh token, falling back to a new password grant;
- download: ``download.dataspace.copernicus.eu/odata/v1/Products(<Id>)/$value`` with a bearer
  token. Redirects are followed by hand: python-requests drops ``Authorization`` on cross-host
  redirects, and we only send the token to ``*.dataspace.copernicus.eu`` over https;
- resumable: bytes go to ``<name>.part`` and a retry asks for ``Range: bytes=<size>-``;
- verified: the size, and the MD5 checksum when the catalogue lists one (BLAKE3 is listed too but
  no BLAKE3 implementation is installed, so it is reported as not checked). On a mismatch the
  ``.part`` file is deleted (resuming a corrupt prefix can never succeed) and the error says so;
- installed atomically: a zip is checked member by member (any member that would land outside
  the output folder rejects the whole archive: zip-slip), its ``.nc`` is written to a temporary
  name and renamed; a bare ``.nc`` is renamed. A product whose ``.nc`` exists is skipped.

Why this module is long: one service client, end to end (search paging, token life cycle,
authorised redirects, resume, verification, safe unpacking); each step is short, and they share
the session and the error wording.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import quote, urlencode, urljoin, urlsplit

import requests
from tqdm import tqdm

from no2fusion.errors import CredentialsError
from no2fusion.grid import BBox
from no2fusion.io.download.credentials import CDSE_TOKEN_HOST, CDSECredentials, Redactor
from no2fusion.io.download.http import DownloadError, RetryPolicy, request_with_retry

log = logging.getLogger(__name__)

CATALOGUE_URL = "https://catalogue.dataspace.copernicus.eu/odata/v1/Products"
DOWNLOAD_URL = "https://download.dataspace.copernicus.eu/odata/v1/Products({id})/$value"
TOKEN_URL = f"https://{CDSE_TOKEN_HOST}/auth/realms/CDSE/protocol/openid-connect/token"
CLIENT_ID = "cdse-public"
TRUSTED_DOMAIN = "dataspace.copernicus.eu"
PRODUCT_TYPE = "L2__NO2___"
Stream = Literal["OFFL", "RPRO", "NRTI"]
STREAMS: tuple[str, ...] = ("OFFL", "RPRO", "NRTI")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 10
_TOKEN_MARGIN_S = 30.0  # refresh this long before the token's ``exp``
_ZIP_MAGIC = b"PK\x03\x04"
_NETCDF_MAGICS = (b"\x89HDF\r\n\x1a\n", b"CDF\x01", b"CDF\x02", b"CDF\x05")


# --------------------------------------------------------------------------------------------
# search
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Product:
    """One catalogue entry: OData ``Id``, ``Name``, size in bytes, sensing start, checksums.

    ``checksums`` maps the upper-case algorithm (``MD5``, ``BLAKE3``) to the lower-case hex value.
    """

    id: str
    name: str
    size: int | None
    start: str
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """The product name without ``.nc`` / ``.zip``."""
        for suffix in (".zip", ".nc"):
            if self.name.endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name

    @property
    def filename(self) -> str:
        """The installed file name: ``<stem>.nc``."""
        return f"{self.stem}.nc"

    @classmethod
    def from_odata(cls, entry: dict[str, Any]) -> Product:
        checksums = {
            str(item["Algorithm"]).upper(): str(item["Value"]).lower()
            for item in entry.get("Checksum") or []
            if item.get("Algorithm") and item.get("Value")
        }
        size = entry.get("ContentLength")
        name = str(entry["Name"])
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise DownloadError(f"catalogue returned an unusable product name {name!r}")
        return cls(
            id=str(entry["Id"]),
            name=name,
            size=int(size) if size else None,
            start=str((entry.get("ContentDate") or {}).get("Start", "")),
            checksums=checksums,
        )


def _odata_time(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00.000Z"


def bbox_wkt(bbox: BBox) -> str:
    """The bbox as a closed WKT polygon in lon-lat order (what OData ``Intersects`` expects)."""
    w, s, e, n = bbox.lon_min, bbox.lat_min, bbox.lon_max, bbox.lat_max
    return f"POLYGON(({w} {s},{e} {s},{e} {n},{w} {n},{w} {s}))"


def build_filter(bbox: BBox, start: dt.date, end: dt.date, stream: str = "OFFL") -> str:
    """The OData ``$filter``: S5P L2 NO2 of ``stream`` whose sensing starts in [start, end + 1 day).

    ``end`` is inclusive (a whole day). Filtering on ``ContentDate/Start`` is the fast path.
    """
    if stream not in STREAMS:
        raise DownloadError(f"unknown stream {stream!r}; choose one of {', '.join(STREAMS)}")
    if end < start:
        raise DownloadError(f"end date {end} is before start date {start}")
    stop = end + dt.timedelta(days=1)
    return " and ".join(
        [
            "Collection/Name eq 'SENTINEL-5P'",
            "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
            f"att/OData.CSC.StringAttribute/Value eq '{PRODUCT_TYPE}')",
            f"ContentDate/Start ge {_odata_time(start)}",
            f"ContentDate/Start lt {_odata_time(stop)}",
            f"startswith(Name,'S5P_{stream}_L2__NO2')",
            f"OData.CSC.Intersects(area=geography'SRID=4326;{bbox_wkt(bbox)}')",
        ]
    )


def search_url(filter_: str, page_size: int, catalogue_url: str = CATALOGUE_URL) -> str:
    """The first page's URL, spaces encoded as ``%20`` (OData servers differ on ``+``)."""
    params = {
        "$filter": filter_,
        "$orderby": "ContentDate/Start asc",
        "$top": str(page_size),
    }
    query = urlencode(params, quote_via=quote, safe="$'(),/:")
    return f"{catalogue_url}?{query}"


# --------------------------------------------------------------------------------------------
# token
# --------------------------------------------------------------------------------------------
def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (s since 1970) of a JWT, read without verifying it; None if absent."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
        return float(claims["exp"])
    except (ValueError, KeyError, TypeError):
        return None


class TokenManager:
    """Access tokens for CDSE: password grant, refresh before ``exp``, re-login as a last resort."""

    def __init__(
        self,
        session: requests.Session,
        credentials: CDSECredentials,
        *,
        token_url: str = TOKEN_URL,
        policy: RetryPolicy,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        redactor: Redactor,
    ) -> None:
        self._session = session
        self._credentials = credentials
        self._token_url = token_url
        self._policy = policy
        self._sleep = sleep
        self._clock = clock
        self._redact = redactor
        redactor.add(credentials.password)
        redactor.add(credentials.totp)
        self._access: str | None = None
        self._access_expires = 0.0
        self._refresh: str | None = None
        self._refresh_expires = 0.0

    def token(self) -> str:
        """A valid access token (fetching or refreshing one if needed)."""
        now = self._clock()
        if self._access is not None and now < self._access_expires - _TOKEN_MARGIN_S:
            return self._access
        if self._refresh is not None and now < self._refresh_expires - _TOKEN_MARGIN_S:
            try:
                self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh})
                log.info("CDSE access token refreshed")
                return self._current()
            except CredentialsError:
                log.info("CDSE refresh token rejected; logging in again")
        data = {
            "grant_type": "password",
            "username": self._credentials.username,
            "password": self._credentials.password.reveal(),
        }
        if self._credentials.totp is not None:
            data["totp"] = self._credentials.totp.reveal()
        self._grant(data)
        log.info("CDSE login ok (credentials from %s)", self._credentials.source)
        return self._current()

    def invalidate(self) -> None:
        """Forget the access token (after a 401); the next ``token()`` refreshes."""
        self._access_expires = 0.0

    def _current(self) -> str:
        assert self._access is not None
        return self._access

    def _grant(self, data: dict[str, str]) -> None:
        data = {**data, "client_id": CLIENT_ID}
        response = request_with_retry(
            self._session,
            "POST",
            self._token_url,
            data=data,
            policy=self._policy,
            sleep=self._sleep,
            what="CDSE token request",
        )
        if response.status_code in (400, 401, 403):
            detail = ""
            try:
                body = response.json()
                detail = str(body.get("error_description") or body.get("error") or "")
            except ValueError:
                pass
            message = f"CDSE login rejected (HTTP {response.status_code}"
            message += f": {detail})" if detail else ")"
            raise CredentialsError(self._redact(message))
        if not response.ok:
            raise DownloadError(f"CDSE token request: HTTP {response.status_code}")
        try:
            payload = response.json()
            access = str(payload["access_token"])
        except (ValueError, KeyError, TypeError):
            raise DownloadError("CDSE token request: response holds no access_token") from None
        self._redact.add(access)
        now = self._clock()
        self._access = access
        self._access_expires = jwt_expiry(access) or now + float(payload.get("expires_in", 600))
        refresh = payload.get("refresh_token")
        if refresh:
            self._redact.add(str(refresh))
            self._refresh = str(refresh)
            self._refresh_expires = now + float(payload.get("refresh_expires_in", 3600))


# --------------------------------------------------------------------------------------------
# safe unzip
# --------------------------------------------------------------------------------------------
def check_zip_members(archive: zipfile.ZipFile, target: Path, label: str) -> None:
    """Raise ``DownloadError`` if any member would be written outside ``target`` (zip-slip)."""
    root = target.resolve()
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        pure = PurePosixPath(name)
        unsafe = (
            pure.is_absolute()
            or ".." in pure.parts
            or (len(name) > 1 and name[1] == ":")  # Windows drive letter
            or not (root / name).resolve().is_relative_to(root)
        )
        if unsafe:
            raise DownloadError(
                f"archive member {info.filename!r} would be written outside the output folder "
                "(zip-slip); the archive was rejected and nothing was extracted",
                label,
            )


def install_product(part: Path, final: Path) -> Path:
    """Move a verified download into place: unzip its ``.nc`` safely, or rename a bare ``.nc``.

    Writes go to ``<final>.tmp`` first and end with an atomic rename. ``part`` is removed.
    """
    with part.open("rb") as handle:
        magic = handle.read(8)
    if magic.startswith(_ZIP_MAGIC):
        with zipfile.ZipFile(part) as archive:
            check_zip_members(archive, final.parent, str(part))
            members = [i for i in archive.infolist() if i.filename.lower().endswith(".nc")]
            if not members:
                raise DownloadError("archive holds no .nc file", part)
            chosen = next(
                (i for i in members if PurePosixPath(i.filename).name == final.name), members[0]
            )
            if len(members) > 1 and PurePosixPath(chosen.filename).name != final.name:
                raise DownloadError(f"archive holds {len(members)} .nc files; expected one", part)
            tmp = final.with_name(final.name + ".tmp")
            with archive.open(chosen) as source, tmp.open("wb") as sink:
                shutil.copyfileobj(source, sink, length=1 << 20)
        os.replace(tmp, final)
        part.unlink()
    elif magic.startswith(_NETCDF_MAGICS):
        os.replace(part, final)
    else:
        part.unlink()
        raise DownloadError(
            f"downloaded data is neither zip nor netCDF (starts with {magic[:4]!r}); removed it",
            final,
        )
    return final


# --------------------------------------------------------------------------------------------
# client
# --------------------------------------------------------------------------------------------
def _is_trusted(url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and (
        host == TRUSTED_DOMAIN or host.endswith("." + TRUSTED_DOMAIN)
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CDSEClient:
    """Search the CDSE catalogue and download Sentinel-5P L2 NO2 products.

    ``credentials`` may be None for searching (the catalogue is public); downloading needs them.
    ``sleep`` and ``clock`` are injectable so tests run without waiting.
    """

    def __init__(
        self,
        credentials: CDSECredentials | None = None,
        *,
        session: requests.Session | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        catalogue_url: str = CATALOGUE_URL,
        download_url: str = DOWNLOAD_URL,
        token_url: str = TOKEN_URL,
        page_size: int = 100,
        chunk_size: int = 1 << 20,
        progress: bool = True,
    ) -> None:
        if not 1 <= page_size <= 1000:
            raise DownloadError(f"page_size must be 1..1000 (OData $top limit), got {page_size}")
        self.session = session or requests.Session()
        self.policy = policy or RetryPolicy()
        self.redact = Redactor()
        self._sleep = sleep
        self._catalogue_url = catalogue_url
        self._download_url = download_url
        self._page_size = page_size
        self._chunk_size = chunk_size
        self._progress = progress
        self._tokens = (
            None
            if credentials is None
            else TokenManager(
                self.session,
                credentials,
                token_url=token_url,
                policy=self.policy,
                sleep=sleep,
                clock=clock,
                redactor=self.redact,
            )
        )

    # -- search ------------------------------------------------------------------------------
    def search(
        self, bbox: BBox, start: dt.date, end: dt.date, stream: str = "OFFL"
    ) -> list[Product]:
        """Every product matching the filters, in sensing-start order, all pages followed."""
        url: str | None = search_url(
            build_filter(bbox, start, end, stream), self._page_size, self._catalogue_url
        )
        products: list[Product] = []
        seen: set[str] = set()
        page = 0
        while url:
            page += 1
            response = request_with_retry(
                self.session,
                "GET",
                url,
                policy=self.policy,
                sleep=self._sleep,
                what=f"CDSE catalogue search (page {page})",
            )
            if not response.ok:
                raise DownloadError(
                    f"CDSE catalogue search (page {page}): HTTP {response.status_code}: "
                    f"{response.text[:200]!r}"
                )
            try:
                body = response.json()
                entries = list(body.get("value", []))
            except (ValueError, AttributeError):
                raise DownloadError(f"CDSE catalogue search (page {page}): not JSON") from None
            for entry in entries:
                product = Product.from_odata(entry)
                if product.id not in seen:  # a page boundary can repeat an entry
                    seen.add(product.id)
                    products.append(product)
            url = body.get("@odata.nextLink") if entries else None
        log.info("CDSE search: %d products in %d pages", len(products), page)
        return products

    # -- download ----------------------------------------------------------------------------
    def download_all(self, products: Iterable[Product], out_dir: str | Path) -> list[Path]:
        """Download (or skip, if present) each product into ``out_dir``; returns the .nc paths."""
        return [self.download(product, out_dir) for product in products]

    def download(self, product: Product, out_dir: str | Path) -> Path:
        """Fetch one product into ``out_dir/<stem>.nc``: resume, verify, unzip safely, rename."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        final = out / product.filename
        if final.exists():
            log.info("%s: already complete, skipped", final.name)
            return final
        part = out / f"{product.stem}.part"
        try:
            self._fetch(product, part)
            self._verify(product, part)
            return install_product(part, final)
        except DownloadError as error:
            raise DownloadError(self.redact(str(error))) from None

    def _fetch(self, product: Product, part: Path) -> None:
        url = self._download_url.format(id=product.id)
        for attempt in range(self.policy.max_retries + 1):
            offset = part.stat().st_size if part.exists() else 0
            if product.size is not None and offset > product.size:
                part.unlink()
                offset = 0
            if product.size is not None and offset == product.size:
                return
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            response = self._authorized_get(url, headers, product.name)
            with response:
                if response.status_code == 416 and offset:
                    return  # the server says nothing is left: let verification decide
                if response.status_code == 206:
                    first = _content_range_start(response.headers.get("Content-Range"))
                    if first != offset:
                        raise DownloadError(
                            f"server resumed at byte {first}, expected {offset}", product.name
                        )
                    mode = "ab"
                elif response.status_code == 200:
                    offset, mode = 0, "wb"  # no (or ignored) Range: start over
                else:
                    raise DownloadError(
                        f"download failed with HTTP {response.status_code}", product.name
                    )
                try:
                    self._stream_to(response, part, mode, offset, product)
                    return
                except (
                    requests.ConnectionError,
                    requests.exceptions.ChunkedEncodingError,
                    requests.Timeout,
                ) as error:
                    have = part.stat().st_size if part.exists() else 0
                    if attempt == self.policy.max_retries:
                        raise DownloadError(
                            f"connection dropped ({type(error).__name__}) at byte {have} after "
                            f"{self.policy.max_retries} resumes; run again to resume",
                            product.name,
                        ) from None
                    wait = min(self.policy.backoff_s * 2**attempt, self.policy.max_wait_s)
                    log.info(
                        "%s: connection dropped at byte %d; resuming in %.1f s",
                        product.name,
                        have,
                        wait,
                    )
                    self._sleep(wait)

    def _stream_to(
        self, response: requests.Response, part: Path, mode: str, offset: int, product: Product
    ) -> None:
        with (
            part.open(mode) as sink,
            tqdm(
                total=product.size,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=product.stem[:40],
                disable=not self._progress,
                leave=False,
            ) as bar,
        ):
            for chunk in response.iter_content(self._chunk_size):
                sink.write(chunk)
                bar.update(len(chunk))

    def _authorized_get(self, url: str, headers: dict[str, str], label: str) -> requests.Response:
        """GET with the bearer token, following redirects by hand (token only to CDSE hosts);
        one token refresh after a 401."""
        if self._tokens is None:
            raise CredentialsError("downloading from CDSE needs credentials (searching does not)")
        for refresh_round in range(2):
            current = url
            for _hop in range(_MAX_REDIRECTS + 1):
                sent = dict(headers)
                if _is_trusted(current):
                    sent["Authorization"] = f"Bearer {self._tokens.token()}"
                response = request_with_retry(
                    self.session,
                    "GET",
                    current,
                    headers=sent,
                    stream=True,
                    policy=self.policy,
                    sleep=self._sleep,
                    what=f"download {label}",
                )
                location = response.headers.get("Location")
                if response.status_code in _REDIRECTS and location:
                    response.close()
                    current = urljoin(current, location)
                    continue
                break
            else:
                raise DownloadError(f"more than {_MAX_REDIRECTS} redirects", label)
            if response.status_code == 401 and refresh_round == 0:
                response.close()
                self._tokens.invalidate()
                log.info("%s: HTTP 401, refreshing the access token", label)
                continue
            if response.status_code == 401:
                response.close()
                raise CredentialsError(f"CDSE rejected the access token for {label} (HTTP 401)")
            return response
        raise AssertionError("unreachable")

    def _verify(self, product: Product, part: Path) -> None:
        size = part.stat().st_size
        if product.size is not None and size != product.size:
            part.unlink()
            raise DownloadError(
                f"size mismatch: got {size} bytes, catalogue says {product.size}; removed the "
                "partial file, run again to download it afresh",
                product.name,
            )
        expected = product.checksums.get("MD5")
        if expected is not None:
            actual = _md5(part)
            if actual != expected:
                part.unlink()
                raise DownloadError(
                    f"MD5 checksum mismatch: got {actual}, catalogue says {expected}; removed the "
                    "partial file, run again to download it afresh",
                    product.name,
                )
            log.info("%s: MD5 ok", product.name)
        unchecked = sorted(set(product.checksums) - {"MD5"})
        if unchecked:
            log.info(
                "%s: %s checksum not verified (no implementation installed); size%s checked",
                product.name,
                "/".join(unchecked),
                " and MD5" if expected else "",
            )


def _content_range_start(value: str | None) -> int | None:
    """First byte of ``Content-Range: bytes <first>-<last>/<total>``, or None."""
    if not value or not value.startswith("bytes "):
        return None
    first, _, _ = value[6:].partition("-")
    return int(first) if first.strip().isdigit() else None
