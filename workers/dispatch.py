"""Celery's implementation of the orchestrator's ``Enqueuer``: an attempt becomes a task message on its
lane's queue.

The first attempt of a job is published inside the transaction that creates the job (``publisher``):
the broker and the job store are the same Redis, so the job and its task message appear together or
not at all, and admission costs one round trip instead of three. The message is the one Celery's
``send_task`` would publish, built with Celery's and kombu's own functions; only the final ``LPUSH``
is ours (tests/unit/test_dispatch_message.py compares the two byte for byte, so that a Celery or
kombu upgrade that changes the envelope fails a test rather than the workers).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Callable

from celery import Celery
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as envelope_json

from jobs.model import Job, Lease
from solvers.registry import interactive_queue
from telemetry import tracing
from workers.app import app

HARD_LIMIT_MARGIN_S = 5.0
PERSISTENT = 2  # kombu's delivery mode for a durable message, what Celery's queues declare


def task_name(lane: str) -> str:
    return f"qgate.solve.{lane}"


def canary_task_name(lane: str) -> str:
    return f"qgate.canary.{lane}"


def queue_of(job: Job, lease: Lease | None = None) -> str | None:
    """The queue of the job's current attempt (or of ``lease``, one of a portfolio's racing attempts): its
    lane's interactive queue for an interactive job."""
    current = lease or job.current
    if not current:
        return None
    return interactive_queue(current.lane) if job.request.get("priority") == "interactive" else current.lane


def leases_of(job: Job) -> list[Lease]:
    """The attempts a new job publishes: its current one, or every racing attempt of a portfolio."""
    return [job.current] if job.current else list(job.racing or [])


class CeleryEnqueuer:
    """Sends the job's current attempt to its lane queue; a job without an attempt in flight sends nothing.

    The attempt's own limit is an alarm around the solver (workers.time_limit), not Celery's soft limit.
    Celery's hard limit is set past the lease, so that it only ever kills a child stuck in a solver's
    native code, after the watchdog has already moved the job on.
    """

    def __init__(self, lease_grace_ms: int, celery: Celery = app) -> None:
        self.grace_s = lease_grace_ms / 1000
        self.app = celery
        self._local = threading.local()

    def _hard_limit_s(self, limit_ms: int) -> float:
        return max(limit_ms, 1) / 1000 + self.grace_s + HARD_LIMIT_MARGIN_S

    def enqueue(self, job: Job, lease: Lease | None = None) -> None:
        current = lease or job.current
        if not current:
            return
        self.app.send_task(task_name(current.lane), args=[job.job_id, current.n],
                           task_id=current.task_id, queue=queue_of(job, current),
                           time_limit=self._hard_limit_s(current.limit_ms))

    def publisher(self, job: Job) -> Callable[[Any], None] | None:
        """The job's first attempts (one, or a portfolio's racing ones) as writes to add to a transaction on
        the broker's Redis."""
        messages = [self.message(job, lease) for lease in leases_of(job)]
        ready = [message for message in messages if message is not None]
        if not ready:
            return None

        def publish(pipe: Any) -> None:
            for queue, payload in ready:
                pipe.lpush(queue, payload)
        return publish

    def message(self, job: Job, lease: Lease | None = None) -> tuple[str, str] | None:
        """The Redis list and the payload that ``enqueue`` would push there for the job's current attempt
        (or ``lease``)."""
        current = lease or job.current
        if not current:
            return None
        args = [job.job_id, current.n]
        headers, properties, body, _ = self.app.amqp.create_task_message(
            current.task_id, task_name(current.lane), args, None, argsrepr=repr(args), kwargsrepr="{}",
            reply_to=self.app.thread_oid, time_limit=self._hard_limit_s(current.limit_ms),
            create_sent_event=self.app.conf.task_send_sent_event, ignore_result=None)
        tracing.inject(headers)  # what Celery's instrumentation adds to a published task's headers
        content_type, content_encoding, data = serialize(body, serializer=self.app.conf.task_serializer)
        properties["delivery_mode"] = PERSISTENT
        channel = self._channel()
        envelope = channel.prepare_message(data, 0, content_type, content_encoding, headers, properties)
        envelope["body"], body_encoding = channel.encode_body(envelope["body"], channel.body_encoding)
        envelope["properties"].update(body_encoding=body_encoding, delivery_tag=str(uuid.uuid4()))
        queue = queue_of(job, current)
        envelope["properties"]["delivery_info"].update(exchange="", routing_key=queue)
        return queue, envelope_json(envelope)

    def _channel(self) -> Any:
        """A kombu channel of this thread, for its message preparation only: nothing is sent through it."""
        channel = getattr(self._local, "channel", None)
        if channel is None:
            channel = self._local.channel = self.app.connection_for_write().default_channel
        return channel

    def revoke(self, task_id: str) -> None:
        """Ask every worker to drop the attempt if it has not started; a running one finishes into a CAS
        that fails, so its answer is discarded."""
        self.app.control.revoke(task_id)
