"""Worker liveness: the worker's main process beats for each lane queue it consumes.

The beat runs in the parent process of the prefork pool, so it stops when the worker itself dies,
and /readyz and the planner stop counting that worker within three beats.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from celery import signals

from routing.health import beat, leave
from jobs.connection import get_redis
from settings import LANES, get_settings

log = structlog.get_logger("qgate.worker")
_stop = threading.Event()


def _lanes(consumer: Any) -> list[str]:
    names = consumer.app.amqp.queues.consume_from or {}
    return [name for name in names if name in LANES]


@signals.worker_ready.connect
def _start_beating(sender: Any, **_: Any) -> None:
    lanes, hostname = _lanes(sender), sender.hostname
    from workers.attempt import lane_limits

    interval = get_settings().worker_heartbeat_s
    limits = {lane: lane_limits(lane) for lane in lanes}

    def loop() -> None:
        while not _stop.is_set():
            try:
                for lane in lanes:
                    beat(get_redis(), lane, hostname, limits[lane], interval)
            except Exception as exc:  # Redis away for a moment: try again on the next beat
                log.warning("heartbeat_failed", error=str(exc))
            _stop.wait(interval)

    threading.Thread(target=loop, name="qgate-heartbeat", daemon=True).start()
    log.info("worker_ready", lanes=lanes, worker=hostname)


@signals.worker_shutdown.connect
def _stop_beating(sender: Any, **_: Any) -> None:
    _stop.set()
    for lane in LANES:
        try:
            leave(get_redis(), lane, sender.hostname)
        except Exception:  # shutting down anyway; the key expires on its own
            pass


@signals.setup_logging.connect
def _logging(**_: Any) -> None:
    """Take over Celery's logging so that workers log JSON lines like every other process."""
    from telemetry.logging import configure_logging

    configure_logging()


@signals.worker_process_init.connect
def _prepare_child(**_: Any) -> None:
    """Import and build the solvers in each pool child before its first task, not during it."""
    from telemetry.logging import configure_logging
    from workers.app import app
    from workers.attempt import lane_limits, solvers_for
    from workers.warmup import warm_up

    configure_logging()
    for lane in [name for name in (app.amqp.queues.consume_from or {}) if name in LANES]:
        warm_up(lane, solvers_for(lane), lane_limits(lane))
