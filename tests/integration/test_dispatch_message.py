"""The first task message, written in the job's own transaction, is the one Celery's send_task writes.

Both are produced against a real redis-server and compared field by field (the delivery tag, a fresh
uuid per message, aside), for every lane and for short and long limits. A Celery or kombu upgrade that
changes the envelope fails here, not in the workers.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Iterator

import pytest
from celery import Celery

from jobs import model
from tests.integration.stack import Stack
from workers.dispatch import CeleryEnqueuer


@pytest.fixture
def enqueuer(rig: Stack) -> Iterator[CeleryEnqueuer]:
    celery = Celery("qgate-test", set_as_current=False)
    celery.config_from_object("celeryconfig")
    celery.conf.broker_url = f"redis://127.0.0.1:{rig.redis_port}/0"
    yield CeleryEnqueuer(1500, celery)
    celery.close()


def _job(lane: str, limit_ms: int, priority: str = "batch") -> model.Job:
    job, _ = model.new_job(job_id=model.new_job_id(), tenant="acme", client_id="qc_1", kind="tsp",
                           budget_ms=limit_ms, request={"seed": 7, "priority": priority}, plan=[], fingerprint="sha256:" + "0" * 64,
                           cost_estimate={"usd": 0.0, "basis": "none"})
    job, _ = model.dispatch(job, lane, limit_ms, 1500)
    return job


def _decoded(raw: str) -> dict[str, Any]:
    message = json.loads(raw)
    message["properties"].pop("delivery_tag")
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


@pytest.mark.parametrize("lane", ["qpu", "sim", "heuristic"])
@pytest.mark.parametrize("limit_ms,priority", [(1, "interactive"), (950, "interactive"), (950, "batch"),
                                               (120_000, "batch")])
def test_the_transactional_message_is_what_send_task_publishes(rig: Stack, enqueuer: CeleryEnqueuer,
                                                               lane: str, limit_ms: int, priority: str) -> None:
    job = _job(lane, limit_ms, priority)
    queue = lane + ".interactive" if priority == "interactive" else lane
    client = rig.redis()
    enqueuer.enqueue(job)
    celery_sent = client.lpop(queue)
    pipe = client.pipeline(transaction=True)
    publish = enqueuer.publisher(job)
    assert publish is not None
    publish(pipe)
    pipe.execute()
    ours = client.lpop(queue)
    assert client.llen(lane) == 0 and client.llen(lane + ".interactive") == 0
    assert _decoded(ours) == _decoded(celery_sent)
    assert _decoded(ours)["body"][0] == [job.job_id, 1]


def test_a_job_without_an_attempt_in_flight_publishes_nothing(enqueuer: CeleryEnqueuer) -> None:
    job = _job("sim", 1000)
    job.current = None
    assert enqueuer.publisher(job) is None
