"""Where a waiting attempt stands in its lane's queue.

Celery's messages in the lane's Redis list are JSON envelopes, so a task id cannot be found with LPOS.
Each lane instead keeps a sorted set of the jobs whose attempt waits on it, scored by enqueue time,
changed in the same MULTI as the job (the store's observer): added when an attempt is dispatched,
removed when a worker starts it or it ends. A job's position is its ZRANK. A second set per lane and
tenant holds the same jobs of that tenant only, so admission can tell a queue full of the tenant's own
work (its share: 429) from one full of everyone else's (503).
"""

from __future__ import annotations

from typing import Any


def waiting_key(lane: str) -> str:
    return f"qgate:lane:{lane}:waiting"


def tenant_waiting_key(lane: str, tenant: str) -> str:
    """Tenants are checked against a strict pattern at every token source, so they are safe in a key."""
    return f"qgate:lane:{lane}:waiting:t:{tenant}"


class WaitingLanes:
    """The store's observer that keeps the per-lane waiting sets."""

    def prepare(self, pipe: Any, before: Any, events: Any) -> None:
        return None

    def observe(self, pipe: Any, before: Any, job: Any, events: Any, now: float, prepared: Any = None) -> None:
        was = getattr(before, "current", None)
        now_current = job.current
        waits_now = now_current is not None and now_current.started_at is None
        if was is not None and was.started_at is None and not (waits_now and now_current.n == was.n):
            pipe.zrem(waiting_key(was.lane), job.job_id)
            pipe.zrem(tenant_waiting_key(was.lane, job.tenant), job.job_id)
        if waits_now and (was is None or was.n != now_current.n):
            pipe.zadd(waiting_key(now_current.lane), {job.job_id: now_current.enqueued_at})
            pipe.zadd(tenant_waiting_key(now_current.lane, job.tenant), {job.job_id: now_current.enqueued_at})


def position(redis: Any, lane: str, job_id: str) -> tuple[int, int] | None:
    """(jobs ahead, jobs waiting in all) for a waiting job; None when it is not waiting on ``lane``."""
    pipe = redis.pipeline(transaction=False)
    pipe.zrank(waiting_key(lane), job_id)
    pipe.zcard(waiting_key(lane))
    rank, total = pipe.execute()
    return None if rank is None else (int(rank), int(total))


def tenant_shares(redis: Any, lanes: list[str], tenant: str) -> dict[str, tuple[int, int]]:
    """(the tenant's jobs waiting, all jobs waiting) per lane."""
    pipe = redis.pipeline(transaction=False)
    for lane in lanes:
        pipe.zcard(tenant_waiting_key(lane, tenant))
        pipe.zcard(waiting_key(lane))
    counts = pipe.execute()
    return {lane: (int(counts[2 * i]), int(counts[2 * i + 1])) for i, lane in enumerate(lanes)}
