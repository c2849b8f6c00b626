"""Every log line is one JSON object, exceptions from standard library loggers included."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
from typing import Any, Iterator

import pytest
import structlog

from telemetry.logging import configure_logging

THREADS = 8
LINES_PER_THREAD = 300


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put the root logger and structlog back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def _lines(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n"), text[-200:]
    return [json.loads(line) for line in text[:-1].split("\n")]


def test_a_stdlib_exception_is_one_json_line_with_the_formatted_traceback(
        restore_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging()
    try:
        raise ValueError("solver exploded at step 42")
    except ValueError:
        exc_info = sys.exc_info()
    # The way Celery's tracer logs a failed task: a format, its arguments and an exc_info tuple.
    logging.getLogger("celery.app.trace").log(logging.ERROR, "Task %(name)s raised", {"name": "qpu.run"},
                                              exc_info=exc_info)

    [entry] = _lines(out.getvalue())
    assert entry["event"] == "Task qpu.run raised" and entry["level"] == "error"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: solver exploded at step 42" in entry["exception"]
    assert "exc_info" not in entry and "traceback object" not in out.getvalue()


def _drain(fd: int, into: list[bytes]) -> None:
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            into.append(chunk)


def _log_many(index: int) -> None:
    """Half of the threads log through structlog, half through a standard library logger."""
    padding = "x" * (50 + 37 * index)
    if index % 2:
        log = structlog.get_logger("qgate.test")
        for n in range(LINES_PER_THREAD):
            log.info("structlog line", thread=index, n=n, padding=padding)
    else:
        stdlib = logging.getLogger("qgate.test.stdlib")
        for n in range(LINES_PER_THREAD):
            stdlib.info("stdlib line %d %d %s", index, n, padding)


@pytest.fixture
def eager_thread_switches() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so that a line written in two parts gets split."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_lines_logged_concurrently_into_a_pipe_stay_whole(
        restore_logging: None, eager_thread_switches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    read_fd, write_fd = os.pipe()
    received: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(read_fd, received))
    reader.start()
    # Unbuffered like stdout under PYTHONUNBUFFERED=1 (honcho, the test stack): each write() is a syscall.
    pipe = io.TextIOWrapper(io.FileIO(write_fd, "w"), encoding="utf-8", write_through=True)
    monkeypatch.setattr(sys, "stdout", pipe)
    configure_logging()

    writers = [threading.Thread(target=_log_many, args=(i,)) for i in range(THREADS)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    pipe.close()
    reader.join(30)

    entries = _lines(b"".join(received).decode())
    assert len(entries) == THREADS * LINES_PER_THREAD
    assert all(isinstance(entry, dict) and entry["event"] for entry in entries)


@pytest.mark.parametrize("logger", ["qiskit.passmanager.base_tasks", "qiskit.transpiler.passes", "stevedore._cache"])
def test_chatty_libraries_log_warnings_only_at_the_default_level(
        restore_logging: None, monkeypatch: pytest.MonkeyPatch, logger: str) -> None:
    """qiskit logs every transpiler pass at INFO: 240 lines at a qpu worker's start, a few dozen per job."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging()
    logging.getLogger(logger).info("Pass: BasisTranslator - 0.02 (ms)")
    logging.getLogger(logger).warning("a pass could not run")
    logging.getLogger("qgate.worker").info("worker_ready")
    assert [line["event"] for line in _lines(out.getvalue())] == ["a pass could not run", "worker_ready"]
