"""The Flask app factory: thin ingress that authenticates, validates, plans, enqueues and answers."""

from __future__ import annotations

import io
import time
from typing import IO, Any, Callable, Iterable

import structlog
from flask import Flask, Request, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.utils import cached_property
from werkzeug.wsgi import get_input_stream

from api import audit, auth, dashboard, jobs, ops, rate_limits, reports, solve, spend, usage
from api.errors import ApiError, bad_query, register_error_handlers
from api.services import build_services
from orchestrator.service import Enqueuer
from settings import Settings, get_settings
from telemetry.logging import configure_logging, get_logger
from telemetry import tracing
from telemetry.metrics import count_request

log = get_logger("qgate.http")

# Public documents a cache may keep; every other answer carries "Cache-Control: no-store".
CACHEABLE_PATHS = frozenset({"/openapi.json", "/.well-known/jwks.json"})


def create_app(settings: Settings | None = None, enqueuer: Enqueuer | None = None) -> Flask:
    """The ingress app. ``enqueuer`` publishes attempts to the lane queues (wsgi.py passes Celery's);
    the api package itself never loads Celery or the workers."""
    settings = settings or get_settings()
    configure_logging()
    tracing.configure("qgate-ingress")
    app = Flask("qgate")
    app.request_class = BoundedRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["qgate"] = svc = build_services(settings, enqueuer)
    svc.policy_source  # load the policy now: with no good policy the ingress does not start
    svc.rate_policy  # read and check the limits (and their overrides file) now: a bad one stops the start
    app.after_request(rate_limits.add_headers)
    for blueprint in (auth.bp, solve.bp, jobs.bp, audit.bp, ops.bp, usage.bp, spend.bp, reports.bp, dashboard.bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    _instrument(app)
    app.before_request(_refuse_repeated_query)
    tracing.instrument_flask(app)
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,  # type: ignore[method-assign]
                                x_proto=0, x_host=0, x_port=0, x_prefix=0)
    app.wsgi_app = HygieneHeaders(app.wsgi_app)  # type: ignore[method-assign]
    return app


class HygieneHeaders:
    """WSGI middleware: ``X-Content-Type-Options: nosniff`` on every answer, ``Cache-Control: no-store``
    on every answer but CACHEABLE_PATHS (unless the view chose a Cache-Control).

    Answers hold tokens, jobs and audit evidence, and API answers carry no cache headers of their own.
    A middleware rather than ``after_request`` so that no answer escapes it: error handlers' answers,
    Flask's own 500, and an answer whose ``after_request`` chain failed.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        no_store = environ.get("PATH_INFO", "") not in CACHEABLE_PATHS

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            extra = [("X-Content-Type-Options", "nosniff")] if "x-content-type-options" not in present else []
            if no_store and "cache-control" not in present:
                extra.append(("Cache-Control", "no-store"))
            return start_response(status, [*headers, *extra], exc_info)

        return self.wsgi_app(environ, start)


class _RefuseBeyond(io.RawIOBase):
    """A request body of unknown length (chunked) that raises 413 once it proves longer than ``limit``.

    werkzeug (3.1) wraps such a body in ``LimitedStream(limit, is_max=True)``, whose reads stop quietly
    after exactly ``limit`` bytes: an oversize chunked body was cut short, not refused, so a JSON body
    failed as 400 and a form was parsed from its first ``limit`` bytes. Having handed out ``limit``
    bytes, this stream reads one byte more, and an extra byte means the body is too large.
    """

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__()
        self._stream, self._limit, self._pos = stream, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        room = self._limit - self._pos
        data = self._read(min(len(buffer), room + 1))
        self._pos += len(data)
        if self._pos > self._limit or (data and self._pos == self._limit and self._read(1)):
            raise RequestEntityTooLarge()
        buffer[:len(data)] = data
        return len(data)

    def _read(self, size: int) -> bytes:
        """Read from the server's stream; bad chunk framing is the client's error (400), not ours (500)."""
        try:
            return self._stream.read(size)
        except (OSError, ValueError, HTTPException):
            raise  # werkzeug reads OSError and ValueError as a client that went away
        except Exception as exc:
            raise ApiError(400, "invalid chunked body") from exc


class BoundedRequest(Request):
    """Flask's request, enforcing MAX_CONTENT_LENGTH on chunked bodies too (see _RefuseBeyond)."""

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        if limit is None or self.content_length is not None or self.shallow:
            return super().stream
        bounded = {**self.environ, "wsgi.input": _RefuseBeyond(self.environ["wsgi.input"], limit)}
        return get_input_stream(bounded, max_content_length=limit)


def _refuse_repeated_query() -> None:
    """On the API, a query parameter given twice is 400 with its ``loc``: ``?tenant=a&tenant=b`` is
    parameter pollution (one reader takes the first value, another the last), and whoever sent two
    meant something no answer would say."""
    if not request.path.startswith("/api/"):
        return
    for name in request.args:
        if len(request.args.getlist(name)) > 1:
            shown = name[:100]
            raise bad_query(shown, f"query parameter '{shown}' given more than once")


def _instrument(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        structlog.contextvars.clear_contextvars()
        request.environ["qgate.start"] = time.perf_counter()

    @app.teardown_request
    def _forget(_: BaseException | None) -> None:
        # after the request's own log line: what the thread logs until its next request (gunicorn's
        # "Invalid request from ip=...") must not carry this caller's tenant, client and job
        structlog.contextvars.clear_contextvars()

    @app.after_request
    def _finish(response: Any) -> Any:
        elapsed_ms = (time.perf_counter() - request.environ.get("qgate.start", time.perf_counter())) * 1000
        route = request.url_rule.rule if request.url_rule else "unmatched"
        log.info("request", method=request.method, route=route, status=response.status_code,
                 ms=round(elapsed_ms, 2))
        try:
            count_request(app.extensions["qgate"].redis, request.method, route, response.status_code)
        except Exception:  # metrics must never turn an answer into an error (e.g. Redis down -> 503)
            pass
        return response
