"""The webhook worker: the delivery task on the ``webhooks`` queue, and the sweeper that feeds it.

A worker consuming ``webhooks`` (``celery -A workers.app worker -Q webhooks``) runs, in a thread of its
main process, the sweeper loop: every ``SWEEP_S`` it claims the outbox's due deliveries and sends one
task per delivery to the queue (``DeliveryService.enqueue_due``). The task is one call of
``DeliveryService.deliver``. Lane workers register the task too (one Celery app) but never consume the
queue and never start the sweeper.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import Any

import structlog
from celery import signals

from jobs.store import JobStore
from orchestrator.deliveries import DeliveryService
from settings import get_settings
from webhooks import config
from telemetry import tracing
from telemetry.metrics import count_webhook
from workers.app import app
from workers.connections import get_redis

QUEUE = "webhooks"
TASK = "qgate.webhooks.deliver"
SWEEP_S = 0.2
ALIVE = "qgate:webhooks:alive"  # worker name -> until when it counts as sweeping (tests and operators)

log = structlog.get_logger("qgate.webhooks")
_stop = threading.Event()


class CeleryDeliveryQueue:
    def enqueue(self, job_id: str, token: int) -> None:
        app.send_task(TASK, args=[job_id, token], queue=QUEUE)


@lru_cache(maxsize=1)
def delivery_service() -> DeliveryService:
    settings = get_settings()
    redis = get_redis()
    return DeliveryService(JobStore(redis, settings.job_ttl_s), CeleryDeliveryQueue(), config.guard_of(settings),
                           config.sender_of(settings), config.secrets_of(settings, redis),
                           config.retry_of(settings), config.claim_s_of(settings), log)


@app.task(name=TASK)
def deliver(job_id: str, token: int) -> str:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id=job_id)
    service = delivery_service()
    trace_id = None
    if tracing.configure("qgate-webhooks"):  # a thread pool has no worker_process_init: set up on first use
        job = service.store.get(job_id)
        trace_id = job.trace_id if job is not None else None
    with tracing.span_in_trace("qgate.webhook.deliver", trace_id, job_id=job_id):
        outcome = service.deliver(job_id, token)
    try:
        count_webhook(get_redis(), outcome)
    except Exception:  # a counter must never turn a recorded delivery into a retried task
        log.warning("webhook_outcome_not_counted", outcome=outcome)
    return outcome


def sweep_forever(name: str, stop: threading.Event) -> None:
    service = delivery_service()
    while not stop.is_set():
        try:
            service.enqueue_due()
            get_redis().zadd(ALIVE, {name: time.time() + 10 * SWEEP_S + 2})
        except Exception as exc:  # Redis away: the outbox waits for us
            log.warning("webhook_sweep_failed", error=f"{type(exc).__name__}: {exc}")
            stop.wait(1.0)
        stop.wait(SWEEP_S)


@signals.worker_ready.connect
def _start_sweeper(sender: Any, **_: Any) -> None:
    if QUEUE not in (sender.app.amqp.queues.consume_from or {}):
        return
    threading.Thread(target=sweep_forever, args=(sender.hostname, _stop), name="qgate-webhook-sweeper",
                     daemon=True).start()
    log.info("webhook_worker_ready", worker=sender.hostname)


@signals.worker_shutdown.connect
def _stop_sweeper(sender: Any, **_: Any) -> None:
    _stop.set()
