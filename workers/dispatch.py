"""Putting a job's current attempt on its lane's queue, and taking it back off."""

from __future__ import annotations

from typing import Any

from settings import get_settings
from workers.app import app


def task_name(lane: str) -> str:
    return f"qgate.solve.{lane}"


HARD_LIMIT_MARGIN_S = 5.0


def enqueue_current(job: dict[str, Any]) -> None:
    """Send the job's current attempt to its lane queue. A job without an attempt in flight (it ended)
    sends nothing.

    The attempt's own limit is an alarm around the solver (workers.time_limit), not Celery's soft limit.
    Celery's hard limit is set past the lease, so that it only ever kills a child stuck in a solver's
    native code, after the watchdog has already moved the job on.
    """
    current = job.get("current")
    if not current:
        return
    grace_s = get_settings().lease_grace_ms / 1000
    hard_s = max(current["limit_ms"], 1) / 1000 + grace_s + HARD_LIMIT_MARGIN_S
    app.send_task(task_name(current["lane"]), args=[job["job_id"], current["n"]], task_id=current["task_id"],
                  queue=current["lane"], time_limit=hard_s)


def revoke_attempt(task_id: str) -> None:
    """Ask every worker to drop the attempt if it has not started; a running one finishes into a CAS that
    fails, so its answer is discarded."""
    app.control.revoke(task_id)
