"""The client side of mutual TLS to a quantum provider: a pinned, reloadable ``SSLContext``.

`client_context` builds the context a provider connection uses: TLS 1.2 or later only, the provider's CA
from a file as the only trust anchor (never the system store), the hostname checked, and our client
certificate and key from files. `ReloadingClientTls` hands out the current context and builds a new one
when the files change (inode, mtime or size; checked each time a context is asked for, i.e. once per
attempt) or after `request_reload` (what a worker's SIGHUP handler calls). A context already handed out
is never changed, so a job submitted with the old certificate is polled, fetched and cancelled with it
while new attempts use the new one.

`tls_failure` turns an ``ssl`` error into the short reason an attempt records: which side refused whom.
Messages name files by their base name only (the directory is deployment detail an attempt reason does
not need) and never carry key material: nothing here reads a key other than through OpenSSL.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2

log = logging.getLogger("qgate.solvers.provider_tls")

# X509_V_ERR_* codes of ssl.SSLCertVerificationError.verify_code that mean "not issued by a CA we pin".
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21, 27, 30, 31}
_HOSTNAME_MISMATCH = 62
_EXPIRED = 10
# Alerts the server sends when it refuses our client certificate (or the absence of one).
_CLIENT_REJECTED = {
    "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV1_ALERT_ACCESS_DENIED", "TLSV1_ALERT_DECRYPT_ERROR",
}
# What OpenSSL reports when the two sides share no protocol version (ours starts at TLS 1.2).
_VERSION = {
    "TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "WRONG_VERSION_NUMBER", "NO_PROTOCOLS_AVAILABLE",
    "VERSION_TOO_LOW", "TLSV1_ALERT_INAPPROPRIATE_FALLBACK",
}


class TlsConfigError(ValueError):
    """The client certificate, key or CA file cannot be loaded; the message names the file, not its path."""


@dataclass(frozen=True)
class TlsFiles:
    """Where the client identity and the provider's CA live (PEM files)."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    def signature(self) -> tuple[tuple[int, int, int] | None, ...]:
        """(inode, mtime in ns, size) of each file, None for one that cannot be read: what a rotation changes."""
        marks: list[tuple[int, int, int] | None] = []
        for path in (self.cert_file, self.key_file, self.ca_file):
            try:
                stat = os.stat(path)
            except OSError:
                marks.append(None)
            else:
                marks.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
        return tuple(marks)

    def directories(self) -> tuple[str, ...]:
        """The files' directories, kept out of messages (`QpuAdapter` redacts them)."""
        return tuple(sorted({str(path.parent) for path in (self.cert_file, self.key_file, self.ca_file)
                             if str(path.parent) not in ("", ".")}, key=len, reverse=True))


def _load_error(what: str, path: Path, exc: Exception) -> TlsConfigError:
    """``{what} {file name} cannot be loaded: ...``: OpenSSL's reason, or the OS error without the path."""
    if isinstance(exc, ssl.SSLError):
        text = exc.reason or type(exc).__name__
    elif isinstance(exc, OSError):
        text = exc.strerror or type(exc).__name__
    else:
        text = str(exc).replace(str(path), path.name)
    return TlsConfigError(f"{what} {path.name} cannot be loaded: {text}")


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context for mutual TLS: ``files.ca_file`` as the only trust anchor, TLS >= 1.2, hostname
    checked, our certificate chain and key from ``files``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    context.minimum_version = MINIMUM_VERSION
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cafile=str(files.ca_file))
    except (OSError, ValueError) as exc:
        raise _load_error("provider CA file", files.ca_file, exc) from None
    for what, path in (("client certificate", files.cert_file), ("client key", files.key_file)):
        try:
            path.open("rb").close()
        except OSError as exc:
            raise _load_error(what, path, exc) from None
    try:
        # An empty password: an encrypted key fails to load instead of OpenSSL prompting on a terminal.
        context.load_cert_chain(certfile=str(files.cert_file), keyfile=str(files.key_file), password=b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsConfigError(f"client certificate {files.cert_file.name} and key {files.key_file.name} "
                                 "do not match") from None
        raise _load_error(f"client key {files.key_file.name} or certificate", files.cert_file, exc) from None
    except OSError as exc:
        raise _load_error("client certificate", files.cert_file, exc) from None
    return context


_generation = 0


def request_reload() -> None:
    """Make every `ReloadingClientTls` build a new context on its next use. Safe in a signal handler:
    it only bumps a counter."""
    global _generation
    _generation += 1


class ReloadingClientTls:
    """The current client context for ``files``, rebuilt when the files change or a reload is requested.

    A new context that cannot be built (a rotation caught half-written: a new certificate with the old
    key) leaves the last good one in use and is tried again on the next call; the first context must
    build, or `current` raises `TlsConfigError`.
    """

    def __init__(self, files: TlsFiles, build: Callable[[TlsFiles], ssl.SSLContext] = client_context) -> None:
        self.files = files
        self._build = build
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._seen: tuple[object, ...] = ()
        self.loads = 0
        self.last_error: str | None = None

    def current(self) -> ssl.SSLContext:
        mark = (_generation, self.files.signature())
        with self._lock:
            if self._context is not None and mark == self._seen:
                return self._context
            try:
                context = self._build(self.files)
            except TlsConfigError as exc:
                self.last_error = str(exc)
                if self._context is None:
                    raise
                log.warning("provider TLS reload failed; keeping the previous certificate: %s", exc)
                return self._context
            self._context, self._seen, self.last_error = context, mark, None
            self.loads += 1
            return context


def closed_after_handshake(exc: BaseException) -> str:
    """The reason for a connection the provider closed after our side of the handshake, before answering.

    Under TLS 1.3 the client's handshake is over before the server has checked the client certificate;
    a server that refuses it sends an alert and closes, and the alert is lost when the close turns into
    a reset (unread request bytes on the server's side). So this is almost always a refused certificate.
    """
    return f"the provider rejected our client certificate (it closed the connection after the handshake: " \
           f"{type(exc).__name__})"


def tls_failure(exc: ssl.SSLError, host: str, *, after_handshake: bool = False) -> str:
    """The reason an attempt records for a failed TLS connection to ``host`` (``after_handshake``: the
    error came once our side of the handshake had completed)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code == _HOSTNAME_MISMATCH:
            return f"wrong hostname: the provider's certificate is not valid for {host!r}"
        if code in _UNKNOWN_ISSUER:
            return ("unknown server CA: the provider's certificate is not issued by the pinned CA "
                    f"({exc.verify_message})")
        if code == _EXPIRED:
            return "the provider's certificate has expired"
        return f"the provider's certificate was refused: {exc.verify_message}"
    reason = exc.reason or ""
    if reason in _CLIENT_REJECTED:
        return f"the provider rejected our client certificate ({reason})"
    if reason in _VERSION:
        return (f"TLS version: the provider offers no protocol version at or above "
                f"{MINIMUM_VERSION.name.replace('v', ' ').replace('_', '.')} ({reason})")
    if after_handshake and isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return closed_after_handshake(exc)
    return f"TLS handshake failed: {reason or type(exc).__name__}"
