"""Structured JSON logs. ``job_id`` and ``tenant`` are bound per request or task through contextvars.

Several processes share one stdout (Celery's main process and its pool children, gunicorn's workers),
so every line leaves a process in a single ``write()`` of ``line + "\\n"``: structlog through
``WriteLogger`` (``PrintLogger`` wrote the message and the newline separately, and another writer's
line could land in between: two JSON objects on one line) and the standard library through
``StreamHandler``, whose ``emit`` writes the message and its terminator at once.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from telemetry import tracing

SECRET_KEYS = frozenset({"client_secret", "secret", "password", "authorization", "access_token", "token"})


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
    return event


# Libraries that log routine work at INFO: qiskit one line per transpiler pass (240 lines as a qpu worker
# warms up, dozens per job), stevedore each plugin lookup. They speak at WARNING unless the level is DEBUG.
CHATTY_LIBRARIES = ("qiskit", "stevedore")


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stdout for structlog and for the standard library loggers (Celery, gunicorn).

    A standard library record's ``exc_info`` (a Celery task's failure, ``log.exception`` in a library)
    becomes an ``exception`` string holding the formatted traceback; rendered as it was, it came out as
    ``<traceback object at ...>``.
    """
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
        tracing.add_trace_id,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.processors.format_exc_info],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
