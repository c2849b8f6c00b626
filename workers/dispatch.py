"""Putting a job's current attempt on its lane's queue, and taking it back off."""

from __future__ import annotations

from typing import Any

from settings import get_settings
from workers.app import app


def task_name(lane: str) -> str:
    return f"qgate.solve.{lane}"


def enqueue_current(job: dict[str, Any]) -> None:
    """Send the job's current attempt to its lane queue, with Celery time limits from its budget share.

    The soft limit raises inside the task when the share is spent; the hard limit, a little later, kills
    a solver that ignores it. A job without an attempt in flight (it ended) sends nothing.
    """
    current = job.get("current")
    if not current:
        return
    soft_s = max(current["limit_ms"], 1) / 1000
    grace_s = get_settings().lease_grace_ms / 1000
    app.send_task(task_name(current["lane"]), args=[job["job_id"], current["n"]], task_id=current["task_id"],
                  queue=current["lane"], soft_time_limit=soft_s, time_limit=soft_s + grace_s / 2)


def revoke_attempt(task_id: str) -> None:
    """Ask every worker to drop the attempt if it has not started; a running one finishes into a CAS that
    fails, so its answer is discarded."""
    app.control.revoke(task_id)
