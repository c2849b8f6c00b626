"""Worker liveness: the worker's main process beats for each lane queue it consumes, but only while
it can work.

The beat runs in a thread of the parent process of the prefork pool. A thread alone would go on beating
while the worker's event loop is wedged or its pool has no live child, so each beat first checks that
the event loop has turned recently (a callback on the kombu hub's tick, which stops when the loop
stops or the broker connection is down) and that the pool has a live child. /readyz and the planner
stop counting a worker within three beats of either failing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from celery import signals

from routing import provider_queue
from routing.health import beat, leave
from workers.connections import get_redis
from settings import LANES, get_settings
from solvers.registry import lane_of_queue

log = structlog.get_logger("qgate.worker")
_stop = threading.Event()
_last_tick = [0.0]


def _tick() -> None:
    _last_tick[0] = time.monotonic()


def _live_children(consumer: Any) -> int | None:
    """How many pool children are alive, or None when the pool does not say (solo, threads)."""
    processes = getattr(getattr(getattr(consumer, "pool", None), "_pool", None), "_pool", None)
    if processes is None:
        return None
    return sum(1 for process in list(processes) if process.exitcode is None)


def can_work(consumer: Any, interval_s: float, now: float | None = None) -> tuple[bool, str]:
    """Whether the worker consumes (its event loop turned within three beats) and has a live child."""
    now = time.monotonic() if now is None else now
    if getattr(consumer, "hub", None) is not None and now - _last_tick[0] > 3 * interval_s:
        return False, f"event loop idle for {now - _last_tick[0]:.1f} s"
    if _live_children(consumer) == 0:
        return False, "no live pool child"
    return True, ""


def _lanes(consumer: Any) -> list[str]:
    names = consumer.app.amqp.queues.consume_from or {}
    return list(dict.fromkeys(lane for lane in map(lane_of_queue, names) if lane is not None))


@signals.worker_ready.connect
def _start_beating(sender: Any, **_: Any) -> None:
    lanes, hostname = _lanes(sender), sender.hostname
    from workers.attempt import lane_limits

    interval = get_settings().worker_heartbeat_s
    limits = {lane: lane_limits(lane) for lane in lanes}

    hub = getattr(sender, "hub", None)
    if hub is not None:
        _tick()
        hub.on_tick.add(_tick)

    def loop() -> None:
        while not _stop.is_set():
            ok, why = can_work(sender, interval)
            try:
                if ok:
                    for lane in lanes:
                        beat(get_redis(), lane, hostname, limits[lane], interval)
                else:
                    log.warning("heartbeat_withheld", reason=why)
            except Exception as exc:  # Redis away for a moment: try again on the next beat
                log.warning("heartbeat_failed", error=str(exc))
            _stop.wait(interval)

    threading.Thread(target=loop, name="qgate-heartbeat", daemon=True).start()
    if "qpu" in lanes:  # its own thread: a provider slow to say how long its queue is must not stop the beat
        threading.Thread(target=_provider_queue_loop, args=(interval,), name="qgate-provider-queue",
                         daemon=True).start()
    log.info("worker_ready", lanes=lanes, worker=hostname)


def _provider_queue_loop(interval_s: float) -> None:
    while not _stop.is_set():
        _publish_provider_queue(interval_s)
        _stop.wait(interval_s)


def _publish_provider_queue(interval_s: float) -> None:
    """The qpu adapter's own queue figure, plus the delay of a runtime drill (it is queue the gateway
    emulates). A provider that cannot say now is skipped: the last figure expires in three beats."""
    from workers.attempt import provider_queue_figure

    try:
        figure = provider_queue_figure("qpu")
    except Exception as exc:  # QpuError, a network timeout: no figure this beat
        log.warning("provider_queue_unavailable", error=f"{type(exc).__name__}: {exc}"[:300])
        return
    if figure is not None:
        try:
            provider_queue.publish(get_redis(), "qpu", figure, 3 * interval_s)
        except Exception as exc:  # Redis away for a moment: the next round publishes
            log.warning("provider_queue_publish_failed", error=str(exc)[:300])


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
    """Import and build the solvers in each pool child before its first task, not during it; start its
    own tracer (after the fork) when tracing is on."""
    from telemetry import tracing
    from telemetry.logging import configure_logging
    from workers.app import app
    from workers.attempt import lane_limits, solvers_for
    from workers.warmup import warm_up

    if tracing.configure("qgate-worker"):
        tracing.instrument_celery()
    configure_logging()
    for lane in [name for name in (app.amqp.queues.consume_from or {}) if name in LANES]:
        warm_up(lane, solvers_for(lane), lane_limits(lane))
