"""The watchdog: ends attempts whose lease ran out and moves their jobs on.

A lane task concludes its own attempt in the normal case, timeouts included. The watchdog covers what a
task cannot report: its worker killed (SIGKILL, OOM, a lost host), a stall past the hard limit, or an
attempt stuck in an over-capacity queue. Several watchdogs may run; the store's compare-and-set lets
exactly one of them conclude each lease. The sweep itself is ``JobService.expire_leases``.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import structlog

from routing.canary import CanaryConfig, claim_run
from settings import get_settings
from solvers.registry import LANES, lane_queues
from telemetry.rollups import sample_queue_depths
from workers.app import app
from workers.attempt import job_service
from workers.dispatch import canary_task_name

log = structlog.get_logger("qgate.watchdog")


DEPTH_SAMPLE_S = 10.0  # queue-depth samples for the console's history


def _sample_depths(client: Any) -> None:
    depths = {lane: sum(client.llen(queue) for queue in lane_queues(lane)) for lane in LANES}
    sample_queue_depths(client, depths)


CANARY_LANE = "qpu"


def _send_canary(client: Any, config: CanaryConfig) -> None:
    """Once per period, fleet-wide: one canary task on the qpu lane's batch queue, dropped by the worker
    if it is still waiting when the next one is due."""
    if claim_run(client, CANARY_LANE, config):
        app.send_task(canary_task_name(CANARY_LANE), queue=CANARY_LANE, expires=config.period_s)
        log.info("canary_sent", lane=CANARY_LANE)


def run(interval_s: float = 0.25) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service = job_service()
    canary = get_settings().canary()
    log.info("watchdog_started")
    sampled_at = float("-inf")
    while not stop.is_set():
        try:
            service.expire_leases()
            _send_canary(service.store.redis, canary)
            if time.monotonic() - sampled_at >= DEPTH_SAMPLE_S:
                sampled_at = time.monotonic()
                _sample_depths(service.store.redis)
        except Exception as exc:  # Redis away: keep trying; leases wait for us
            log.warning("watchdog_sweep_failed", error=f"{type(exc).__name__}: {exc}")
            stop.wait(1.0)
        stop.wait(interval_s)
    log.info("watchdog_stopped")
