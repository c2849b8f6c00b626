"""The watchdog: ends attempts whose lease ran out and moves their jobs on.

A lane task concludes its own attempt in the normal case, timeouts included. The watchdog covers what a
task cannot report: its worker killed (SIGKILL, OOM, a lost host), a stall past the hard limit, or an
attempt stuck in an over-capacity queue. Several watchdogs may run; the store's compare-and-set lets
exactly one of them conclude each lease.
"""

from __future__ import annotations

import signal
import threading
import time
import structlog

from jobs import model
from jobs.connection import get_redis
from jobs.store import LEASES, JobStore
from routing import fallback
from settings import get_settings
from workers.dispatch import enqueue_current

log = structlog.get_logger("qgate.watchdog")


def sweep(store: JobStore, lease_grace_ms: int, now: float | None = None) -> int:
    """Conclude every expired lease once; returns how many jobs moved."""
    now = time.time() if now is None else now
    moved = 0
    for job_id in store.due_leases(now):
        try:
            job = store.transition(job_id, fallback.expire_lease, lease_grace_ms, now=now)
        except KeyError:
            store.redis.zrem(LEASES, job_id)
            continue
        except model.Conflict:
            continue
        moved += 1
        log.warning("lease_expired", job_id=job_id, status=job["status"], reason=job["attempts"][-1]["reason"])
        try:
            enqueue_current(job)
        except Exception as exc:  # broker away: the next attempt's lease is tracked and expires in turn
            log.error("enqueue_failed", job_id=job_id, error=f"{type(exc).__name__}: {exc}")
    return moved


def run(interval_s: float = 0.25) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    settings = get_settings()
    store = JobStore(get_redis(), settings.job_ttl_s)
    log.info("watchdog_started")
    while not stop.is_set():
        try:
            sweep(store, settings.lease_grace_ms)
        except Exception as exc:  # Redis away: keep trying; leases wait for us
            log.warning("watchdog_sweep_failed", error=f"{type(exc).__name__}: {exc}")
            stop.wait(1.0)
        stop.wait(interval_s)
    log.info("watchdog_stopped")
