"""The HTTP side of a delivery: one POST to an address the guard checked, and nothing else.

The connection goes to the checked IP address itself (no second DNS lookup), while TLS sends the host
name as SNI and verifies the certificate against that name (urllib3's ``server_hostname`` and
``assert_hostname``), and the Host header carries the name. Redirects are not followed, urllib3's own
retries are off (the retry schedule is ours), connect and read timeouts apply, and at most
``max_response_bytes`` of the answer are read.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import urllib3

from webhooks.retry import parse_retry_after
from webhooks.ssrf import Target

USER_AGENT = "qgate-webhooks/1"


@dataclass(frozen=True)
class Reply:
    """An attempt as the receiver answered it: ``status`` None means no answer (``error`` says why)."""

    status: int | None
    duration_ms: float
    error: str | None = None
    retry_after_s: float | None = None


class Sender:
    def __init__(self, ca_file: Path | None = None, connect_timeout_s: float = 5.0, read_timeout_s: float = 10.0,
                 max_response_bytes: int = 65536) -> None:
        self.context = ssl.create_default_context()
        if ca_file is not None:
            self.context.load_verify_locations(cafile=str(ca_file))
        self.timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self.max_response_bytes = max_response_bytes

    def post(self, target: Target, body: bytes, headers: dict[str, str]) -> Reply:
        """POST ``body`` to the first of the target's checked addresses that accepts a connection."""
        started = time.monotonic()
        error = "no address"
        for address in target.addresses:
            try:
                return self._post(address, target, body, headers, started)
            except urllib3.exceptions.NewConnectionError as exc:
                error = f"connect to {address} failed: {_reason(exc)}"
            except urllib3.exceptions.HTTPError as exc:
                return Reply(None, _ms(started), f"{type(exc).__name__}: {_reason(exc)}"[:300])
            except OSError as exc:
                return Reply(None, _ms(started), f"{type(exc).__name__}: {exc}"[:300])
        return Reply(None, _ms(started), error[:300])

    def _post(self, address: str, target: Target, body: bytes, headers: dict[str, str], started: float) -> Reply:
        pool: urllib3.HTTPConnectionPool
        if target.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(address, target.port, timeout=self.timeout, retries=False,
                                               maxsize=1, ssl_context=self.context,
                                               server_hostname=target.host, assert_hostname=target.host)
        else:
            pool = urllib3.HTTPConnectionPool(address, target.port, timeout=self.timeout, retries=False, maxsize=1)
        all_headers = {**headers, "Host": target.host_header, "Content-Type": "application/json",
                       "User-Agent": USER_AGENT}
        try:
            response = pool.urlopen("POST", target.path, body=body, headers=all_headers, redirect=False,
                                    retries=False, preload_content=False, assert_same_host=False)
            try:
                response.read(self.max_response_bytes, decode_content=False)
            finally:
                response.release_conn()
                response.close()
            return Reply(response.status, _ms(started),
                         None if 200 <= response.status <= 299 else f"HTTP {response.status}",
                         parse_retry_after(response.headers.get("Retry-After")))
        finally:
            pool.close()


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)
