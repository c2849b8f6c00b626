"""The qpu lane: circuits on a QPU through an adapter (the emulated device by default)."""

import signal
from typing import Any

from celery import signals

from orchestrator.canary import canary_round
from settings import get_settings
from solvers.provider_tls import request_reload
from workers.app import app
from workers.attempt import apply_drills, log, run_attempt, solvers_for
from workers.connections import get_redis
from workers.dispatch import canary_task_name, task_name

LANE = "qpu"


@app.task(name=task_name(LANE), bind=True)
def solve(self, job_id: str, attempt: int) -> str:  # type: ignore[no-untyped-def]
    return run_attempt(LANE, job_id, attempt, self.request.hostname or "unknown")


@app.task(name=canary_task_name(LANE), ignore_result=True)
def canary() -> dict[str, Any]:
    """One calibration-canary round on this worker's device (sent by the watchdog once per period)."""
    apply_drills(LANE)
    circuits = next(solver for solver in solvers_for(LANE) if "circuit" in solver.kinds)
    return canary_round(circuits, get_redis(), LANE, get_settings().canary(), log)


@signals.worker_process_init.connect
def reload_provider_tls_on_sighup(**_: Any) -> None:
    """With the mTLS provider, SIGHUP to a pool child makes its next attempt load the client certificate,
    key and CA files again (they are also reloaded whenever they change). Jobs in flight keep theirs.

    Celery resets SIGHUP in a pool child before this runs; in the worker's main process SIGHUP stays
    Celery's own: a warm restart, after the running tasks finish."""
    if get_settings().qpu_provider == "http":
        signal.signal(signal.SIGHUP, lambda signum, frame: request_reload())
