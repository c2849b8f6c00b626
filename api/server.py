"""gunicorn's side of the gateway's HTTP hygiene, selected by gunicorn.conf.py.

gunicorn answers some requests before Flask sees them (a request line or headers it cannot parse,
a bad chunked body) and adds a ``Server`` header to every answer; it also writes the access log.
``Worker`` makes those answers JSON like the API's own errors and drops the banner; ``Logger`` writes
the access log as one JSON object per request, with the path but never the query string (which can
hold an ``access_token``), and sends gunicorn's own messages through the JSON log handler.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from gunicorn import glogging, util
from gunicorn.http import errors as http_errors
from gunicorn.http import wsgi
from gunicorn.workers.gthread import ThreadWorker

from telemetry.logging import configure_logging

# What the client did wrong, in the words of the API's errors; the status is gunicorn's choice.
ERROR_MESSAGES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (http_errors.LimitRequestLine, "request line too long"),
    (http_errors.LimitRequestHeaders, "request header fields too large or too many"),
    (http_errors.InvalidHeaderName, "invalid header name"),
    (http_errors.InvalidHeader, "invalid header"),
    (http_errors.InvalidRequestLine, "invalid request line"),
    (http_errors.InvalidRequestMethod, "invalid method"),
    (http_errors.InvalidHTTPVersion, "unsupported HTTP version"),
    ((http_errors.InvalidChunkSize, http_errors.ChunkMissingTerminator, http_errors.InvalidChunkExtension),
     "invalid chunked body"),
    (http_errors.UnsupportedTransferCoding, "unsupported transfer coding"),
    (http_errors.ObsoleteFolding, "obsolete line folding in a header"),
)


class _BannerlessResponse(wsgi.Response):
    """gunicorn's response without ``Server: gunicorn``, which only tells a scanner what to try."""

    def default_headers(self) -> list[str]:
        return [line for line in super().default_headers() if not line.lower().startswith("server:")]


class _ErrorCapture:
    """Stands in for the client socket while gunicorn's ``Worker.handle_error`` runs.

    That method maps each parse error to a status, logs it, writes the access log line and sends an
    HTML page through ``util.write_error``. Run against this stand-in, it does all of that but the
    page stays here, and the worker sends JSON with the same status instead.
    """

    def __init__(self) -> None:
        self.sent = bytearray()

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.sent += data


def _status_line(page: bytes) -> tuple[int, str] | None:
    """``(414, "URI Too Long")`` from ``HTTP/1.1 414 URI Too Long\\r\\n...``; None if it is not one."""
    parts = page.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    if len(parts) == 3 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        return int(parts[1]), parts[2]
    return None


def _message(exc: BaseException, reason: str) -> str:
    """A fixed description of the error: gunicorn's own messages quote the request back."""
    for kinds, message in ERROR_MESSAGES:
        if isinstance(exc, kinds):
            return message
    return reason.lower()


def json_error(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error body; the connection closes after it, as gunicorn's does."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "Cache-Control: no-store\r\n"
            "\r\n")
    return head.encode("latin-1") + body


class Worker(ThreadWorker):
    """gunicorn's gthread worker, answering its own errors as JSON and without a ``Server`` header."""

    def init_process(self) -> None:
        # gunicorn builds every response through this module attribute; there is no setting for the banner.
        wsgi.Response = _BannerlessResponse  # type: ignore[misc]
        super().init_process()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        capture = _ErrorCapture()
        super().handle_error(req, capture, addr, exc)
        page = bytes(capture.sent)
        status = _status_line(page)
        answer = json_error(*status, _message(exc, status[1])) if status else page
        try:
            util.write_nonblock(client, answer)
        except Exception:
            self.log.debug("Failed to send error message.")


class Logger(glogging.Logger):
    """gunicorn's logger, writing JSON lines like every other qgate process."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        configure_logging()
        if cfg.errorlog == "-":
            self._through_root(self.error_log)

    @staticmethod
    def _through_root(log: logging.Logger) -> None:
        """Drop gunicorn's plain-text handler so that ``log``'s records reach the root JSON handler."""
        for handler in list(log.handlers):
            if getattr(handler, "_gunicorn", False):
                log.removeHandler(handler)
        log.propagate = True

    def _access_enabled(self) -> bool:
        """gunicorn's own test where this gunicorn has one, else whether an access log is configured."""
        enabled = getattr(self, "access_log_enabled", None)
        return bool(enabled) if enabled is not None else self.cfg.accesslog is not None

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: dt.timedelta) -> None:
        """One JSON object per request: method, path without the query string, status, bytes, duration."""
        if not self._access_enabled():
            return
        status = str(resp.status).split(None, 1)[0]
        entry = {
            "event": "access",
            "method": environ.get("REQUEST_METHOD"),
            # PATH_INFO, decoded and without the query string; a request gunicorn refused has none.
            "path": environ.get("PATH_INFO", getattr(req, "path", None)),
            "status": int(status) if status.isdigit() else status,
            "bytes": getattr(resp, "sent", None),
            "ms": round(request_time.total_seconds() * 1000, 2),
            "level": "info",
            "logger": "gunicorn.access",
            "timestamp": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        }
        try:
            self.access_log.info(json.dumps(entry))
        except Exception:
            self.exception("Failed to write the access log line")
