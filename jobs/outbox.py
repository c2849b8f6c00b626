"""The webhook outbox: deliveries due, kept in Redis beside the jobs they belong to.

A job that ends with a webhook is put in the sorted set ``qgate:webhooks:due`` (score: when its next
attempt is due, in ms) by the same MULTI that ends it (``JobStore._write``), so no crash between the two
can lose a delivery. A sweeper *claims* due entries by moving their score to the end of a claim period
(a WATCH/MULTI transaction, so two sweepers never claim the same entry) and hands each to a delivery task with the
claim's score as its token. The task's outcome is recorded with a compare-and-set on that token: the
delivery log, the audit event and the entry's next due time (or its removal) in one MULTI. A task lost
with its worker leaves its claim to run out, after which the entry is due again: at least once.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from jobs.model import Conflict, Job
from jobs.store import WEBHOOKS_DUE, JobStore, Transition, _dumps, _load_job, job_key

def _ms(ts: float) -> int:
    return int(ts * 1000)


class Outbox:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.redis: redis.Redis = store.redis

    def claim_due(self, now: float, claim_s: float, limit: int = 100) -> list[tuple[str, int]]:
        """Claim up to ``limit`` due deliveries until ``now + claim_s``; returns (job id, token) pairs."""
        token = _ms(now + claim_s)

        def apply(pipe: Any) -> list[str]:
            ids = pipe.zrangebyscore(WEBHOOKS_DUE, "-inf", _ms(now), start=0, num=limit)
            if ids:
                pipe.multi()
                pipe.zadd(WEBHOOKS_DUE, {job_id: token for job_id in ids}, xx=True)
            return ids

        ids = self.redis.transaction(apply, WEBHOOKS_DUE, value_from_callable=True)
        return [(job_id.decode() if isinstance(job_id, bytes) else job_id, token) for job_id in ids]

    def holds(self, job_id: str, token: int) -> bool:
        """Whether the claim ``token`` on ``job_id`` is still the current one."""
        score = self.redis.zscore(WEBHOOKS_DUE, job_id)
        return score is not None and int(score) == token

    def drop(self, job_id: str) -> None:
        self.redis.zrem(WEBHOOKS_DUE, job_id)

    def due_at(self, job_id: str) -> float | None:
        score = self.redis.zscore(WEBHOOKS_DUE, job_id)
        return None if score is None else score / 1000

    def record(self, job_id: str, token: int | None, change: Transition, *args: Any,
               next_due: float | None) -> Job:
        """Apply ``change`` to a finished job and reschedule its delivery (``next_due``) or take it out of
        the outbox (None), atomically; with a ``token``, only while that claim is still current (else
        model.Conflict). KeyError when the job is gone (expired)."""
        key = job_key(job_id)

        def apply(pipe: Any) -> Job:
            if token is not None:
                score = pipe.zscore(WEBHOOKS_DUE, job_id)
                if score is None or int(score) != token:
                    raise Conflict("the delivery's claim was lost (another attempt took over)")
            raw = pipe.get(key)
            if raw is None:
                raise KeyError(job_id)
            job, events = change(_load_job(raw), *args)
            job.audit_events = (job.audit_events or 0) + len(events)
            pipe.multi()
            pipe.set(key, _dumps(job), keepttl=True)
            if next_due is None:
                pipe.zrem(WEBHOOKS_DUE, job_id)
            else:
                pipe.zadd(WEBHOOKS_DUE, {job_id: _ms(next_due)})
            JobStore._emit(pipe, job, events)
            return job

        return self.redis.transaction(apply, key, WEBHOOKS_DUE, value_from_callable=True)

    def schedule_now(self, job_id: str, change: Transition, *args: Any) -> Job:
        """Apply ``change`` (a redelivery) and make the delivery due now."""
        return self.record(job_id, None, change, *args, next_due=time.time())
