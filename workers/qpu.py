"""The qpu lane: circuits on a QPU through an adapter (the emulated device by default)."""

import signal
from typing import Any

from celery import signals

from settings import get_settings
from solvers.provider_tls import request_reload
from workers.app import app
from workers.attempt import run_attempt
from workers.dispatch import task_name

LANE = "qpu"


@app.task(name=task_name(LANE), bind=True)
def solve(self, job_id: str, attempt: int) -> str:  # type: ignore[no-untyped-def]
    return run_attempt(LANE, job_id, attempt, self.request.hostname or "unknown")


@signals.worker_process_init.connect
def reload_provider_tls_on_sighup(**_: Any) -> None:
    """With the mTLS provider, SIGHUP to a pool child makes its next attempt load the client certificate,
    key and CA files again (they are also reloaded whenever they change). Jobs in flight keep theirs.

    Celery resets SIGHUP in a pool child before this runs; in the worker's main process SIGHUP stays
    Celery's own: a warm restart, after the running tasks finish."""
    if get_settings().qpu_provider == "http":
        signal.signal(signal.SIGHUP, lambda signum, frame: request_reload())
