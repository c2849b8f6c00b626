"""A collector that accepts connections and never answers must not hold a qgate process for long.

Measured on a whole stack with OTEL_EXPORTER_OTLP_ENDPOINT at such a listener: the ingress took 13.9 s
to stop (2.5 s without), the audit writer 11.2 s (0.2 s): the exporter's default 10 s per request, spent
again by the flush at exit. Here one process configures tracing, ends one span and exits.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).parents[2]
CHILD = ("from telemetry import tracing\n"
         "assert tracing.configure('qgate-test')\n"
         "with tracing.span('qgate.test'):\n"
         "    pass\n")


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A listener whose backlog takes every connection and which never reads or answers."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    yield f"http://127.0.0.1:{hole.getsockname()[1]}"
    hole.close()


@pytest.mark.parametrize("extra", [{}, {"OTEL_EXPORTER_OTLP_TIMEOUT": "1"}], ids=["default", "operator-set-1s"])
def test_a_silent_collector_delays_exit_by_seconds_not_tens(black_hole: str, extra: dict[str, str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OTEL_EXPORTER_OTLP_ENDPOINT": black_hole, **extra}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-500:]
    assert took < 6, f"exit took {took:.1f} s with a collector that never answers"
