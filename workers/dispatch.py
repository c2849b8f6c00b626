"""Celery's implementation of the orchestrator's ``Enqueuer``: an attempt becomes a task message on its
lane's queue."""

from __future__ import annotations

from jobs.model import Job
from workers.app import app

HARD_LIMIT_MARGIN_S = 5.0


def task_name(lane: str) -> str:
    return f"qgate.solve.{lane}"


class CeleryEnqueuer:
    """Sends the job's current attempt to its lane queue; a job without an attempt in flight sends nothing.

    The attempt's own limit is an alarm around the solver (workers.time_limit), not Celery's soft limit.
    Celery's hard limit is set past the lease, so that it only ever kills a child stuck in a solver's
    native code, after the watchdog has already moved the job on.
    """

    def __init__(self, lease_grace_ms: int) -> None:
        self.grace_s = lease_grace_ms / 1000

    def enqueue(self, job: Job) -> None:
        current = job.current
        if not current:
            return
        hard_s = max(current.limit_ms, 1) / 1000 + self.grace_s + HARD_LIMIT_MARGIN_S
        app.send_task(task_name(current.lane), args=[job.job_id, current.n],
                      task_id=current.task_id, queue=current.lane, time_limit=hard_s)

    def revoke(self, task_id: str) -> None:
        """Ask every worker to drop the attempt if it has not started; a running one finishes into a CAS
        that fails, so its answer is discarded."""
        app.control.revoke(task_id)
