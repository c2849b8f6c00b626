"""The Flask app factory: thin ingress that authenticates, validates, plans, enqueues and answers."""

from __future__ import annotations

import time
from typing import Any

import structlog
from flask import Flask, request

from api import audit, auth, jobs, ops, solve
from api.errors import register_error_handlers
from api.services import build_services
from settings import Settings, get_settings
from telemetry.logging import configure_logging, get_logger
from telemetry.metrics import count_request

log = get_logger("qgate.http")


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    configure_logging()
    app = Flask("qgate")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["qgate"] = build_services(settings)
    for blueprint in (auth.bp, solve.bp, jobs.bp, audit.bp, ops.bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    _instrument(app)
    return app


def _instrument(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        structlog.contextvars.clear_contextvars()
        request.environ["qgate.start"] = time.perf_counter()

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
