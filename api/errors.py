"""Every error leaves the gateway as JSON with an ``error`` string and an exact status code."""

from __future__ import annotations

from typing import Any

import kombu.exceptions
import redis
from flask import Flask, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from telemetry.logging import get_logger

log = get_logger("qgate.api")


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors, self.headers, self.body = status, message, errors, headers, body


def validation_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{"loc": [...], "msg": ...}``, without echoing the input back."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        where = list(err["loc"]) or (["kind"] if err["type"].startswith("union_tag") else [])
        loc = [*prefix, *where]
        msg = err["msg"].removeprefix("Value error, ")
        out.append({"loc": loc, "msg": msg, "type": err["type"]})
    return out


def unprocessable(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> ApiError:
    """422 for a request body pydantic refused; every ``loc`` starts with ``"body"``, as the strict JSON
    reader's and the header checks' (``"header"``) do, so a client finds the value the same way for each."""
    return ApiError(422, "invalid request", errors=validation_errors(exc, ("body", *prefix)))


def bad_query(name: str, msg: str, status: int = 400) -> ApiError:
    """A refused query parameter, with ``loc: ["query", name]`` beside the one-line message."""
    return ApiError(status, msg, errors=[{"loc": ["query", name], "msg": msg}])


def _respond(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Any:
    body = {"error": message, **{k: v for k, v in extra.items() if v is not None}}
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


HTTP_MESSAGES = {400: "bad request", 404: "not found", 405: "method not allowed", 413: "request body too large"}
_BODY_HEADERS = frozenset({"content-type", "content-length"})


def _http_headers(exc: HTTPException) -> dict[str, str]:
    """The headers werkzeug gives ``exc`` (``Allow`` on a 405, ``Retry-After``, ``WWW-Authenticate``...),
    without those that describe its HTML body, which the JSON body replaces."""
    pairs = exc.response.headers.items() if exc.response is not None else exc.get_headers()
    return {name: value for name, value in pairs if name.lower() not in _BODY_HEADERS}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Any:
        if exc.body is not None:
            response = jsonify({**exc.body, "error": exc.message})
            response.status_code = exc.status
            response.headers.update(exc.headers or {})
            return response
        return _respond(exc.status, exc.message, exc.headers, errors=exc.errors)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or (exc.response.status_code if exc.response is not None else 500)
        return _respond(status, HTTP_MESSAGES.get(status, exc.name.lower()), _http_headers(exc))

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    @app.errorhandler(kombu.exceptions.OperationalError)
    def _unavailable(exc: Exception) -> Any:
        log.warning("backend_unavailable", error=type(exc).__name__)
        return _respond(503, "job store or broker unavailable; retry later", {"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled_error")
        return _respond(500, "internal error")
