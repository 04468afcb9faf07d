"""Credentials for the download services: CDSE (Sentinel-5P) and CDS (ERA5).

Sits at the very start of the flow, in ``io/download/``: the download clients ask this module
for credentials and nothing else reads them. Secrets are wrapped in ``Secret`` so that a stray
``print``, ``repr`` or log line shows ``***`` instead of the value, and every message that leaves
the download package goes through ``Redactor`` as a second line of defence.

Sources, in order (the first complete one wins):

- CDSE: environment variables ``CDSE_USERNAME`` / ``CDSE_PASSWORD`` (optional ``CDSE_TOTP``
  for two-factor accounts), else ``~/.netrc`` (``$NETRC`` if set) with
  ``machine identity.dataspace.copernicus.eu``.
- CDS: environment variables ``CDSAPI_URL`` / ``CDSAPI_KEY``, else the two-line file
  ``~/.cdsapirc`` (``$CDSAPI_RC`` if set) holding ``url: ...`` and ``key: ...``.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from no2fusion.errors import CredentialsError

CDSE_TOKEN_HOST = "identity.dataspace.copernicus.eu"
CDSE_ENV_USERNAME = "CDSE_USERNAME"
CDSE_ENV_PASSWORD = "CDSE_PASSWORD"
CDSE_ENV_TOTP = "CDSE_TOTP"
CDS_DEFAULT_URL = "https://cds.climate.copernicus.eu/api"


class Secret:
    """A string that never shows itself in ``str``/``repr``/f-strings; ``.reveal()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Redactor:
    """Replaces every registered secret value in a message with ``***``."""

    def __init__(self, secrets: Iterable[str | Secret | None] = ()) -> None:
        self._values: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | Secret | None) -> None:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        # Very short values (e.g. a 1-character test password) would shred ordinary text;
        # they cannot leak meaningfully anyway, but keep everything of 4+ characters.
        if value and len(value) >= 4:
            self._values.add(value)

    def __call__(self, message: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            message = message.replace(value, "***")
        return message


@dataclass(frozen=True)
class CDSECredentials:
    """A CDSE account: user name, password and optional one-time 2FA code."""

    username: str
    password: Secret
    totp: Secret | None = None
    source: str = "environment"


@dataclass(frozen=True)
class CDSCredentials:
    """A CDS personal access token and the API URL."""

    url: str
    key: Secret
    source: str = "environment"


CDSE_HELP = (
    f"no CDSE credentials: set {CDSE_ENV_USERNAME} and {CDSE_ENV_PASSWORD} "
    f"(and {CDSE_ENV_TOTP} if your account uses two-factor login), or add "
    f"'machine {CDSE_TOKEN_HOST} login <user> password <password>' to ~/.netrc "
    "(register free at https://dataspace.copernicus.eu)"
)

CDS_HELP = (
    "no CDS credentials: create ~/.cdsapirc with the two lines "
    f"'url: {CDS_DEFAULT_URL}' and 'key: <your personal access token>' "
    "(token from your profile at https://cds.climate.copernicus.eu; accept the ERA5 licence "
    "there once), or set CDSAPI_URL and CDSAPI_KEY (CDSAPI_RC names another file)"
)


def cdse_credentials(
    environ: Mapping[str, str] | None = None, netrc_path: str | Path | None = None
) -> CDSECredentials:
    """CDSE credentials from the environment, else ``~/.netrc``; ``CredentialsError`` if none.

    ``environ`` defaults to ``os.environ``; ``netrc_path`` to ``$NETRC`` or ``~/.netrc``.
    """
    env = os.environ if environ is None else environ
    totp_value = env.get(CDSE_ENV_TOTP) or None
    totp = Secret(totp_value) if totp_value else None
    user, password = env.get(CDSE_ENV_USERNAME), env.get(CDSE_ENV_PASSWORD)
    if user and password:
        return CDSECredentials(user, Secret(password), totp, "environment")
    if user or password:
        missing = CDSE_ENV_PASSWORD if user else CDSE_ENV_USERNAME
        raise CredentialsError(
            f"{missing} is not set (both {CDSE_ENV_USERNAME} and {CDSE_ENV_PASSWORD} are needed)"
        )
    path = Path(netrc_path or env.get("NETRC") or Path.home() / ".netrc")
    if path.is_file():
        try:
            entry = netrc.netrc(str(path)).authenticators(CDSE_TOKEN_HOST)
        except (netrc.NetrcParseError, OSError) as error:
            # The parser's message can quote the offending line, which may hold a password.
            line = getattr(error, "lineno", None)
            where = f" near line {line}" if line else ""
            raise CredentialsError(f"cannot parse netrc file{where}", path) from None
        if entry is not None:
            login, _account, secret = entry
            if login and secret:
                return CDSECredentials(login, Secret(secret), totp, str(path))
    raise CredentialsError(CDSE_HELP)


def _read_cdsapirc(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("url", "key"):
            values[key.strip()] = value.strip()
    return values


def cds_credentials(environ: Mapping[str, str] | None = None) -> CDSCredentials:
    """CDS URL and key from ``CDSAPI_URL``/``CDSAPI_KEY``, else ``$CDSAPI_RC`` or ``~/.cdsapirc``.

    Raises ``CredentialsError`` explaining the two-line file when nothing complete is found.
    """
    env = os.environ if environ is None else environ
    url, key = env.get("CDSAPI_URL"), env.get("CDSAPI_KEY")
    source = "environment"
    if not (url and key):
        path = Path(env.get("CDSAPI_RC") or Path.home() / ".cdsapirc")
        if path.is_file():
            try:
                values = _read_cdsapirc(path)
            except (OSError, UnicodeDecodeError):
                raise CredentialsError("cannot read CDS API file", path) from None
            url = url or values.get("url")
            key = key or values.get("key")
            source = str(path)
    if not (url and key):
        raise CredentialsError(CDS_HELP)
    if ":" in key:
        # cdsapi >= 0.7 treats 'UID:APIKEY' as the retired pre-2024 CDS protocol.
        raise CredentialsError(
            "the CDS key has the old 'UID:APIKEY' form of the retired CDS; replace it with the "
            "personal access token from your profile at https://cds.climate.copernicus.eu",
            None if source == "environment" else source,
        )
    return CDSCredentials(url, Secret(key), source)
