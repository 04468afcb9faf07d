"""HTTP plumbing for the download clients: retries with backoff, ``Retry-After``, errors.

Sits in ``io/download/`` under ``cdse.py``. Retries are a small explicit loop instead of
urllib3's ``Retry`` adapter because the caller must see each 401 (to refresh its token) and
each redirect (to keep the bearer token on trusted hosts only), and because an explicit loop
is what the mocked-HTTP tests can drive (``responses`` replaces the adapter).
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from no2fusion.errors import No2FusionError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class DownloadError(No2FusionError):
    """A download that failed for a reason the user can act on (service down, bad checksum)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait. Waits are ``backoff_s * 2**attempt`` capped at
    ``max_wait_s``, or the server's ``Retry-After`` (also capped)."""

    max_retries: int = 5
    backoff_s: float = 2.0
    max_wait_s: float = 120.0
    timeout_s: float = 60.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def request_with_retry(
    session: requests.Session,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    headers: Mapping[str, str] | None = None,
    what: str = "request",
    **kwargs: Any,
) -> requests.Response:
    """Send one request, retrying on 429/5xx and connection errors.

    Returns the first response whose status is not retryable (the caller checks 4xx). Raises
    ``DownloadError`` naming ``what`` after ``policy.max_retries`` retries. Redirects are never
    followed here (``allow_redirects=False``); callers decide where credentials may go.
    """
    kwargs.setdefault("timeout", policy.timeout_s)
    kwargs.setdefault("allow_redirects", False)
    last_problem = "no attempt made"
    for attempt in range(policy.max_retries + 1):
        wait = min(policy.backoff_s * 2**attempt, policy.max_wait_s)
        try:
            response = session.request(method, url, headers=dict(headers or {}), **kwargs)
        except (requests.ConnectionError, requests.Timeout) as error:
            last_problem = f"connection failed ({type(error).__name__})"
        else:
            if response.status_code not in RETRY_STATUS:
                return response
            last_problem = f"HTTP {response.status_code}"
            server_wait = retry_after_seconds(response.headers.get("Retry-After"))
            if server_wait is not None:
                wait = min(server_wait, policy.max_wait_s)
            response.close()
        if attempt < policy.max_retries:
            log.info(
                "%s: %s; retry %d/%d in %.1f s",
                what,
                last_problem,
                attempt + 1,
                policy.max_retries,
                wait,
            )
            sleep(wait)
    raise DownloadError(
        f"{what}: {last_problem} after {policy.max_retries} retries; "
        "the service may be down, try again later"
    )
