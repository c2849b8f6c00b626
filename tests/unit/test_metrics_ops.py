"""The operational gauges and counters of /metrics: audit writer lag, checkpoint age, webhook outcomes."""

from __future__ import annotations

import re

import fakeredis
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from audit.channel import GROUP, STREAM
from telemetry.metrics import AUDIT_CHECKPOINT_AT, GAUGES, RedisCollector, count_webhook


def _scrape(client: fakeredis.FakeRedis, now: float = 1000.0) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(client, lambda _: {}, now=lambda: now))
    return generate_latest(registry).decode()


def test_webhook_outcomes_are_a_closed_set() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    for outcome in ("delivered", "delivered", "retry", "failed", "stale", "gone", "x" * 200):
        count_webhook(client, outcome)
    text = _scrape(client)
    assert 'qgate_webhook_deliveries_total{outcome="delivered"} 2.0' in text
    assert 'qgate_webhook_deliveries_total{outcome="retry"} 1.0' in text
    assert 'qgate_webhook_deliveries_total{outcome="failed"} 1.0' in text
    assert "stale" not in text and "gone" not in text and "xxx" not in text


def test_audit_writer_lag_counts_unread_and_unacknowledged_events() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    text = _scrape(client)
    assert not re.search(r"^qgate_audit_writer_lag ", text, re.MULTILINE)  # no stream yet: no sample
    for i in range(5):
        client.xadd(STREAM, {"event": str(i)})
    client.xgroup_create(STREAM, GROUP, id="0")
    client.xreadgroup(GROUP, "writer", {STREAM: ">"}, count=2)  # two read, not yet acknowledged
    text = _scrape(client)
    assert "qgate_audit_stream_length 5.0" in text
    assert "qgate_audit_writer_lag 5.0" in text  # 2 pending + 3 not yet read


def test_checkpoint_age_is_measured_from_the_writers_timestamp() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    assert not re.search(r"^qgate_audit_checkpoint_age_seconds ", _scrape(client), re.MULTILINE)
    client.hset(GAUGES, AUDIT_CHECKPOINT_AT, 940.5)
    assert "qgate_audit_checkpoint_age_seconds 59.5" in _scrape(client, now=1000.0)
    assert "qgate_audit_checkpoint_age_seconds 0.0" in _scrape(client, now=900.0)  # clock skew: never negative
