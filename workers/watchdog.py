"""The watchdog: ends attempts whose lease ran out and moves their jobs on.

A lane task concludes its own attempt in the normal case, timeouts included. The watchdog covers what a
task cannot report: its worker killed (SIGKILL, OOM, a lost host), a stall past the hard limit, or an
attempt stuck in an over-capacity queue. Several watchdogs may run; the store's compare-and-set lets
exactly one of them conclude each lease. The sweep itself is ``JobService.expire_leases``.
"""

from __future__ import annotations

import signal
import threading

import structlog

from workers.attempt import job_service

log = structlog.get_logger("qgate.watchdog")


def run(interval_s: float = 0.25) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service = job_service()
    log.info("watchdog_started")
    while not stop.is_set():
        try:
            service.expire_leases()
        except Exception as exc:  # Redis away: keep trying; leases wait for us
            log.warning("watchdog_sweep_failed", error=f"{type(exc).__name__}: {exc}")
            stop.wait(1.0)
        stop.wait(interval_s)
    log.info("watchdog_stopped")
